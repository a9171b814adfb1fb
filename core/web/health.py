"""Liveness, readiness and the plugin list: public, for load balancers and operators."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get
from litestar.exceptions import ServiceUnavailableException

from core.platform import Platform
from core.web.guard import PlatformDep

PUBLIC = {"public": True}


class PluginView(msgspec.Struct, frozen=True):
    name: str
    kind: str
    version: str
    province: str | None
    enabled: bool
    hooks: list[str]
    settings_section: str | None


@get("/healthz", opt=PUBLIC, tags=["operations"], summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", opt=PUBLIC, tags=["operations"], summary="The database answers and is migrated")
async def readyz(platform: PlatformDep) -> dict[str, Any]:
    try:
        await platform.db.ping()
        pending = await platform.db.pending_migrations()
    except Exception as exc:
        raise ServiceUnavailableException(f"database unreachable: {type(exc).__name__}") from exc
    if pending:
        raise ServiceUnavailableException(
            "database needs migrations: run `phongdich migrate` ("
            + ", ".join(f"{app}: {len(ids)}" for app, ids in pending.items())
            + ")"
        )
    return {"status": "ready", "database": platform.db.kind}


@get("/-/plugins", opt=PUBLIC, tags=["operations"], summary="Loaded plugins and the hooks they implement")
async def plugins(platform: PlatformDep) -> list[PluginView]:
    return plugin_views(platform)


def plugin_views(platform: Platform) -> list[PluginView]:
    sections = set(platform.plugin_settings)
    return [
        PluginView(
            name=info.name,
            kind=info.kind,
            version=info.version,
            province=info.province,
            enabled=info.name not in platform.hooks.disabled,
            hooks=list(info.hooks),
            settings_section=f"plugin.{info.name}" if info.name in sections else None,
        )
        for info in platform.plugins.values()
    ]


ROUTES = [healthz, readyz, plugins]
