"""testing: sample collection, pooled testing, lab results and online result return.

The national plugin. These are its hookimpls only; the work is done in the
modules named for it (``samples``, ``pooling``, ``results``, ``lookup``,
``imports``, ``fhir``, ``turnaround``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core import Purpose, hookimpl

if TYPE_CHECKING:
    from collections.abc import Awaitable

    import click
    from litestar.types import ControllerRouterHandler

    from core import Job, PluginSettings, Role
    from core.platform import Platform
    from core.settings import Settings
    from plugins.testing.catalogue import TestType


@hookimpl
def register_purposes() -> list[Purpose]:
    return [
        Purpose(
            name="testing.results",
            basis="public_health",
            description_vi="Lấy mẫu xét nghiệm và trả kết quả trực tuyến cho bạn.",
            description_en="Collecting your test sample and returning your result online.",
        ),
    ]


@hookimpl
def register_piccolo_apps() -> list[str]:
    return ["plugins.testing.piccolo_app"]


@hookimpl
def register_settings() -> PluginSettings:
    from core import PluginSettings
    from plugins.testing.settings import TestingSettings

    return PluginSettings(name="testing", struct=TestingSettings)


@hookimpl
def testing_register_test_types() -> list[TestType]:
    from plugins.testing.catalogue import BUILT_IN

    return list(BUILT_IN)


@hookimpl
def register_roles() -> list[Role]:
    from plugins.testing.roles import TESTING_ROLES

    return list(TESTING_ROLES)


@hookimpl
def register_routes(settings: Settings) -> list[ControllerRouterHandler]:
    from plugins.testing.routes import ROUTES

    return list(ROUTES)


@hookimpl
def register_jobs() -> list[Job]:
    from core import Job
    from plugins.testing.lookup import expire_result_codes
    from plugins.testing.notices import send_job

    return [
        Job(name="testing.result_codes.expire", interval_seconds=3600, run=expire_result_codes),
        Job(name="testing.notices.send", interval_seconds=10, run=send_job),
    ]


@hookimpl
def register_commands(cli: click.Group) -> None:
    from plugins.testing.commands import register

    register(cli)


@hookimpl
def register_pages(settings: Settings) -> list[ControllerRouterHandler]:
    from plugins.testing.pages import PAGES

    return list(PAGES)


@hookimpl
def register_template_dirs() -> list[Path]:
    return [Path(__file__).parent / "templates"]


@hookimpl
def load_demo_data(platform: Platform) -> Awaitable[None]:
    from plugins.testing.demo import load_demo_data as load

    return load(platform)
