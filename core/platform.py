"""The running platform: settings, plugins, database and the core services, wired once.

``Platform(settings)`` loads the plugins and builds every service; it does no
I/O. ``await platform.start()`` opens the database and runs the ``startup``
hooks; the web app and the CLI both go through here, so they see the same
plugins, roles and purposes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from itertools import chain
from typing import Any

import structlog

from core import clock
from core.access import Access
from core.audit import AuditTrail
from core.batching import GroupCommit
from core.consent import CORE_PURPOSES, Consent
from core.defaults.permissions import RoleRules
from core.events import Events
from core.identity import Identity
from core.jobs import Job, Scheduler
from core.messages import Messenger
from core.plugins import Hooks, PluginInfo, load_plugins
from core.principal import Principal
from core.ratelimit import RateLimiter
from core.roles import RoleRegistry
from core.settings import Settings, validate_plugin_sections
from core.storage import Database
from core.tables import AdminUnit, ProvincePluginState

log = structlog.get_logger("core.platform")


class Platform:
    def __init__(self, settings: Settings, *, extra_plugins: Iterable[tuple[str, object]] = ()) -> None:
        self.settings = settings
        pm, infos = load_plugins(settings.plugins, extra_plugins)
        self.hooks = Hooks(pm, infos, trace=settings.trace_hooks)
        self.plugin_settings: dict[str, Any] = validate_plugin_sections(
            settings, self.hooks.collect_sync("register_settings")
        )
        self.roles = RoleRegistry(_flatten(self.hooks.collect_sync("register_roles")))
        pm.register(RoleRules(self.roles), name="core.permissions")
        self.hooks.infos["core.permissions"] = PluginInfo(
            name="core.permissions",
            kind="core",
            module="core.defaults.permissions",
            version=infos[next(iter(infos))].version,
            province=None,
            hooks=("authorize", "scope_filter"),
        )
        self.db = Database(
            settings.database_url,
            app_modules=_flatten(self.hooks.collect_sync("register_piccolo_apps")),
            replica_urls=settings.replica_urls,
            pool_size=settings.database_pool_size,
        )
        self.consent = Consent(
            [*CORE_PURPOSES, *_flatten(self.hooks.collect_sync("register_purposes"))],
            epidemic_declared=settings.epidemic_declared,
        )
        self.access = Access(self.hooks)
        self.group_commit = GroupCommit(self.db)
        # Audit records of reads hold their answers until committed: their batches go at once (no
        # collection wait), and the records arriving meanwhile make up the next one. The chain takes
        # one batch at a time, so when commits are slow (a busy disk) only bigger batches keep up.
        # (SQLite: 1,000 records of 13 fields stay under its 32,766 parameters a statement.)
        batch = 4096 if self.db.kind == "postgres" else 1000
        self.audit = AuditTrail(self.db, GroupCommit(self.db, max_wait=0.0, max_batch=batch, in_flight=1))
        self.messages = Messenger(self)
        self.events = Events(self)
        self.limiter = RateLimiter(self.db, settings.redis_url)
        self.identity = Identity(self)
        self.scheduler = Scheduler(self, [*core_jobs(), *_flatten(self.hooks.collect_sync("register_jobs"))])
        self._plugin_state_checked = 0.0
        self._started = False

    @property
    def plugins(self) -> dict[str, PluginInfo]:
        return self.hooks.infos

    def plugin_config(self, name: str) -> Any:
        """The validated settings Struct of plugin ``name``."""
        return self.plugin_settings[name]

    async def start(self) -> None:
        await self.db.start()
        await self.limiter.start()
        await self.refresh_plugin_state(force=True)
        if not self._started:
            self._started = True
            await self.hooks.collect_all("startup", platform=self)

    async def stop(self) -> None:
        if self._started:
            await self.hooks.collect_all("shutdown", platform=self)
            self._started = False
        await self.group_commit.close()
        await self.audit.close()
        await self.limiter.stop()
        await self.db.stop()

    async def identify(self, connection: Any) -> Principal | None:
        return await self.hooks.first("identify", connection=connection, platform=self)

    async def province_exists(self, code: str) -> bool:
        return bool(await AdminUnit.exists().where(AdminUnit.code == code))

    def plugin_state_due(self) -> bool:
        """Whether ``refresh_plugin_state`` would read the switches again (checked on every request)."""
        return time.monotonic() - self._plugin_state_checked >= self.settings.plugin_state_ttl_seconds

    async def refresh_plugin_state(self, *, force: bool = False) -> None:
        """Re-read which province plugins their provinces switched off (every few seconds)."""
        if not force and not self.plugin_state_due():
            return
        self._plugin_state_checked = time.monotonic()
        if not self.hooks.province_plugins():
            return
        rows = await ProvincePluginState.select(ProvincePluginState.plugin).where(
            ProvincePluginState.enabled == False  # noqa: E712
        )
        self.hooks.set_disabled(row["plugin"] for row in rows)

    async def set_province_plugin(self, plugin: str, *, enabled: bool, by: Principal) -> None:
        """Switch a province plugin on or off for its province (audited, seen by all workers)."""
        province = self.plugins[plugin].province
        assert province is not None
        from core.access import Resource

        async with self.db.transaction():
            await ProvincePluginState.insert(
                ProvincePluginState(
                    plugin=plugin, province=province, enabled=enabled, changed_by=by.id, changed_at=clock.now()
                )
            ).on_conflict(
                target=ProvincePluginState.plugin,
                action="DO UPDATE",
                values=[ProvincePluginState.enabled, ProvincePluginState.changed_by, ProvincePluginState.changed_at],
            )
            await self.audit.record(
                by,
                "core.province_plugins." + ("enable" if enabled else "disable"),
                Resource(kind="province_plugin", id=plugin, province=province),
                purpose="core.identity",
            )
        await self.refresh_plugin_state(force=True)


def core_jobs() -> list[Job]:
    async def purge_rate_buckets(platform: Platform) -> str:
        return f"removed {await platform.limiter.purge_expired()} expired rate-limit windows"

    return [Job(name="core.rate_buckets.purge", interval_seconds=3600, run=purge_rate_buckets)]


def _flatten(results: list[Any]) -> list[Any]:
    return list(chain.from_iterable(r if isinstance(r, list | tuple) else [r] for r in results))
