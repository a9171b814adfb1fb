"""The hooks the testing plugin offers to other plugins.

The testing plugin announces facts as domain events: it calls
``platform.events.publish("testing_result_released", payload, province=...)``
in the transaction that stores the fact, and the core delivers the event to
every plugin that implements the hook below, at least once, with retries.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from core.markers import hookspec

if TYPE_CHECKING:
    from core.platform import Platform
    from plugins.testing.catalogue import TestType


@hookspec
def testing_result_released(event_id: str, payload: dict[str, Any], platform: Platform) -> Awaitable[None] | None:
    """React to a test result that has been released to the person tested.

    Called by the core's event dispatcher (never directly) once per
    implementing plugin when a sample's result is first released as
    positive, whether on entry or by a correction (the testing plugin
    announces each sample at most once), for the province in
    ``payload["province"]``: only national plugins and that province's
    plugins receive it. Delivery is at least once: after a crash or a
    failed attempt the same event comes again with the same ``event_id``,
    so a handler must be idempotent (for example, one tracing case per
    sample). A handler that raises is retried with backoff. May be async.

    :param event_id: The event's id in the outbox; the same on every retry.
    :param payload: The released result, as plain JSON values:

        - ``sample_id`` (str): the sample's id, unique per sample.
        - ``subject_id`` (str or None): the citizen id of the person tested,
          or None when they have no citizen account.
        - ``phone`` (str or None): their mobile number in E.164 form
          (``+84912345678``), when known.
        - ``province`` (str): two-digit code of the province that tested.
        - ``result`` (str): ``"positive"``, ``"negative"`` or ``"invalid"``.
        - ``collected_at`` (str): when the sample was taken, ISO 8601 with
          time zone.
        - ``symptom_onset`` (str or None): ISO 8601 date or time of symptom
          onset when the person reported symptoms, else None.

    :param platform: The running platform.
    :returns: Nothing, or an awaitable that completes when the event has
        been handled. ``None`` means handled.
    """


@hookspec
def testing_register_test_types() -> list[TestType] | None:
    """Add test types (assays) that samples may be registered for.

    Called once per platform, the first time the testing plugin needs its
    catalogue (registering a sample, a pool, a result upload). The testing
    plugin itself contributes RT-PCR (LOINC 94500-6) and the rapid antigen
    test (LOINC 94558-4).

    :returns: A list of ``plugins.testing.catalogue.TestType`` (code, LOINC
        code, names in Vietnamese and English, method ``naat`` or
        ``antigen``, whether samples may be pooled, and the EU DCC ``tt``
        value), or ``None`` to add nothing. A type that fails validation,
        or reuses a known code with different details, is logged and left
        out.
    """
