"""vaccination: registration, priority groups, scheduling, dose records, certificates, figures.

The national plugin. Its hookimpls are thin: each hands over to the module
that does the work (``registry``, ``people``, ``booking``, ``doses``,
``certificates``, ``figures``, ``fhir``, ``reminders``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import Job, PluginSettings, Purpose, Role, hookimpl

if TYPE_CHECKING:
    import click

    from core.platform import Platform
    from core.settings import Settings
    from plugins.vaccination.certificates import CertificateFormat


@hookimpl
def register_purposes() -> list[Purpose]:
    return [
        Purpose(
            name="vaccination.records",
            basis="public_health",
            description_vi="Ghi nhận mũi tiêm và cấp chứng nhận tiêm chủng cho bạn.",
            description_en="Recording your doses and issuing your vaccination certificates.",
        ),
        Purpose(
            name="vaccination.reminders",
            basis="consent",
            description_vi="Nhắc bạn lịch tiêm mũi tiếp theo qua tin nhắn.",
            description_en="Reminding you by message when your next dose is due.",
        ),
    ]


@hookimpl
def register_settings() -> PluginSettings:
    from plugins.vaccination.settings import VaccinationSettings

    return PluginSettings("vaccination", VaccinationSettings)


@hookimpl
def register_piccolo_apps() -> list[str]:
    return ["plugins.vaccination.piccolo_app"]


@hookimpl
def register_routes(settings: Settings) -> list[Any]:
    from plugins.vaccination.routes import ROUTES

    return list(ROUTES)


@hookimpl
def register_pages(settings: Settings) -> list[Any]:
    from plugins.vaccination.pages import PAGES

    return list(PAGES)


@hookimpl
def register_template_dirs() -> list[Path]:
    return [Path(__file__).parent / "templates"]


@hookimpl
def register_roles() -> list[Role]:
    from plugins.vaccination.access import ROLES

    return list(ROLES)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from plugins.vaccination.commands import register

    register(cli)


@hookimpl
def register_jobs() -> list[Job]:
    from plugins.vaccination.reminders import jobs

    return jobs()


@hookimpl
def vaccination_certificate_formats(platform: Platform) -> list[CertificateFormat]:
    from plugins.vaccination.certificates import EuDigitalCovidCertificate

    return [EuDigitalCovidCertificate()]


@hookimpl
def load_demo_data(platform: Platform) -> Any:
    from plugins.vaccination.demo import load

    return load(platform)
