"""The city's risk-zone map: levels by district and ward, and how they weigh tracing.

In 2021 the city graded each ward (and, before that, each district) green,
yellow, orange or red. A contact met at a venue counts for more in a higher
zone: the venue's ward sets the level if it has one, else its district; an
area nobody graded gives no opinion. The map is read from the database and
kept for ``zone_cache_seconds`` per worker, so a change made through one
worker reaches all of them that soon.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast
from weakref import WeakKeyDictionary

from core import InvalidInput, Resource, clock, storage
from provinces.hcmc import PROVINCE
from provinces.hcmc.schemas import Level, ZoneBody, ZoneView
from provinces.hcmc.settings import HcmcSettings
from provinces.hcmc.tables import RiskZone

if TYPE_CHECKING:
    from core import Principal
    from core.platform import Platform
    from plugins.checkin.venues import VenueFacts

MANAGE_ZONES = "hcmc.zone.manage"
# The city's districts (and Thủ Đức) carry the General Statistics Office's codes 760 to 787.
DISTRICTS = range(760, 788)

# Per database: (when it was read, area -> level).
_maps: WeakKeyDictionary[storage.Database, tuple[float, dict[str, str]]] = WeakKeyDictionary()


async def weight_at(venue: VenueFacts, settings: HcmcSettings) -> float | None:
    """The zone weight of the venue's ward, else of its district; None where nobody graded the area."""
    levels = await _zone_map(settings)
    level = levels.get(venue.ward) or levels.get(venue.district)
    return None if level is None else settings.weight(level)


async def set_level(platform: Platform, principal: Principal, area: str, body: ZoneBody) -> ZoneView:
    """Grade one area; the city's epidemiologists and admins do it, for the city only."""
    await platform.access.check(principal, MANAGE_ZONES, Resource(kind="risk_zone", id=area, province=PROVINCE))
    if len(area) == 3 and int(area) not in DISTRICTS:
        raise InvalidInput(f"area: {area} is not a district of Thành phố Hồ Chí Minh (760 to 787)")
    now = clock.now()
    await RiskZone.insert(
        RiskZone(area=area, level=body.level, note=body.note, set_by=principal.id, set_at=now)
    ).on_conflict(
        target=RiskZone.area,
        action="DO UPDATE",
        values=[RiskZone.level, RiskZone.note, RiskZone.set_by, RiskZone.set_at],
    )
    # This worker uses the new level at once; the others within zone_cache_seconds.
    _maps.pop(storage.active(), None)
    return _view({"area": area, "level": body.level, "note": body.note, "set_at": now}, settings_of(platform))


async def zone_views(platform: Platform) -> list[ZoneView]:
    rows = await RiskZone.select().order_by(RiskZone.area)
    settings = settings_of(platform)
    return [_view(row, settings) for row in rows]


def settings_of(platform: Platform) -> HcmcSettings:
    settings: HcmcSettings = platform.plugin_config("hcmc")
    return settings


async def _zone_map(settings: HcmcSettings) -> dict[str, str]:
    database = storage.active()
    cached = _maps.get(database)
    if cached is not None and time.monotonic() - cached[0] < settings.zone_cache_seconds:
        return cached[1]
    rows = await RiskZone.select(RiskZone.area, RiskZone.level)
    levels = {row["area"]: row["level"] for row in rows}
    _maps[database] = (time.monotonic(), levels)
    return levels


def _view(row: dict[str, Any], settings: HcmcSettings) -> ZoneView:
    level = cast(Level, row["level"])
    return ZoneView(
        area=row["area"],
        kind="district" if len(row["area"]) == 3 else "ward",
        level=level,
        weight=settings.weight(level),
        note=row["note"],
        set_at=row["set_at"],
    )
