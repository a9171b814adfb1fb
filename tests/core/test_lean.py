"""The lean path of a hot route: the route's guards, its domain call, and the handler for everything else."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import msgspec
from litestar import Litestar, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import HeaderParameter, JSONBody
from litestar.testing import AsyncTestClient

from core.web.context import request_context
from core.web.lean import direct_routes, lean_json


class Body(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=10)]
    count: int = 1


class Answer(msgspec.Struct):
    greeting: str
    count: int
    key: str | None


def build(**options: Any) -> tuple[Litestar, dict[str, int]]:
    calls = {"guard": 0, "handler": 0, "lean": 0}

    async def guard(connection: Any, handler: Any) -> None:
        calls["guard"] += 1
        if connection.headers.get("x-user") != "ok":
            raise PermissionDeniedException("no")
        connection.state["principal"] = "someone"

    async def answer(platform: Any, principal: Any, body: Body, headers: dict[str, str | None]) -> Answer:
        calls["lean"] += 1
        return Answer(greeting=f"hello {body.name}", count=body.count, key=headers["x-key"])

    @post(
        "/hello",
        guards=[guard],
        middleware=[lean_json(Body, answer, status_code=201, headers={"x-key": (1, 5)})],
    )
    async def hello(
        data: JSONBody[Body],
        key: Annotated[str | None, HeaderParameter(name="x-key", min_length=1, max_length=5)] = None,
    ) -> Answer:
        calls["handler"] += 1
        return Answer(greeting=f"hello {data.name}", count=data.count, key=key)

    app = Litestar([hello], openapi_config=None, **options)
    app.state.platform = None
    return app, calls


async def test_valid_requests_are_served_by_the_lean_path_like_the_handler():
    app, calls = build()
    async with AsyncTestClient(app) as client:
        lean = await client.post("/hello", json={"name": "An", "count": 2}, headers={"x-user": "ok", "x-key": "k1"})
        # A number as text decodes only leniently: the handler takes it, and answers alike.
        handled = await client.post(
            "/hello", json={"name": "An", "count": "2"}, headers={"x-user": "ok", "x-key": "k1"}
        )
    assert lean.status_code == handled.status_code == 201
    assert lean.content == handled.content == b'{"greeting":"hello An","count":2,"key":"k1"}'
    assert lean.headers["content-type"] == handled.headers["content-type"]
    assert calls == {"guard": 3, "handler": 1, "lean": 1}  # the guard ran again on the handler's way


async def test_the_guard_refuses_before_anything_else():
    app, calls = build()
    async with AsyncTestClient(app) as client:
        refused = await client.post("/hello", json={"name": "An"}, headers={"x-user": "no"})
    assert refused.status_code == 403
    assert calls == {"guard": 1, "handler": 0, "lean": 0}


async def test_bad_input_gets_the_handlers_own_errors():
    app, calls = build()
    async with AsyncTestClient(app) as client:
        too_long = await client.post("/hello", json={"name": "An"}, headers={"x-user": "ok", "x-key": "k" * 6})
        bad_body = await client.post("/hello", json={"name": "", "extra": 1}, headers={"x-user": "ok"})
        not_json = await client.post(
            "/hello", content=b"{", headers={"x-user": "ok", "content-type": "application/json"}
        )
    assert too_long.status_code == bad_body.status_code == not_json.status_code == 400
    assert "Validation failed for POST /hello" in bad_body.json()["detail"]
    assert calls["lean"] == 0


async def call(app: Litestar, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, bytes]:
    """One POST /hello straight through the ASGI app, its body in ``chunks``."""
    messages = [{"type": "http.request", "body": c, "more_body": n < len(chunks) - 1} for n, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/hello",
        "raw_path": b"/hello",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json"), (b"x-user", b"ok"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_a_body_without_a_length_or_over_the_limit_is_left_to_the_handler():
    app, calls = build()
    async with AsyncTestClient(app):
        # Streamed without content-length: the handler reads it and answers alike.
        status, content = await call(app, [], [b'{"name": ', b'"An"}'])
        assert (status, content) == (201, b'{"greeting":"hello An","count":1,"key":null}')
        assert calls["lean"] == 0 and calls["handler"] == 1
        # Announced and read here in two pieces.
        status, content = await call(app, [(b"content-length", b"14")], [b'{"name": ', b'"An"}'])
        assert (status, calls["lean"]) == (201, 1)
        # More than announced: 413.
        status, _ = await call(app, [(b"content-length", b"5")], [b'{"name": ', b'"An"}'])
        assert status == 413
        # Over the route's body limit (Litestar's default, 10 MB): the handler's 413, nothing read here.
        big = b'{"name":"' + b"x" * (10 * 1024 * 1024) + b'"}'
        status, _ = await call(app, [(b"content-length", str(len(big)).encode())], [big])
        assert status == 413
        assert calls["lean"] == 1


async def test_a_nul_escape_sends_the_request_through_the_full_guard():
    from core.web.nul_guard import mark_checked

    assert mark_checked({"headers": []}, b'{"name":"An"}')
    for body in (b'{"name":"A\\u0000n"}', b"name=A%00n", b'{"name":"A\x00n"}'):
        assert not mark_checked({"headers": []}, body), body
    assert not mark_checked({"query_string": b"a=1"}, b"{}")
    assert not mark_checked({"path_params": {"id": "a\x00"}}, b"{}")
    scope: dict = {}
    assert mark_checked(scope, b"{}") and scope["state"]


def build_direct() -> tuple[Litestar, dict[str, int], dict[str, int]]:
    """``build()``'s app with the platform's request middleware and the lean routes routed once."""
    app, calls = build()
    direct = direct_routes(app)
    assert direct is not None
    app.asgi_handler = request_context(app.asgi_handler, direct)
    routed = {"router": 0}
    handle_routing = app.asgi_router.handle_routing

    def counting(*args: Any, **kwargs: Any) -> Any:
        routed["router"] += 1
        return handle_routing(*args, **kwargs)

    app.asgi_router.handle_routing = counting  # type: ignore[method-assign]
    return app, calls, routed


async def test_a_lean_route_with_a_fixed_path_skips_the_router_with_the_same_answers():
    plain, _plain_calls = build()
    app, calls, routed = build_direct()
    cases: list[tuple[dict[str, str], Any]] = [
        ({"x-user": "ok", "x-key": "k1"}, {"name": "An", "count": 2}),  # served by the lean path
        ({"x-user": "no"}, {"name": "An"}),  # refused by the guard
        ({"x-user": "ok"}, {"name": "a name far too long"}),  # the handler's own 400
        ({"x-user": "ok", "x-key": "far too long"}, {"name": "An"}),  # a header out of bounds
    ]
    async with AsyncTestClient(plain) as reference, AsyncTestClient(app) as client:
        for headers, body in cases:
            expected = await reference.post("/hello", json=body, headers=headers)
            got = await client.post("/hello", json=body, headers=headers)
            assert (got.status_code, got.json()) == (expected.status_code, expected.json())
        assert routed["router"] == 0  # every one of them went straight to the route
        assert calls["lean"] == 1 and calls["guard"] == 6  # and again on the handler's way for the last two
        # Anything else is routed as before: another method, another spelling of the path, a bad Host.
        assert (await client.get("/hello")).status_code == 405
        assert (await client.post("/hello/", json={"name": "An"}, headers={"x-user": "ok"})).status_code == 201
        bad_host = await client.post("/hello", json={"name": "An"}, headers={"x-user": "ok", "host": "bad host!"})
        assert bad_host.status_code == 400  # the router's answer (it refuses the Host before looking the route up)
        assert routed["router"] == 2


def test_no_shortcut_past_middleware_around_the_router():
    from litestar.config.cors import CORSConfig

    assert direct_routes(build()[0]) is not None
    with_cors, _calls = build(cors_config=CORSConfig(allow_origins=["*"]))
    assert direct_routes(with_cors) is None  # CORS answers sit between the router and the app: keep them


async def test_the_platforms_check_in_route_is_routed_once(make_platform):
    from core.app import create_app

    platform = await make_platform()
    app = create_app(platform=platform)
    routed = []
    handle_routing = app.asgi_router.handle_routing
    app.asgi_router.handle_routing = lambda **kw: routed.append(kw) or handle_routing(**kw)  # type: ignore[method-assign]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        refused = await client.post("/api/checkin/visits", json={"code": "x"})
        other = await client.get("/healthz")
    assert refused.status_code == 401 and refused.json()["request_id"] == refused.headers["x-request-id"]
    assert other.status_code == 200
    assert [call["path"] for call in routed] == ["/healthz"]
