"""A lean path for hot JSON routes: the same guard, the same domain call, the same errors, less framework.

For a route that answers thousands of requests a second (a check-in), Litestar's
per-request machinery costs more than the route's own work: a copy of the
handler for each guard, keyword arguments extracted and converted through a
signature model, dependencies resolved, a response object built and rendered.
``lean_json(...)`` (signed-in callers) and ``lean_public_json(...)`` (public
routes such as the citizens' result lookup) make a middleware for such a
route's handler that serves its ordinary, valid requests itself:

1. it runs the route's guards (the app's ``platform_guard``: identity, the
   ``authorize`` vote, consent, NUL characters) on the request, as Litestar
   would, so a refused caller gets the same 401, 403 or 400;
2. it decodes the body with msgspec, strictly, into the route's body type and
   reads the declared headers, within the same bounds as the handler's
   parameters;
3. it calls the domain function the handler calls, and sends the result as
   JSON with the handler's status code.

Whatever it does not take on as it is (a body that does not decode strictly
into the type, a header out of bounds, a route with request hooks) goes on to
the route's own handler unchanged: the guard runs again (the principal and
the body are cached on the request) and Litestar answers, so every
validation error is exactly the handler's. Exceptions from the guards or the
domain function go to the app's exception handlers, as they would from the
handler. The handler stays the route's declaration: its OpenAPI operation,
its ``opt`` (action, purpose), its body type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Litestar, Request
from litestar._asgi.utils import is_valid_host
from litestar.exceptions import InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware
from litestar.routes import HTTPRoute
from litestar.utils import normalize_path
from litestar.utils.scope.state import ScopeState

from core.web import nul_guard
from core.web.guard import client_address, current_principal

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

    from core.platform import Platform
    from core.principal import Principal

LeanCall = Callable[["Platform", "Principal", Any, dict[str, str | None]], Awaitable[Any]]
"""``call(platform, principal, body, headers)``: the route's domain call; its result is sent as JSON."""
PublicCall = Callable[["Platform", str, Any], Awaitable[Any]]
"""``call(platform, client_address, body)``: a public route's domain call; its result is sent as JSON."""
_Invoke = Callable[[Request[Any, Any, Any], Any, dict[str, str | None]], Awaitable[Any]]
_TO_HANDLER = object()  # what an ``_Invoke`` returns to leave the request to the route's handler


def lean_json(
    body_type: type[Any],
    call: LeanCall,
    *,
    status_code: int,
    headers: Mapping[str, tuple[int, int]] | None = None,
    writes: bool = False,
) -> Callable[[ASGIApp], ASGIApp]:
    """A handler middleware serving the route's valid JSON requests of signed-in callers with ``call``.

    ``headers`` maps the (lower-case) header names ``call`` receives to the
    bounds of their length, as the handler declares them; an absent header is
    ``None``, one out of bounds leaves the request to the handler. ``writes``:
    the call hands one write to the group commit (a check-in), announced as the
    request starts (``GroupCommit.expecting``), so that a batch collecting
    concurrent writes waits for it, and for no one else.
    """

    async def invoke(request: Request[Any, Any, Any], body: Any, values: dict[str, str | None]) -> Any:
        principal = await current_principal(request)
        if principal is None:
            return _TO_HANDLER  # the handler answers (and explains) this one
        return await call(request.app.state.platform, principal, body, values)

    return _lean(body_type, invoke, status_code, headers or {}, writes)


def lean_public_json(body_type: type[Any], call: PublicCall, *, status_code: int) -> Callable[[ASGIApp], ASGIApp]:
    """The same for a public route (a citizen's result lookup): ``call`` gets the client's address."""

    async def invoke(request: Request[Any, Any, Any], body: Any, values: dict[str, str | None]) -> Any:
        return await call(request.app.state.platform, client_address(request), body)

    return _lean(body_type, invoke, status_code, {}, False)


