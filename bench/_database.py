"""The benchmark's own PostgreSQL database: created, migrated, seeded with credentials, dropped.

Each run makes ``phongdich_bench_<pid>`` on the server named by
``--database`` (default ``postgresql://postgres@127.0.0.1:5432``), so runs
never touch a real deployment's or the test suite's data, and drops it at
the end even when the run fails or is interrupted.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from typing import Any, Literal

import asyncpg

from bench._serve import process_cpu
from bench.plugin import BENCH_ROLE, bench_plugins, create_bench_tables
from core.admin_units import ensure_units
from core.platform import Platform
from core.settings import Settings, load_settings
from core.testing import citizen_headers, device_headers, staff_headers

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
AuthKind = Literal["staff", "citizen", "device", "none"]


class BenchDatabase:
    """``async with BenchDatabase(server) as db``: a migrated database for one benchmark run."""

    def __init__(self, server: str = DEFAULT_SERVER, plugins: Iterable[str] = ()) -> None:
        self.server = server.rstrip("/")
        self.name = f"phongdich_bench_{os.getpid()}"
        self.url = f"{self.server}/{self.name}"
        self.plugins = list(plugins)
        self.secret_key = secrets.token_urlsafe(48)

    def settings(self) -> Settings:
        return load_settings(env=self.environment())

    def environment(self) -> dict[str, str]:
        """The ``PHONGDICH_*`` variables a server process needs to serve this database."""
        return {
            "PHONGDICH_DATABASE_URL": self.url,
            "PHONGDICH_SECRET_KEY": self.secret_key,
            "PHONGDICH_PLUGINS": ",".join(self.plugins),
            # The events and job loops poll the database; they would add noise, not request cost.
            "PHONGDICH_RUN_BACKGROUND_TASKS": "false",
            "PHONGDICH_LOG_FORMAT": "json",
        }

    async def __aenter__(self) -> BenchDatabase:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        await self._admin(f'CREATE DATABASE "{self.name}"')
        try:
            platform = Platform(self.settings(), extra_plugins=bench_plugins())
            await platform.db.start()
            try:
                await platform.db.migrate()
                await ensure_units()
                await create_bench_tables(platform)
            finally:
                await platform.db.stop()
        except BaseException:
            await self.drop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drop()

    async def drop(self) -> None:
        await self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    async def credentials(
        self, kind: AuthKind, *, roles: list[str] | None = None, province: str = "01", site: str | None = None
    ) -> dict[str, str]:
        """Headers of a real, freshly issued credential of ``kind`` (bearer token or API key)."""
        if kind == "none":
            return {}
        platform = Platform(self.settings(), extra_plugins=bench_plugins())
        await platform.start()
        try:
            if kind == "staff":
                return await staff_headers(platform, roles or [BENCH_ROLE], province=province, site=site)
            if kind == "citizen":
                headers, _subject = await citizen_headers(platform)
                return headers
            return await device_headers(platform, province=province, site=site or f"{province}-bench", roles=roles)
        finally:
            await platform.stop()

    async def count(self, table: str) -> int:
        """Rows in ``table``, to show that the benchmarked requests really wrote."""
        connection = await asyncpg.connect(self.url)
        try:
            value: Any = await connection.fetchval(f'SELECT count(*) FROM "{table}"')
            return int(value)
        finally:
            await connection.close()

    async def backend_cpu_seconds(self) -> dict[int, float]:
        """CPU used so far by the PostgreSQL backends serving this database (empty when the server is remote)."""
        connection = await asyncpg.connect(f"{self.server}/postgres")
        try:
            rows = await connection.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.name)
        finally:
            await connection.close()
        return process_cpu(row["pid"] for row in rows)

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(f"{self.server}/postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()
