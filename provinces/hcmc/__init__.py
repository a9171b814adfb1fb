"""hcmc: Thành phố Hồ Chí Minh's local rules (province 79), as a province plugin.

What the city did in 2021, through the national plugins' extension hooks:
a map of risk levels (green, yellow, orange, red) by ward and district that
weighs the risk of contacts met at venues there, wholesale markets as a
venue type of their own after the Bình Điền, Hóc Môn and Thủ Đức market
clusters, a declaration question about F0 treated at home, and market
traders as a local vaccination priority group. Every hook here runs only
for the city: the core leaves this plugin out of calls made for any other
province, and leaves it out altogether while the city's admin has
switched it off.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from core import PluginSettings, Role, hookimpl
from core.principal import EPIDEMIOLOGIST, NATIONAL_ADMIN, PROVINCE_ADMIN

if TYPE_CHECKING:
    from core.platform import Platform
    from core.settings import Settings
    from plugins.checkin.declarations import Question
    from plugins.checkin.venues import VenueFacts, VenueType
    from plugins.vaccination.registry import PriorityGroup

PROVINCE = "79"
NAME = "hcmc"


@hookimpl
def register_settings() -> PluginSettings:
    from provinces.hcmc.settings import HcmcSettings

    return PluginSettings(name=NAME, struct=HcmcSettings)


@hookimpl
def register_piccolo_apps() -> list[str]:
    return ["provinces.hcmc.piccolo_app"]


@hookimpl
def register_roles() -> list[Role]:
    from provinces.hcmc.zones import MANAGE_ZONES

    return [
        Role(name=EPIDEMIOLOGIST, scope="province", grants=frozenset({MANAGE_ZONES})),
        Role(name=PROVINCE_ADMIN, scope="province", grants=frozenset({MANAGE_ZONES})),
        Role(name=NATIONAL_ADMIN, scope="national", grants=frozenset({"hcmc.*"})),
    ]


@hookimpl
def register_routes(settings: Settings) -> list[Any]:
    from provinces.hcmc.routes import ROUTES

    return list(ROUTES)


@hookimpl
def checkin_venue_types(province_code: str) -> list[VenueType]:
    from provinces.hcmc.venues import venue_types

    return venue_types()


@hookimpl
def checkin_declaration_questions(venue: VenueFacts) -> list[Question]:
    from provinces.hcmc.declarations import questions

    return questions()


@hookimpl
def checkin_risk_weight(
    venue: VenueFacts, overlap_minutes: int, degree: int, platform: Platform
) -> Awaitable[float | None]:
    # The zone map lives in the database: the core awaits what a hook returns.
    from provinces.hcmc.zones import weight_at

    return weight_at(venue, platform.plugin_config("hcmc"))


@hookimpl
def vaccination_priority_groups(province_code: str) -> list[PriorityGroup]:
    from provinces.hcmc.priority import groups

    return groups()
