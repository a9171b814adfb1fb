"""The hooks the checkin plugin offers to province plugins (and any other plugin).

Each is called *for a province*: through ``platform.hooks.collect(...,
province=<venue province>)``, so only the national plugins and the plugins
of the venue's own province answer. A Hanoi plugin never adds questions to
a Da Nang café. A hookimpl that raises is logged and skipped.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from core.markers import hookspec

if TYPE_CHECKING:
    from core.platform import Platform
    from plugins.checkin.declarations import Question
    from plugins.checkin.venues import VenueFacts, VenueType


@hookspec
def checkin_declaration_questions(
    venue: VenueFacts, platform: Platform
) -> list[Question] | Awaitable[list[Question] | None] | None:
    """Add questions to the health declaration made at ``venue``.

    Called for the venue's province each time the questionnaire for one of
    its venues is built (when a code is scanned and when a declaration is
    checked). May be async. Questions come after the national ones; their
    ids must be new (prefix them, e.g. ``hn.vaccinated``), or they are
    ignored. A question with ``risk`` set raises that flag for follow-up by
    the province's epidemiologists when answered riskily. Changing the
    questions changes the questionnaire's version.

    :param venue: The venue (id, name, province, district, ward, type,
        capacity, site): no personal data.
    :param platform: The running platform (settings, database, hooks), for
        example ``platform.plugin_config("<your plugin>")``.
    :returns: A list of ``plugins.checkin.declarations.Question``, or
        ``None`` to add nothing.
    """


@hookspec
def checkin_venue_types(province_code: str) -> list[VenueType] | None:
    """Add venue types that venues in the province may be registered as.

    Called for ``province_code`` when a venue is registered there, when the
    list of types is shown, and when tracing weighs contacts met at a venue
    of that province. A type whose code the national list already has is
    ignored (provinces extend the list, they do not redefine it).

    :param province_code: The two-digit province code.
    :returns: A list of ``plugins.checkin.venues.VenueType`` (code, labels
        in Vietnamese and English, ``risk_weight``), or ``None``.
    """


@hookspec
def checkin_risk_weight(
    venue: VenueFacts, overlap_minutes: int, degree: int, platform: Platform
) -> float | Awaitable[float | None] | None:
    """Weigh the risk of one contact met at ``venue``, by the province's rules.

    Called for the venue's province by tracing, after the venue type's
    weight is applied. The answers of all plugins are multiplied together
    into the contact's risk score. May be async (a rule read from the
    database). The answer must depend only on the arguments: a trace asks
    once per distinct (venue, overlap, degree) and reuses it for every
    exposure with the same three.

    :param venue: Where the contact overlapped with the case (or the F1).
    :param overlap_minutes: How long they overlapped, tail included.
    :param degree: 1 for a contact of the case (F1), 2 for a contact of an F1.
    :param platform: The running platform (settings, database, hooks).
    :returns: A multiplier (``1.0`` changes nothing, ``2.0`` doubles the
        risk, ``0`` discounts the contact), or ``None`` for no opinion.
        Negative answers are ignored.
    """
