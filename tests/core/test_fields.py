"""Patterns in words: a value that does not match a field's pattern is told what the field takes."""

from __future__ import annotations

from typing import Annotated

import httpx
import msgspec

from core.fields import explained, pattern

_LETTERS = pattern(r"^[A-Z]{3}$", "three capital letters")


class _Body(msgspec.Struct):
    code: Annotated[str, msgspec.Meta(pattern=_LETTERS)]


def _message(body: bytes) -> str:
    try:
        msgspec.json.decode(body, type=_Body)
    except msgspec.ValidationError as exc:
        return str(exc).split(" - ", 1)[0]  # as Litestar keeps it
    raise AssertionError("decoded")


def test_a_registered_pattern_is_put_in_words_and_the_rest_is_left_alone() -> None:
    refused = _message(b'{"code": "abc"}')
    errors = [
        {"message": refused, "key": "code", "source": "body"},
        {"message": "Expected `int`, got `str`", "key": "n", "source": "body"},
        "not a dict",
    ]
    assert explained(errors) == [
        {"message": "three capital letters", "key": "code", "source": "body"},
        {"message": "Expected `int`, got `str`", "key": "n", "source": "body"},
        "not a dict",
    ]
    assert explained({"message": refused}) == {"message": refused}  # not Litestar's list: as it is


def test_the_first_words_given_for_a_regex_stay() -> None:
    assert pattern(r"^[A-Z]{3}$", "something else") == r"^[A-Z]{3}$"
    refused = _message(b'{"code": "abc"}')
    assert explained([{"message": refused}]) == [{"message": "three capital letters"}]


async def test_a_bad_phone_is_told_what_a_phone_number_looks_like(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/otp", json={"phone": "call me maybe"})
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["key"] == "phone" and error["source"] == "body"
    assert error["message"].startswith("a phone number: digits"), error
    assert "regex" not in response.text


async def test_a_bad_username_is_told_what_a_username_takes(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/login", json={"username": "an epi!", "password": "x"})
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [
        {"message": "letters, digits and _ . @ - only", "key": "username", "source": "body"}
    ]
