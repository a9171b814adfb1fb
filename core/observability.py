"""Logging with structlog: JSON lines in production, readable output in a terminal.

Every line logged while a request runs carries its ``request_id``, and once
the guard has run, the ``principal`` id (never personal data), the
``province`` and the ``plugin`` that owns the route. Code adds fields to the
lines of the request (or task) it runs in with ``bind_log_context(...)``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import importlib
import logging
import sys
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import msgspec
import structlog

from core.settings import Settings


def configure_logging(settings: Settings) -> None:
    json_lines = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    level = getattr(logging, settings.log_level.upper())
    processors: list[Any] = [
        merge_log_context,
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
    wrapper_class = structlog.make_filtering_bound_logger(level)
    structlog.configure(
        processors=processors,
        wrapper_class=wrapper_class,
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    global _json_configuration
    _json_configuration = (processors, wrapper_class, level) if json_lines else None


# The fields added to every line logged in this context. The dict is never changed in place: binding
# sets a new one, so a task started from here sees what was bound until then and its own binds stay its own.
_log_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "phongdich_log_context", default=MappingProxyType({})
)


def bind_log_context(**fields: Any) -> None:
    """Add ``fields`` to every line logged from here on in this request (or task), like structlog's contextvars."""
    _log_context.set({**_log_context.get(), **fields})


def log_context() -> Mapping[str, Any]:
    """The fields bound in this context (read only)."""
    return _log_context.get()


def start_log_context(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """A new request: its lines carry ``fields`` and nothing bound before it. ``end_log_context(token)`` ends it."""
    return _log_context.set(fields)


def end_log_context(token: contextvars.Token[Mapping[str, Any]]) -> None:
    _log_context.reset(token)


def merge_log_context(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Processor: the bound fields, where the event does not set them itself.

    One context variable holding the fields, where structlog's contextvars keep one per field
    and look through the whole context for them on every line: a request binds four fields
    and logs one line at least.
    """
    for key, value in _log_context.get().items():
        event.setdefault(key, value)
    return event


# What ``configure_logging`` set up for JSON lines: (its processors, its wrapper class, its level).
_json_configuration: tuple[list[Any], Any, int] | None = None


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


class BufferedLines:
    """A structlog logger for server processes: lines written to the file in batches, not one by one.

    A worker answering thousands of requests a second writes a line for each;
    one ``write`` per line was a noticeable share of a request's cost. Lines
    at ``info`` and below wait at most ``interval`` seconds (or until
    ``limit`` characters are waiting) and go out in one write; a warning or
    worse goes out at once with everything before it. Outside an event loop
    (start-up, another thread) a line is written at once. ``flush()`` runs at
    shutdown and at exit; a worker killed outright loses at most ``interval``
    seconds of info lines.
    """

    def __init__(self, file: Any, *, interval: float = 0.05, limit: int = 64 * 1024) -> None:
        self._file = file
        self.interval = interval
        self.limit = limit
        self._lines: list[str] = []
        self._size = 0
        self._scheduled = False

    def _add(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.limit:
            self.flush()
        elif not self._scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._scheduled = True
            loop.call_later(self.interval, self.flush)

    def _now(self, line: str) -> None:
        self._lines.append(line)
        self.flush()

    def flush(self) -> None:
        self._scheduled = False
        lines, self._lines, self._size = self._lines, [], 0
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()

    # The methods structlog calls, by level.
    debug = info = msg = log = _add
    warn = warning = err = error = critical = exception = failure = fatal = _now


_buffered: BufferedLines | None = None
_buffered_factory: Any = None


def buffer_log_lines() -> None:
    """Server processes: write JSON log lines in batches (``BufferedLines``); console output stays as it is."""
    global _buffered, _buffered_factory
    if not any(isinstance(p, structlog.processors.JSONRenderer) for p in structlog.get_config()["processors"]):
        return
    if _buffered is None:
        _buffered = BufferedLines(sys.stderr)
        atexit.register(_buffered.flush)
    buffered = _buffered

    def factory(*_args: Any) -> BufferedLines:
        return buffered

    _buffered_factory = factory
    structlog.configure(logger_factory=factory)


RequestLine = Callable[[str | None, str, int, float], None]
"""``line(method, path, status, ms)``: log a request's outcome (event ``request``, at info)."""
_request_line: tuple[tuple[Any, ...], RequestLine] | None = None
# The object behind ``structlog.get_config()`` (private, so only a shortcut: see ``request_line``);
# None in a structlog that moved it, and then every request asks ``get_config()``.
_live: Any = getattr(importlib.import_module("structlog._config"), "_CONFIG", None)


def request_line() -> RequestLine:
    """The function that logs each request's line, for the logging configured now.

    Every request writes one, so in a server process set up by
    ``configure_logging`` for JSON lines and ``buffer_log_lines`` the line is
    rendered here, as that configuration's processors would render it (the
    request's context variables, level, timestamp, msgspec's JSON, in the same
    order), straight into the buffered lines: 3.2 µs a line where structlog's
    logger and processors took 5.2 (measured on the benchmark machine; in the
    in-process check-in benchmark a line took 11 µs of a check-in's 130). Under
    any other configuration (console output, a test capturing logs, a level
    above info) it goes through structlog as every other line does.
    """
    global _request_line
    cached = _request_line
    if cached is not None and _live is not None:
        # structlog's own settings object: three reads where ``get_config()`` builds a dict each request.
        then = cached[0]
        if (
            _live.default_processors is then[0]
            and _live.default_wrapper_class is then[1]
            and _live.logger_factory is then[2]
        ):
            return cached[1]
    config = structlog.get_config()
    key = (config["processors"], config["wrapper_class"], config["logger_factory"])
    if cached is not None and all(now is then for now, then in zip(key, cached[0], strict=True)):
        return cached[1]
    line: RequestLine
    buffered = _buffered
    setup = _json_configuration
    if (
        setup is not None
        and buffered is not None
        and config["processors"] is setup[0]
        and config["wrapper_class"] is setup[1]
        and setup[2] <= logging.INFO
        and config["logger_factory"] is _buffered_factory
    ):

        def rendered(method: str | None, path: str, status: int, ms: float) -> None:
            event: dict[str, Any] = {"method": method, "path": path, "status": status, "ms": ms, "event": "request"}
            merge_log_context(None, "info", event)
            event["level"] = "info"
            buffered.info(_json_line(_utc_timestamp(None, "info", event)))

        line = rendered
    else:
        logger = structlog.get_logger("core.request").bind()

        def through_structlog(method: str | None, path: str, status: int, ms: float) -> None:
            logger.info("request", method=method, path=path, status=status, ms=ms)

        line = through_structlog
    _request_line = (key, line)
    return line


def flush_log_lines() -> None:
    if _buffered is not None:
        _buffered.flush()
