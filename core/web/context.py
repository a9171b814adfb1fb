"""Per-request context: a request id on every log line and on the response."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core.ids import new_hex
from core.observability import end_log_context, request_line, start_log_context

_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_context(app: ASGIApp, direct: Callable[[Scope], ASGIApp | None] | None = None) -> ASGIApp:
    """ASGI middleware: bind ``request_id`` for the request's log lines, echo it, log the outcome.

    ``direct(scope)``: the app that answers this request without going through ``app`` (the lean
    routes, already routed: ``core.web.lean.direct_routes``), or None.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _VALID_ID.match(incoming) else new_hex()
        context = start_log_context(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            routed = direct(scope) if direct is not None else None
            await (routed or app)(scope, receive, send_with_id)
        finally:
            method: str | None = scope.get("method")  # type: ignore[assignment]
            request_line()(method, scope["path"], status, round((time.perf_counter() - started) * 1000, 2))
            end_log_context(context)

    return middleware


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            decoded: Any = value.decode("latin-1")
            return str(decoded)
    return None
