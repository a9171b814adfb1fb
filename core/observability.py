"""Logging with structlog: JSON lines in production, readable output in a terminal.

Every line logged while a request runs carries its ``request_id``, and once
the guard has run, the ``principal`` id (never personal data), the
``province`` and the ``plugin`` that owns the route.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec
import structlog

from core.settings import Settings


def configure_logging(settings: Settings) -> None:
    json_lines = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    level = getattr(logging, settings.log_level.upper())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _utc_timestamp,
    ]
    if json_lines:
        # No local variables in tracebacks: they may hold personal data.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        processors += [tracebacks, structlog.processors.JSONRenderer(serializer=_json_line)]
    else:
        processors += [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


_second_stamp: tuple[int, str] = (-1, "")


def _utc_timestamp(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """``timestamp``: ISO 8601 in UTC with microseconds, as structlog's TimeStamper writes it.

    The date and time up to the second are formatted once per second: every
    request writes a line, and formatting a datetime was a tenth of that line's cost.
    """
    global _second_stamp
    now = time.time()
    second = int(now)
    if _second_stamp[0] != second:
        _second_stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    event["timestamp"] = f"{_second_stamp[1]}.{int((now - second) * 1_000_000):06d}Z"
    return event


def _json_line(event: dict[str, Any], default: Any = None) -> str:
    """One log line as JSON, with msgspec (a tenth of ``json.dumps``'s time on every request's line)."""
    return msgspec.json.encode(event, enc_hook=default or repr).decode()
