"""Figures: check-ins per venue per hour, per province per day, and scans against capacity.

Counts only, no personal data. Days and hours are local (``local_utc_offset_minutes``).
Lists are limited to what the principal's scope covers, in SQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from core import Principal, Scope, clock
from plugins.checkin.schemas import CapacityRow, DailyCount, HourlyCount
from plugins.checkin.settings import CheckinSettings
from plugins.checkin.tables import Venue
from plugins.checkin.venues import readable_venue
from plugins.checkin.visits import settings_of

if TYPE_CHECKING:
    from core.platform import Platform

DAY = 86400
HOUR = 3600


async def venue_hourly(platform: Platform, principal: Principal, venue_id: uuid.UUID, day: date) -> list[HourlyCount]:
    """Check-ins at one venue in each local hour of ``day`` (24 rows, zeros included)."""
    await readable_venue(platform, principal, venue_id, "checkin.stats.read")
    config = settings_of(platform)
    start = _day_start(config, day)
    rows = await platform.db.execute(
        "SELECT (arrived_at - {}) / 3600 AS hour, count(*) AS n FROM checkin_visit "
        "WHERE venue_id = {} AND arrived_at >= {} AND arrived_at < {} GROUP BY 1",
        start,
        _uuid_param(platform, venue_id),
        start,
        start + DAY,
    )
    counts = {int(row["hour"]): int(row["n"]) for row in rows}
    return [HourlyCount(hour=_time(start + h * HOUR), checkins=counts.get(h, 0)) for h in range(24)]


async def province_daily(
    platform: Platform, principal: Principal, *, days: int, province: str | None
) -> list[DailyCount]:
    """Check-ins and active venues per province per local day, for the last ``days`` days."""
    config = settings_of(platform)
    scope = await platform.access.scope(principal, "checkin.stats.read")
    today = (clock.now() + timedelta(minutes=config.local_utc_offset_minutes)).date()
    since = _day_start(config, today - timedelta(days=days - 1))
    offset = config.local_utc_offset_minutes * 60
    where, args = _scope_sql(scope)
    if province is not None:
        where += " AND province = {}"
        args.append(province)
    # Only integers and "{}" placeholders are formatted in; every value is bound.
    rows = await platform.db.execute(
        f"SELECT province, (arrived_at + {offset}) / {DAY} AS day, count(*) AS n, "  # noqa: S608
        f"count(DISTINCT venue_id) AS venues FROM checkin_visit WHERE arrived_at >= {{}}{where} "
        "GROUP BY 1, 2 ORDER BY 2, 1",
        since,
        *args,
    )
    return [
        DailyCount(
            day=date(1970, 1, 1) + timedelta(days=int(row["day"])),
            province=row["province"],
            checkins=int(row["n"]),
            venues=int(row["venues"]),
        )
        for row in rows
    ]


async def capacity_use(platform: Platform, principal: Principal, *, day: date, limit: int) -> list[CapacityRow]:
    """For each venue in scope: visitors its capacity suggests for a day, against check-ins.

    ``suggested_visitors`` is capacity x opening hours / default stay (how many
    people pass through a full venue); a low ``coverage`` means people come
    without checking in. ``peak_present`` is the most visitors present at once.
    """
    config = settings_of(platform)
    scope = await platform.access.scope(principal, "checkin.stats.read")
    query = Venue.select().where(Venue.active == True).order_by(Venue.name).limit(limit)  # noqa: E712
    clause = scope.where(province=Venue.province, site=Venue.site)
    if clause is not None:
        query = query.where(clause)
    venues = await query
    if not venues:
        return []
    start = _day_start(config, day)
    ids = [_uuid_param(platform, row["id"]) for row in venues]
    placeholders = ", ".join(["{}"] * len(ids))
    sql = f"SELECT venue_id, arrived_at, left_at FROM checkin_visit WHERE venue_id IN ({placeholders}) "  # noqa: S608
    visits = await platform.db.execute(
        sql + "AND arrived_at >= {} AND arrived_at < {}",
        *ids,
        start,
        start + DAY,
    )
    stays: dict[str, list[tuple[int, int]]] = {}
    for row in visits:
        stays.setdefault(str(row["venue_id"]), []).append((row["arrived_at"], row["left_at"]))
    result = []
    for venue in venues:
        venue_stays = stays.get(str(venue["id"]), [])
        suggested = venue["capacity"] * venue["opening_hours_per_day"] * 60 // max(1, venue["default_stay_minutes"])
        result.append(
            CapacityRow(
                venue_id=str(venue["id"]),
                venue_name=venue["name"],
                province=venue["province"],
                capacity=venue["capacity"],
                suggested_visitors=suggested,
                checkins=len(venue_stays),
                coverage=round(len(venue_stays) / suggested, 4) if suggested else 0.0,
                peak_present=_peak(venue_stays),
            )
        )
    return result


def _peak(stays: list[tuple[int, int]]) -> int:
    """The most stays that overlap at one moment (a sweep over arrivals and departures)."""
    events = sorted([(arrived, 1) for arrived, _ in stays] + [(left, -1) for _, left in stays])
    present = peak = 0
    for _moment, change in events:
        present += change
        peak = max(peak, present)
    return peak


def _scope_sql(scope: Scope) -> tuple[str, list[Any]]:
    """The scope as a SQL condition on the visits' province and site (rows of no scope: none)."""
    if scope.everything:
        return "", []
    parts, args = [], []
    for column, values in (("province", scope.provinces), ("site", scope.sites)):
        if values:
            parts.append(f"{column} IN ({', '.join(['{}'] * len(values))})")
            args.extend(sorted(values))
    if not parts:
        return " AND 1 = 0", []
    return " AND (" + " OR ".join(parts) + ")", args


def _uuid_param(platform: Platform, value: uuid.UUID | str) -> Any:
    # asyncpg wants UUID objects for uuid columns; SQLite stores them as text.
    parsed = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    return parsed if platform.db.kind == "postgres" else str(parsed)


def _day_start(config: CheckinSettings, day: date) -> int:
    local = timezone(timedelta(minutes=config.local_utc_offset_minutes))
    return int(datetime(day.year, day.month, day.day, tzinfo=local).timestamp())


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
