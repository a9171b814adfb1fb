"""The core's identity provider: bearer tokens (staff, citizens) and API keys (devices)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.markers import hookimpl
from core.principal import Principal

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection

    from core.platform import Platform


@hookimpl(trylast=True)
async def identify(connection: ASGIConnection[Any, Any, Any, Any], platform: Platform) -> Principal | None:
    key = connection.headers.get("x-api-key")
    if key:
        return await platform.identity.principal_from_api_key(key.strip())
    authorization = connection.headers.get("authorization", "")
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "bearer" and credential:
        return await platform.identity.principal_from_token(credential.strip())
    return None
