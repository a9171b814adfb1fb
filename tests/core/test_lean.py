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
