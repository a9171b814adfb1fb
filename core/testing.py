"""A testing kit for phongdich and plugin authors: fresh databases, platforms and clients.

Used by the project's own ``tests/conftest.py`` and importable by plugins'
test suites (``from core.testing import ...``). The database comes from
``PHONGDICH_TEST_DATABASE``: ``sqlite`` (default, a file per test) or a
PostgreSQL server URL such as ``postgresql://postgres@127.0.0.1:5432``, on
which each test gets its own database, copied from a migrated template and
dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from core.admin_units import ensure_units
from core.platform import Platform
from core.settings import Settings, load_settings

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"  # noqa: S105 (tests only)
TEST_PASSWORD = "correct horse battery staple"  # noqa: S105 (tests only)


class TestDatabases:
    """Creates a migrated template once, then one fresh copy per test."""

    __test__ = False  # not a pytest test class

    def __init__(self, target: str | None = None) -> None:
        self.target = target or os.environ.get("PHONGDICH_TEST_DATABASE", "sqlite")
        self.kind = "sqlite" if self.target == "sqlite" else "postgres"
        self._tmp = Path(tempfile.mkdtemp(prefix="phongdich-test-"))
        self._prefix = f"phongdich_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._templates: dict[tuple[str, ...], str] = {}
        self._created: list[str] = []

    def settings(self, url: str, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "secret_key": TEST_SECRET,
            "run_background_tasks": False,
            "log_format": "json",
            "log_level": "warning",
        }
        values.update(overrides)
        return load_settings(env={"PHONGDICH_DATABASE_URL": url}, **values)

    async def fresh_url(self, plugins: Iterable[str] = (), extra_plugins: Iterable[tuple[str, object]] = ()) -> str:
        """A new database for one test, migrated for the given plugins."""
        extra = list(extra_plugins)
        key = (*sorted(plugins), *sorted(name for name, _ in extra))
        template = self._templates.get(key)
        if template is None:
            template = await self._make_template(key, list(plugins), extra)
            self._templates[key] = template
        name = f"{self._prefix}_{uuid.uuid4().hex[:10]}"
        if self.kind == "sqlite":
            path = self._tmp / f"{name}.sqlite3"
            shutil.copyfile(template, path)
            return f"sqlite:///{path}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self._created.append(name)
        return f"{self.target.rstrip('/')}/{name}"

    async def drop(self, url: str) -> None:
        if self.kind == "sqlite":
            Path(url.split("://", 1)[1][1:]).unlink(missing_ok=True)
            return
        name = url.rsplit("/", 1)[1]
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._created:
            self._created.remove(name)

    async def close(self) -> None:
        if self.kind == "postgres":
            for name in [*self._created, *self._templates.values()]:
                await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self._tmp, ignore_errors=True)

    async def _make_template(self, key: tuple[str, ...], plugins: list[str], extra: list[tuple[str, object]]) -> str:
        index = len(self._templates)
        if self.kind == "sqlite":
            url = f"sqlite:///{self._tmp / f'template_{index}.sqlite3'}"
        else:
            name = f"{self._prefix}_tmpl_{index}"
            await self._admin(f'CREATE DATABASE "{name}"')
            url = f"{self.target.rstrip('/')}/{name}"
        platform = Platform(self.settings(url, plugins=plugins), extra_plugins=extra)
        await platform.db.start()
        try:
            await platform.db.migrate()
            await ensure_units()
            # Start once so the copies inherit what start-up prepares (e.g. partitions).
            await platform.start()
        finally:
            await platform.stop()
        return url.split("://", 1)[1][1:] if self.kind == "sqlite" else url.rsplit("/", 1)[1]

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(f"{self.target.rstrip('/')}/postgres")
        try:
            await connection.execute(sql)
        finally:
            await connection.close()


async def started_platform(
    databases: TestDatabases,
    *,
    plugins: Iterable[str] = (),
    extra_plugins: Iterable[tuple[str, object]] = (),
    **settings: Any,
) -> Platform:
    """A started platform on a fresh, migrated database."""
    plugins = list(plugins)
    extra = list(extra_plugins)
    url = await databases.fresh_url(plugins, extra)
    platform = Platform(databases.settings(url, plugins=plugins, **settings), extra_plugins=extra)
    await platform.start()
    return platform


async def staff_headers(
    platform: Platform,
    roles: list[str],
    *,
    province: str | None = None,
    site: str | None = None,
    lab: str | None = None,
) -> dict[str, str]:
    """Create a staff account with ``roles`` and return headers carrying its bearer token."""
    username = f"u{uuid.uuid4().hex[:12]}"
    await platform.identity.create_staff(
        username=username,
        password=TEST_PASSWORD,
        display_name=username,
        roles=roles,
        province=province,
        site=site,
        lab=lab,
    )
    row_id = await _account_id(username)
    token = await platform.identity.issue_token("staff", row_id, _ttl())
    return {"Authorization": f"Bearer {token.token}"}


async def citizen_headers(platform: Platform, phone: str = "0912345678") -> tuple[dict[str, str], str]:
    """Sign a citizen in (without SMS) and return (headers, subject id)."""
    from core.identity import normalize_phone

    citizen_id = await platform.identity.citizen_for(normalize_phone(phone))
    token = await platform.identity.issue_token("citizen", citizen_id, _ttl())
    return {"Authorization": f"Bearer {token.token}"}, str(citizen_id)


async def device_headers(
    platform: Platform, *, province: str, site: str, roles: list[str] | None = None
) -> dict[str, str]:
    issued = await platform.identity.create_api_key(
        name="test device", roles=roles or ["device"], created_by="test", province=province, site=site
    )
    return {"X-API-Key": issued.key}


async def _account_id(username: str) -> Any:
    from core.tables import StaffAccount

    row = await StaffAccount.select(StaffAccount.id).where(StaffAccount.username == username).first()
    assert row is not None
    return row["id"]


def _ttl() -> Any:
    from datetime import timedelta

    return timedelta(hours=1)


def http_client(platform: Platform, **app_kwargs: Any) -> httpx.AsyncClient:
    """An in-process HTTP client for the app of an already started ``platform``.

    Requests run in the caller's event loop (unlike Litestar's test clients,
    which use a second thread), so the platform's connection pool is shared.
    Use it as ``async with http_client(platform) as client:``.
    """
    from core.app import create_app

    app = create_app(platform=platform, **app_kwargs)
    transport = httpx.ASGITransport(
        app=app,  # type: ignore[arg-type]
        client=("203.0.113.7", 50000),
    )
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def run(coro: Any) -> Any:
    return asyncio.run(coro)
