"""The database: Piccolo engines for SQLite and PostgreSQL, table binding, migrations.

Piccolo finds its engine through a configuration module; ours is
``core.piccolo_conf``, which answers with the database activated here. So the
same tables and migrations run on the embedded SQLite file and on PostgreSQL,
and several platforms (tests) can take turns in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib
import io
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from graphlib import TopologicalSorter
from typing import Any, Literal

import asyncpg
from piccolo.apps.migrations.commands.forwards import ForwardsMigrationManager
from piccolo.apps.migrations.tables import Migration
from piccolo.conf.apps import AppConfig, AppRegistry
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType
from piccolo.table import Table

os.environ.setdefault("PICCOLO_CONF", "core.piccolo_conf")

CORE_APP = "core.piccolo_app"

_active: Database | None = None
# The pooled connection a task's statements outside a transaction go to, when it holds one (``Database.kept``).
_held: contextvars.ContextVar[asyncpg.Connection | None] = contextvars.ContextVar("phongdich_held", default=None)


class Database:
    """One deployment's database: the primary, optional read replicas, and its apps."""

    def __init__(
        self,
        url: str,
        *,
        app_modules: Iterable[str] = (CORE_APP,),
        replica_urls: Iterable[str] = (),
        pool_size: int = 10,
    ) -> None:
        self.url = url
        self.kind: Literal["sqlite", "postgres"] = "sqlite" if url.startswith("sqlite") else "postgres"
        self.pool_size = pool_size
        self.app_modules = list(dict.fromkeys([CORE_APP, *app_modules]))
        self.replicas = {f"replica{i}": _engine(u) for i, u in enumerate(replica_urls)}
        self.engine: Any = _engine(url, extra_nodes=self.replicas)
        self.registry = AppRegistry(apps=self.app_modules)
        self._pooled = False
        # Connections kept out of the pool between the group commit's batches (``kept``): (connection,
        # when last used). At most ``keep``; each goes back to the pool after ``keep_for`` seconds unused.
        self.keep = 2
        self.keep_for = 1.0
        self._kept: list[tuple[asyncpg.Connection, float]] = []
        self._kept_timer: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def app_configs(self) -> list[AppConfig]:
        """The Piccolo apps, sorted so that each comes after those it depends on."""
        configs = self.registry.app_configs
        order = TopologicalSorter(
            {
                name: [dep.app_name for dep in config.migration_dependency_app_configs]
                for name, config in configs.items()
            }
        ).static_order()
        return [configs[name] for name in order if name in configs]

    @property
    def tables(self) -> list[type[Table]]:
        return [table for config in self.app_configs for table in config.table_classes]

    def activate(self) -> None:
        """Make this database the one every table (and Piccolo itself) uses."""
        global _active
        _active = self
        for table in [*self.tables, Migration]:
            table._meta.db = self.engine  # type: ignore[attr-defined]

    async def start(self) -> None:
        """Open the connection pool (PostgreSQL) and tune SQLite for concurrent use."""
        self.activate()
        if self.kind == "postgres" and not self._pooled:
            await self.engine.start_connection_pool(min_size=1, max_size=self.pool_size)
            self._pooled = True

    async def stop(self) -> None:
        if self._pooled:
            await self.release_kept()
            await self.engine.close_connection_pool()
            self._pooled = False

    def transaction(self) -> Any:
        """A write transaction. On SQLite it takes the write lock at once (no upgrade deadlock)."""
        if isinstance(self.engine, SQLiteEngine):
            return _SQLiteWrite(engine=self.engine, transaction_type=TransactionType.immediate)
        return self.engine.transaction()

    def in_transaction(self) -> bool:
        return self.engine.current_transaction.get() is not None

    async def ping(self) -> None:
        await self.execute("SELECT 1")

    async def execute(self, sql: str, *args: Any) -> list[Any]:
        """Run raw SQL with ``{}`` placeholders (Piccolo's) and return its rows.

        Rows are mappings (``row["column"]``): dicts on SQLite, asyncpg
        records on PostgreSQL.
        """
        from piccolo.querystring import QueryString

        return await self.engine.run_querystring(QueryString(sql, *args))

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Like ``execute``, for hot paths: on PostgreSQL straight to asyncpg, skipping Piccolo's compiler.

        ``{}`` placeholders become ``$1, $2, ...`` once per statement text and
        asyncpg keeps the prepared statement, so a request pays one round trip
        and no query building. Arguments go to asyncpg as they are: pass JSON
        as text. On SQLite this is ``execute``.
        """
        if self.kind != "postgres" or self.engine.pool is None:
            return await self.execute(sql, *args)
        query = _numbered(sql)
        transaction = self.engine.current_transaction.get()
        if transaction is not None:
            return await transaction.connection.fetch(query, *args)
        held = _held.get()
        if held is not None:
            return await held.fetch(query, *args)
        async with self.engine.pool.acquire() as connection:
            return await connection.fetch(query, *args)

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Inside: ``fetch`` outside a transaction goes to one connection, kept out of the pool afterwards.

        For the group commit, whose batch writers store a batch with one
        ``fetch`` each, many times a second: taking a connection from asyncpg's
        pool and giving it back cost more of this process's time than the
        batch's own call. A connection kept is taken again by the next batch;
        at most ``keep`` are kept, and one unused for ``keep_for`` seconds goes
        back to the pool. One that failed, or was left in a transaction, goes
        back at once (the pool resets or replaces it). SQLite: nothing to keep.
        """
        if self.kind != "postgres" or self.engine.pool is None or _held.get() is not None:
            yield
            return
        connection = self._kept.pop()[0] if self._kept else await self.engine.pool.acquire()
        token = _held.set(connection)
        finished = False
        try:
            yield
            finished = True
        finally:
            _held.reset(token)
            if (
                finished
                and len(self._kept) < self.keep
                and not connection.is_closed()
                and not connection.is_in_transaction()
            ):
                self._kept.append((connection, time.monotonic()))
                self._release_unused_later()
            else:
                await self.engine.pool.release(connection)

    def _release_unused_later(self) -> None:
        if self._kept_timer is None:
            self._kept_timer = asyncio.get_running_loop().call_later(self.keep_for, self._release_unused)

    def _release_unused(self) -> None:
        """Give the pool back the kept connections unused for ``keep_for`` seconds; look again later."""
        self._kept_timer = None
        unused_since = time.monotonic() - self.keep_for
        unused = [connection for connection, used in self._kept if used <= unused_since]
        self._kept = [(connection, used) for connection, used in self._kept if used > unused_since]
        for connection in unused:
            task = asyncio.get_running_loop().create_task(self.engine.pool.release(connection))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)
        if self._kept:
            self._release_unused_later()

    async def release_kept(self) -> None:
        """Every kept connection back to the pool (before the pool closes)."""
        if self._kept_timer is not None:
            self._kept_timer.cancel()
            self._kept_timer = None
        kept, self._kept = self._kept, []
        for connection, _used in kept:
            await self.engine.pool.release(connection)
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    def any_of(self, column: str, values: list[Any]) -> tuple[str, list[Any]]:
        """A condition "``column`` is one of ``values``" with its arguments, for ``fetch``/``execute``.

        On PostgreSQL one array argument (``= ANY``), so the statement text and
        its prepared plan are the same whatever the number of values; on
        SQLite an ``IN`` list.
        """
        if self.kind == "postgres":
            return f"{column} = ANY({{}})", [list(values)]
        return f"{column} IN ({', '.join(['{}'] * len(values))})", list(values)

    async def pending_migrations(self) -> dict[str, list[str]]:
        """Migration ids not yet applied, per app."""
        self.activate()
        manager = ForwardsMigrationManager(app_name="all")
        with contextlib.redirect_stdout(io.StringIO()):
            await manager.create_migration_table()
        pending: dict[str, list[str]] = {}
        for config in self.app_configs:
            ran = set(await Migration.get_migrations_which_ran(app_name=config.app_name))
            modules = manager.get_migration_modules(config.resolved_migrations_folder_path)
            missing = sorted(set(manager.get_migration_ids(modules)) - ran)
            if missing:
                pending[config.app_name] = missing
        return pending

    async def migrate(self, progress: Callable[[str], None] = lambda _line: None) -> int:
        """Apply every pending migration, app by app in dependency order. Returns the count."""
        self.activate()
        if self.kind == "sqlite":
            await self._enable_wal()
        pending = await self.pending_migrations()
        applied = 0
        for config in self.app_configs:
            ids = pending.get(config.app_name, [])
            if not ids:
                progress(f"{config.app_name}: up to date")
                continue
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                result = await ForwardsMigrationManager(app_name=config.app_name).run()
            if not result.success:
                raise RuntimeError(f"migrating {config.app_name} failed: {result.message}\n{output.getvalue()}")
            applied += len(ids)
            progress(f"{config.app_name}: applied {len(ids)} migration(s): {', '.join(ids)}")
        return applied

    async def _enable_wal(self) -> None:
        await self.engine._run_in_new_connection("PRAGMA journal_mode=WAL")


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    """``{}`` placeholders as PostgreSQL's ``$1, $2, ...``."""
    parts = sql.split("{}")
    return "".join(part + (f"${n}" if n < len(parts) else "") for n, part in enumerate(parts, start=1))


