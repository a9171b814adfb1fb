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
    # Straight from the scope's raw headers: Litestar's Headers object costs more than this whole look-up.
    key = authorization = None
    for name, value in connection.scope["headers"]:
        if name == b"x-api-key" and key is None:
            key = value
        elif name == b"authorization" and authorization is None:
            authorization = value
    if key:
        return await platform.identity.principal_from_api_key(key.decode("latin-1").strip())
    if authorization:
        scheme, _, credential = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and credential:
            return await platform.identity.principal_from_token(credential.strip())
    return None
