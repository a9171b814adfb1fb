"""Error responses: clear 4xx for bad input, and never a stack trace for anything."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from core.errors import Conflict, NotFound
from core.fields import explained
from core.observability import log_context

log = structlog.get_logger("core.errors")


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["errors"] = explained(exc.extra)  # a pattern's regex in words (core.fields)
    body["request_id"] = log_context().get("request_id")
    return Response(body, status_code=exc.status_code, headers=exc.headers, media_type=MediaType.JSON)


def domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """``InvalidInput`` is a 400, ``NotFound`` a 404, ``Conflict`` a 409, with the message as is."""
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    return http_error(request, HTTPException(detail=str(exc), status_code=status))


def undecodable_body(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    """A JSON body with bytes that are not UTF-8 is a 400 (msgspec raises this, not DecodeError)."""
    return http_error(
        request, HTTPException(detail=f"The request body is not valid UTF-8 ({exc.reason}).", status_code=400)
    )


def unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("request.failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    request_id = log_context().get("request_id")
    return Response(
        {
            "status_code": HTTP_500_INTERNAL_SERVER_ERROR,
            "detail": "Internal server error. The operators have the details under this request id.",
            "request_id": request_id,
        },
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        media_type=MediaType.JSON,
    )
