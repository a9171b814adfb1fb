"""hanoi: Hà Nội's local rules (province 01), as a province plugin.

What the city asked for in 2021, through the national plugins' extension
hooks: extra health-declaration questions at its venues (travel permit
number, workplace, time in a locked-down area), delivery drivers as a local
vaccination priority group, and its own SMS brandname gateway for messages
sent on its behalf. Every hook here runs only for Hà Nội: the core leaves
this plugin out of calls made for any other province, and leaves it out
altogether while the city's admin has switched it off.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from core import PluginSettings, Role, hookimpl
from core.principal import NATIONAL_ADMIN, PROVINCE_ADMIN

if TYPE_CHECKING:
    from core.messages import Message, Receipt
    from core.platform import Platform
    from core.settings import Settings
    from plugins.checkin.declarations import Question
    from plugins.checkin.venues import VenueFacts
    from plugins.vaccination.registry import PriorityGroup

PROVINCE = "01"
NAME = "hanoi"


@hookimpl
def register_settings() -> PluginSettings:
    from provinces.hanoi.settings import HanoiSettings

    return PluginSettings(name=NAME, struct=HanoiSettings)


@hookimpl
def register_piccolo_apps() -> list[str]:
    return ["provinces.hanoi.piccolo_app"]


@hookimpl
def register_roles() -> list[Role]:
    return [
        Role(name=PROVINCE_ADMIN, scope="province", grants=frozenset({"hanoi.sms.read"})),
        Role(name=NATIONAL_ADMIN, scope="national", grants=frozenset({"hanoi.*"})),
    ]


@hookimpl
def register_routes(settings: Settings) -> list[Any]:
    from provinces.hanoi.routes import ROUTES

    return list(ROUTES)


@hookimpl
def checkin_declaration_questions(venue: VenueFacts, platform: Platform) -> list[Question]:
    from provinces.hanoi.declarations import questions

    return questions(platform.plugin_config("hanoi"))


@hookimpl
def vaccination_priority_groups(province_code: str) -> list[PriorityGroup]:
    from provinces.hanoi.priority import groups

    return groups()


@hookimpl
def send_message(message: Message, platform: Platform) -> Awaitable[Receipt | None]:
    from provinces.hanoi.sms import take

    return take(message, platform)
