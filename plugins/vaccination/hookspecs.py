"""Hooks the vaccination plugin offers to provinces and other plugins.

Provinces add local priority groups; plugins add certificate formats (SMART
Health Cards, ICAO VDS-NC...) next to the EU Digital COVID Certificate; any
plugin can react to recorded doses and serious adverse events through the
durable event outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from core import hookspec

if TYPE_CHECKING:
    from core.platform import Platform
    from plugins.vaccination.certificates import CertificateFormat
    from plugins.vaccination.registry import PriorityGroup


@hookspec
def vaccination_priority_groups(province_code: str, platform: Platform) -> list[PriorityGroup] | None:
    """Add priority groups for one province, next to the national list.

    Called for a province (only the national plugins and that province's
    plugins answer) whenever the groups of ``province_code`` are needed: when
    a person of that province registers, when its groups are listed or
    opened, and when a waitlist is ordered.

    :param province_code: The two-digit province code the groups are for.
    :param platform: The running platform (settings, database, hooks).
    :returns: A list of ``PriorityGroup`` whose codes start with the province
        code and a dot (``"01.shippers"``); groups with other codes are
        ignored and logged. ``None`` adds nothing.
    """


@hookspec
def vaccination_certificate_formats(platform: Platform) -> list[CertificateFormat] | None:
    """Contribute certificate formats issued after each dose.

    Called for the province where the dose was given, every time a dose is
    recorded or corrected (and when a person asks for certificates a dose
    lacks). Every format returned issues one certificate per dose; the
    vaccination plugin itself contributes ``eu-dcc``.

    :param platform: The running platform (settings, database).
    :returns: A list of ``CertificateFormat`` objects (a unique ``name``, a
        ``media_type`` and an ``issue(request, platform)`` method that may be
        async), or ``None``.
    """


@hookspec
def vaccination_dose_recorded(event_id: str, payload: dict[str, Any], platform: Platform) -> Awaitable[None] | None:
    """React to a dose recorded (or corrected) at a site: a domain event.

    Delivered through the durable event outbox, at least once, after the
    transaction that recorded the dose committed; retried with backoff when
    the handler raises. May be async. Handlers must be idempotent (key on
    ``event_id``).

    :param event_id: The event's unique id.
    :param payload: ``dose_id``, ``person_id``, ``province``, ``site``,
        ``product``, ``dose_number``, ``dose_type``, ``administered_on`` and
        ``correction`` (true when a correction re-recorded the dose). No
        names or ID numbers.
    :param platform: The running platform.
    :returns: Nothing, or an awaitable.
    """


@hookspec
def vaccination_serious_aefi_reported(
    event_id: str, payload: dict[str, Any], platform: Platform
) -> Awaitable[None] | None:
    """Flag a serious adverse event after immunisation to the province: a domain event.

    Published, for the province where the dose was given, in the transaction
    that stores an AEFI report classified as serious (death, life-threatening,
    hospitalisation or disability). Delivered at least once; may be async;
    handlers must be idempotent.

    :param event_id: The event's unique id.
    :param payload: ``report_id``, ``dose_id``, ``province``, ``site``,
        ``product``, ``lot_number`` and ``criteria`` (which seriousness criteria
        were met). No names or ID numbers.
    :param platform: The running platform.
    :returns: Nothing, or an awaitable.
    """
