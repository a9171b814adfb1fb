"""The example "facts" plugin that publishes ``example_fact_recorded``, and a handler
that fails a given number of times before it succeeds."""

from __future__ import annotations

from typing import Any

from core import hookimpl
from tests.core.example_plugins import fact_events

EVENT = "example_fact_recorded"


class FactPublisher:
    """Owns the event's hook spec, the way a plugin's ``hookspecs.py`` does."""

    HOOKSPECS = fact_events


class FlakyHandler:
    """Raises on its first ``failures`` calls; records every call it receives."""

    def __init__(self, failures: int = 1) -> None:
        self.failures = failures
        self.calls: list[tuple[str, Any]] = []
        self.handled: set[str] = set()

    @hookimpl
    def example_fact_recorded(self, event_id: str, payload: dict[str, Any]) -> None:
        self.calls.append((event_id, payload))
        if len(self.calls) <= self.failures:
            raise ConnectionError("tracing service unavailable")
        # Idempotent: a repeated delivery of the same event changes nothing.
        self.handled.add(event_id)
