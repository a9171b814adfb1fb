"""The lean path of a hot route: the route's guards, its domain call, and the handler for everything else."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Litestar, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import HeaderParameter, JSONBody
from litestar.testing import AsyncTestClient

from core.web.lean import lean_json


class Body(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=10)]
    count: int = 1


class Answer(msgspec.Struct):
    greeting: str
    count: int
    key: str | None


def build() -> tuple[Litestar, dict[str, int]]:
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

    app = Litestar([hello], openapi_config=None)
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
