"""checkin: venue QR check-in, electronic health declaration and contact tracing (F0 → F1 → F2).

The national plugin that replaces qr.tokhaiyte.vn. This module only wires the
plugin into the core through hookimpls; the work is done in the modules
named for it (``venues``, ``posters``, ``declarations``, ``visits``,
``tracing``, ``retention``, ``stats``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from core import Job, MenuItem, PluginSettings, Principal, Purpose, Role, hookimpl
from core.principal import (
    CITIZEN,
    DEVICE,
    EPIDEMIOLOGIST,
    NATIONAL_ADMIN,
    PROVINCE_ADMIN,
    VENUE_OPERATOR,
)

if TYPE_CHECKING:
    import click
    from litestar.types import ControllerRouterHandler

    from core.platform import Platform
    from core.settings import Settings

PURGE_EVERY_SECONDS = 3600


@hookimpl
def register_purposes() -> list[Purpose]:
    return [
        Purpose(
            name="checkin.tracing",
            basis="public_health",
            description_vi="Ghi nhận nơi bạn đã đến để truy vết F0, F1, F2 khi có ca bệnh.",
            description_en="Recording where you checked in, to trace contacts (F0, F1, F2) of a case.",
        ),
        Purpose(
            name="checkin.declaration",
            basis="public_health",
            description_vi="Khai báo y tế điện tử khi vào nơi công cộng.",
            description_en="Your electronic health declaration at public places.",
        ),
    ]


@hookimpl
def register_settings() -> PluginSettings:
    from plugins.checkin.settings import CheckinSettings

    return PluginSettings(name="checkin", struct=CheckinSettings)


@hookimpl
def register_piccolo_apps() -> list[str]:
    return ["plugins.checkin.piccolo_app"]


@hookimpl
def register_roles() -> list[Role]:
    venue_side = {"checkin.venue.read", "checkin.venue.list", "checkin.visit.proxy"}
    return [
        Role(
            name=VENUE_OPERATOR,
            scope="site",
            grants=frozenset(
                venue_side
                | {"checkin.venue.create", "checkin.venue.update", "checkin.venue.codes", "checkin.stats.read"}
            ),
        ),
        Role(name=DEVICE, scope="site", grants=frozenset(venue_side | {"checkin.scan.personal"})),
        Role(
            name=CITIZEN,
            scope="self",
            grants=frozenset(
                {"checkin.visit.create", "checkin.visit.checkout", "checkin.visit.list_own", "checkin.personal_code"}
            ),
        ),
        Role(
            name=EPIDEMIOLOGIST,
            scope="province",
            grants=frozenset(
                {
                    "checkin.case.create",
                    "checkin.case.list",
                    "checkin.case.read",
                    "checkin.case.export",
                    "checkin.case.notify",
                    "checkin.referral.list",
                    "checkin.flag.list",
                    "checkin.stats.read",
                    "checkin.venue.list",
                    "checkin.venue.read",
                }
            ),
        ),
        Role(
            name=PROVINCE_ADMIN,
            scope="province",
            grants=frozenset({"checkin.venue.list", "checkin.venue.read", "checkin.venue.codes", "checkin.stats.read"}),
        ),
        Role(name=NATIONAL_ADMIN, scope="national", grants=frozenset({"checkin.*"})),
    ]


@hookimpl
def register_routes(settings: Settings) -> list[ControllerRouterHandler]:
    from plugins.checkin.routes import ROUTES

    return list(ROUTES)


@hookimpl
def register_pages(settings: Settings) -> list[ControllerRouterHandler]:
    from plugins.checkin.routes import PAGES

    return list(PAGES)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from plugins.checkin.commands import checkin

    cli.add_command(checkin)


@hookimpl
def register_jobs() -> list[Job]:
    from plugins.checkin.retention import ensure_partitions, purge

    async def purge_expired(platform: Platform) -> str:
        created = await ensure_partitions(platform)
        result = await purge(platform)
        return (
            f"purged {result.visits} visits, {result.declarations} declarations, "
            f"{result.idempotency_keys} keys; {result.partitions_dropped} partitions dropped, {created} created"
        )

    return [Job(name="checkin.retention.purge", interval_seconds=PURGE_EVERY_SECONDS, run=purge_expired)]


@hookimpl
def register_menu_items(principal: Principal) -> list[MenuItem]:
    items = []
    if principal.has_role(CITIZEN):
        items.append(MenuItem(label_vi="Khai báo y tế", label_en="Check in", href="/checkin", order=10))
    if principal.has_role(VENUE_OPERATOR, PROVINCE_ADMIN, NATIONAL_ADMIN):
        items.append(MenuItem(label_vi="Địa điểm & mã QR", label_en="Venues and QR codes", href="/checkin", order=20))
    if principal.has_role(EPIDEMIOLOGIST, NATIONAL_ADMIN):
        items.append(MenuItem(label_vi="Truy vết", label_en="Contact tracing", href="/checkin", order=30))
    return items


@hookimpl
def startup(platform: Platform) -> Awaitable[Any]:
    from plugins.checkin.retention import ensure_partitions

    return ensure_partitions(platform)


@hookimpl
def load_demo_data(platform: Platform) -> Awaitable[None]:
    from plugins.checkin.demo import load_demo_data as load

    return load(platform)


@hookimpl
def testing_result_released(event_id: str, payload: dict[str, Any], platform: Platform) -> Awaitable[Any]:
    from plugins.checkin.tracing import open_case_from_result

    return open_case_from_result(platform, payload)
