"""The result lookup's lean path: the same guard, the same call, the same answers, less framework.

The citizens' lookup is public and answers a thousand requests a second at
peak; Litestar's per-request machinery (a copy of the handler per guard,
keyword arguments through a signature model, dependencies, a response object)
costs more than the lookup's own work. ``lean_lookup(call)`` is a middleware
for the lookup route's handler that serves its ordinary requests itself:

1. it runs the route's guards on the request, as Litestar would (the app's
   ``platform_guard``: the plugin's switch, identity, NUL characters);
2. it decodes the body with msgspec, strictly, into the handler's own body
   type (``LookupIn``, whose bounds are msgspec's);
3. it calls what the handler calls, with the client's address, and sends the
   result as JSON with the handler's status code.

A body that does not decode (or a route with request hooks) goes on to the
handler unchanged, so every validation error is exactly Litestar's. An
exception from a guard or the call (the lookup's 404, 400 or 429) goes to the
app's exception handlers, as it would from the handler. The handler stays the
route's declaration: its OpenAPI operation, its ``opt``, its body type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request

from core.web.guard import client_address

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from core.platform import Platform

LookupCall = Callable[["Platform", str, Any], Awaitable[Any]]
"""``call(platform, client_address, body)``: what the handler does; its result is sent as JSON."""

_JSON_HEADERS = (b"content-type", b"application/json")


def lean_lookup(body_type: type[Any], call: LookupCall, *, status_code: int) -> Callable[[ASGIApp], ASGIApp]:
    """A handler middleware serving the route's valid JSON requests with ``call``."""
    decoder = msgspec.json.Decoder(body_type)
    encoder = msgspec.json.Encoder()

    def middleware(app: ASGIApp) -> ASGIApp:
        served: dict[int, tuple[Any, bool]] = {}  # handler id -> (handler, served here)

        def served_here(handler: Any) -> bool:
            known = served.get(id(handler))
            if known is None or known[0] is not handler:
                known = served[id(handler)] = (handler, not _has_request_hooks(handler))
            return known[1]

        async def lean(scope: Scope, receive: Receive, send: Send) -> None:
            handler: Any = scope.get("route_handler")
            if scope["type"] != "http" or handler is None or not served_here(handler):
                await app(scope, receive, send)
                return
            request: Request[Any, Any, Any] = handler.resolve_request_class()(scope, receive, send)
            for guard in handler.resolve_guards():
                await guard(request, handler)
            try:
                body = decoder.decode(await request.body())  # cached: the handler reads the same bytes
            except (msgspec.DecodeError, UnicodeDecodeError):
                await app(scope, receive, send)  # the handler answers (and explains) this one
                return
            platform: Platform = request.app.state.platform
            content = encoder.encode(await call(platform, client_address(request), body))
            await send(
                {
                    "type": "http.response.start",
                    "status": status_code,
                    "headers": [_JSON_HEADERS, (b"content-length", str(len(content)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": content, "more_body": False})

        return lean

    return middleware


def _has_request_hooks(handler: Any) -> bool:
    """Hooks around the handler, response headers or cookies of its layers, caching: left to Litestar."""
    return bool(
        handler.resolve_before_request()
        or any(getattr(layer, "after_request", None) for layer in handler.ownership_layers)
        or handler.resolve_after_response()
        or handler.resolve_response_headers()
        or handler.resolve_response_cookies()
        or handler.cache
    )