def _lean(
    body_type: type[Any], invoke: _Invoke, status_code: int, bounds: Mapping[str, tuple[int, int]], writes: bool
) -> Callable[[ASGIApp], ASGIApp]:
    decoder = msgspec.json.Decoder(body_type)
    encoder = msgspec.json.Encoder()
    wanted = {name.encode("latin-1"): name for name in bounds}

    def middleware(app: ASGIApp) -> ASGIApp:
        plain: dict[int, tuple[Any, bool]] = {}  # handler id -> (handler, served here)

        def served_here(handler: Any) -> bool:
            known = plain.get(id(handler))
            if known is None or known[0] is not handler:
                known = plain[id(handler)] = (handler, not _has_request_hooks(handler))
            return known[1]

        async def lean(scope: Scope, receive: Receive, send: Send) -> None:
            handler: Any = scope.get("route_handler")
            if scope["type"] != "http" or handler is None or not served_here(handler):
                await app(scope, receive, send)
            elif writes:
                with scope["app"].state.platform.group_commit.expecting():
                    await serve(scope, receive, send, handler)
            else:
                await serve(scope, receive, send, handler)

        async def serve(scope: Scope, receive: Receive, send: Send, handler: Any) -> None:
            raw = await _read_body(scope, receive, handler)
            if raw is None:
                await app(scope, receive, send)  # a body not announced by its length: the handler reads it
                return
            # The bytes are where Litestar's request looks first: the guard and the handler read them.
            ScopeState.from_scope(scope).body = raw
            if not nul_guard.mark_checked(scope, raw):
                await app(scope, receive, send)  # a NUL escape somewhere: the guard names the field
                return
            request: Request[Any, Any, Any] = handler.resolve_request_class()(scope, receive, send)
            # The route's guards, as Litestar runs them (without its defensive copy of the handler:
            # the platform's guard reads the handler's ``opt`` and never changes it).
            for guard in handler.resolve_guards():
                await guard(request, handler)
            values: dict[str, str | None] = dict.fromkeys(bounds)
            if wanted:
                for key, value in scope["headers"]:
                    name = wanted.get(key)
                    if name is None:
                        continue
                    text = value.decode("latin-1")
                    low, high = bounds[name]
                    if values[name] is not None or not low <= len(text) <= high:
                        await app(scope, receive, send)  # out of bounds, or sent twice: the handler answers
                        return
                    values[name] = text
            try:
                body = decoder.decode(raw)
            except (msgspec.DecodeError, UnicodeDecodeError):
                await app(scope, receive, send)  # the handler answers (and explains) this one
                return
            result = await invoke(request, body, values)
            if result is _TO_HANDLER:
                await app(scope, receive, send)
                return
            content = encoder.encode(result)
            await send(
                {
                    "type": "http.response.start",
                    "status": status_code,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(content)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": content, "more_body": False})

        return lean

    _lean_factories.add(middleware)
    return middleware


# The middleware factories ``_lean`` made: a route using one of them is served by the lean path.
_lean_factories: set[Callable[..., Any]] = set()


def direct_routes(app: Litestar) -> Callable[[Scope], ASGIApp | None] | None:
    """What the router would answer for the lean routes with fixed paths, looked up once.

    Litestar's router does the same work for every request to the same route
    (normalises the path, checks the Host header, looks the route up, gathers
    the exception handlers of the handler's layers again): for a check-in
    that is about a tenth of the lean path's cost. ``direct(scope)`` returns,
    for a request to such a route, the route's own ASGI app (its middleware,
    the lean one first, and its handler) wrapped in Litestar's exception
    middleware as the router is, with the scope set up as the router sets it;
    for anything else None, and the request goes through the app as usual.

    None when the app has more between its exception middleware and the
    router than Litestar's default (CORS, OpenTelemetry): those stay in the path.
    """
    outer = app.asgi_handler
    if not isinstance(outer, ExceptionHandlerMiddleware) or outer.app is not app.asgi_router:
        return None
    table: dict[tuple[str, str], tuple[ASGIApp, Any, Any]] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_parameters:
            continue
        path = normalize_path(route.path)
        for handler in route.route_handlers:
            if not any(factory in _lean_factories for factory in handler.middleware or ()):
                continue
            for method in handler.http_methods:
                routed, routed_handler, *_rest = app.asgi_router.handle_routing(path=path, method=method)
                if routed_handler is handler:
                    wrapped = ExceptionHandlerMiddleware(app=routed, debug=None)
                    table[(method, path)] = (wrapped, handler, handler.resolve_exception_handlers())
    if not table:
        return None

    def direct(scope: Scope) -> ASGIApp | None:
        entry = table.get((scope.get("method"), scope["path"]))  # type: ignore[arg-type]
        if entry is None or scope.get("root_path"):
            return None
        for name, value in scope["headers"]:
            if name == b"host":
                if not is_valid_host(value):
                    return None  # the router refuses it, as it would
                break
        routed, handler, exception_handlers = entry
        scope["path_params"] = {}
        ScopeState.from_scope(scope).exception_handlers = exception_handlers
        scope["route_handler"] = handler
        scope["path_template"] = scope["path"]
        return routed

    return direct


async def _read_body(scope: Scope, receive: Receive, handler: Any) -> bytes | None:
    """The request's body when its ``content-length`` announces it within the route's limit, else None.

    Read straight from the server's messages (Litestar's request would stream
    it through an async generator). None leaves everything unread for the
    handler, which answers a body that is too large or not announced.
    """
    announced = None
    for name, value in scope["headers"]:
        if name == b"content-length":
            announced = value
            break
    if announced is None or not announced.isdigit():
        return None
    length = int(announced)
    limit = handler.resolve_request_max_body_size()
    if limit is not None and length > limit:
        return None
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        if chunk:
            received += len(chunk)
            if received > length:
                raise RequestEntityTooLarge  # more than it announced
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
