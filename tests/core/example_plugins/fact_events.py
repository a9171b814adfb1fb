"""Hook specs of the example "facts" plugin: an event that other plugins handle."""

from __future__ import annotations

from typing import Any

from core import hookspec


@hookspec
def example_fact_recorded(event_id: str, payload: dict[str, Any]) -> None:
    """Announce that an example fact was stored; delivered through the event outbox.

    Called by the event dispatcher, at least once per handler, after the
    transaction that stored the fact has committed.

    :param event_id: The event's id; the same on every retry, so handlers can
        ignore repeats.
    :param payload: The fact, as a JSON object.
    :returns: Nothing (``None``). A handler that raises is retried with backoff.
    """