def active() -> Database:
    """The activated database; for Piccolo's CLI, one built from the environment."""
    if _active is None:
        from core.platform import Platform
        from core.settings import load_settings

        Platform(load_settings()).db.activate()
    assert _active is not None
    return _active


class _SQLiteWrite(SQLiteTransaction):
    """Piccolo's SQLite transaction, but a ``BEGIN`` that fails ("database is locked") closes its connection.

    Piccolo leaves that connection (and aiosqlite's thread) open: under a long
    write queue, hundreds of them piled up.
    """

    async def __aenter__(self) -> SQLiteTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        try:
            await self.begin()
        except BaseException:
            await self.connection.close()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self


class _PooledConnection(asyncpg.Connection):
    """Skips asyncpg's reset query on release, saving a round trip per request.

    phongdich sets no session state (no LISTEN, session settings, cursors or
    session-level advisory locks), so there is nothing to reset; a connection
    released inside a transaction is still rolled back.
    """

    def get_reset_query(self) -> str:
        return "ROLLBACK" if self.is_in_transaction() else ""


def _engine(url: str, extra_nodes: dict[str, Any] | None = None) -> Any:
    if url.startswith("sqlite"):
        path = url.split("://", 1)[1][1:] if "://" in url else url
        return SQLiteEngine(path=path or "phongdich.sqlite3", timeout=30)
    dsn = url.replace("postgres://", "postgresql://", 1)
    return PostgresEngine(
        config={"dsn": dsn, "connection_class": _PooledConnection}, extra_nodes=extra_nodes or {}, log_queries=False
    )


def import_app(module: str) -> AppConfig:
    config: AppConfig = importlib.import_module(module).APP_CONFIG
    return config
