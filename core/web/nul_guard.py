"""Refuse NUL characters in request input, naming the field, before any handler runs.

PostgreSQL cannot store NUL in text, so a ``\\u0000`` in any string that
reaches a query is a 500 there and silently stored on SQLite. No legitimate
field carries one (binary data travels as base64), so the core refuses it
once, for every route, like Django's forms do, instead of every plugin
remembering a pattern on every field. Runs after ``platform_guard``: callers
who may not use a route learn nothing about its input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler

NUL = "\x00"
MESSAGE = "NUL characters (\\u0000) are not allowed"


_CHECKED = "phongdich.nul_checked"


def mark_checked(scope: Any, body: bytes) -> bool:
    """Check a request's path parameters, query and whole body at once; True (and remembered) if clean.

    The lean path's quick look at the raw bytes: when it finds nothing,
    ``refuse_nul_characters`` need not look again; when it finds something,
    the guard's own check names the field.
    """
    for value in scope.get("path_params", {}).values():
        if isinstance(value, str) and NUL in value:
            return False
    if scope.get("query_string") or b"\\u0000" in body or b"\x00" in body or b"%00" in body:
        return False
    scope.setdefault("state", {})[_CHECKED] = True
    return True


def nul_checked(scope: Any) -> bool:
    """Whether ``mark_checked`` found the request clean."""
    return bool(scope.get("state", {}).get(_CHECKED))


async def refuse_nul_characters(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    if nul_checked(connection.scope):
        return
    for name, value in connection.path_params.items():
        if isinstance(value, str) and NUL in value:
            _refuse(name, "path")
    if connection.scope.get("query_string"):  # (most requests have none: no parsing then)
        for name, value in connection.query_params.multi_items():
            if NUL in name or NUL in value:
                _refuse(name.replace(NUL, "\\u0000"), "query")
    if not isinstance(connection, Request) or connection.method in ("GET", "HEAD", "OPTIONS"):
        return
    content_type = connection.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/"):
        return  # uploads stay streamed; their text fields are checked where they are read
    body = await connection.body()  # cached: the handler reads the same bytes
    if content_type.startswith("application/x-www-form-urlencoded"):
        if b"%00" in body:
            for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                if NUL in name or NUL in value:
                    _refuse(name.replace(NUL, "\\u0000"), "body")
        return
    # Valid JSON can only spell NUL as an escape; look closer only when one appears.
    if b"\\u0000" in body:
        try:
            decoded = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return  # not JSON: the body's own decoding answers with a 400
        where = _path_to_nul(decoded, "")
        if where is not None:
            _refuse(where or "body", "body")


def _path_to_nul(value: Any, path: str) -> str | None:
    """Where the first NUL sits in decoded JSON, as ``items[2].note``; None when nowhere."""
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if NUL in str(key):
                return inner.replace(NUL, "\\u0000")
            found = _path_to_nul(item, inner)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _path_to_nul(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _refuse(key: str, source: str) -> None:
    raise ValidationException(
        detail=f"Validation failed: {key}: {MESSAGE}",
        extra=[{"message": MESSAGE, "key": key, "source": source}],
    )
