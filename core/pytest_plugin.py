"""pytest fixtures for plugin authors: an app with your plugins on a fresh database, a client, principals.

Opt in from your ``tests/conftest.py``::

    pytest_plugins = ["core.pytest_plugin"]


    @pytest.fixture
    def phongdich_plugins():
        return ["myplugin"]  # entry-point names, as in PHONGDICH_PLUGINS

and write tests against the ``phongdich_app`` fixture::

    async def test_notices(phongdich_app):
        officer = await phongdich_app.actor("epidemiologist", province="01")
        answer = await phongdich_app.client.get("/api/myplugin/notices", headers=officer.headers)
        assert answer.status_code == 200

Each test gets its own database, copied from a migrated template (SQLite by
default; PostgreSQL with ``PHONGDICH_TEST_DATABASE=postgresql://user@host:5432``),
and a started platform with the national plugins and the ones you name. The
fixtures are named ``phongdich_*`` so that they never clash with your own.
Async fixtures are pytest-asyncio fixtures, so they work in its strict mode
too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher

import core.identity
from core.identity import normalize_phone
from core.platform import Platform
from core.principal import CITIZEN, DEVICE, Principal
from core.testing import (
    TEST_PASSWORD,
    TestDatabases,
    citizen_headers,
    device_headers,
    http_client,
    staff_headers,
    started_platform,
)

__all__ = [
    "TEST_PASSWORD",
    "Actor",
    "PhongdichApp",
    "phongdich_app",
    "phongdich_app_factory",
    "phongdich_cheap_password_hashing",
    "phongdich_client",
    "phongdich_databases",
    "phongdich_plugins",
    "phongdich_settings",
]

_phones = itertools.count(1)


@dataclass(frozen=True)
class Actor:
    """A ready-made principal: the headers to send as them, and who the platform sees."""

    role: str
    headers: dict[str, str]
    principal: Principal
    # A citizen's mobile number, as the platform stores it (E.164).
    phone: str | None = None

    @property
    def subject_id(self) -> str | None:
        return self.principal.subject_id


@dataclass
class PhongdichApp:
    """A started platform, its HTTP client, and principals of any role, made on demand."""

    platform: Platform
    client: httpx.AsyncClient
    _actors: dict[tuple[str, str | None, str | None, str | None], Actor] = field(default_factory=dict)

    @property
    def roles(self) -> list[str]:
        """Every role the loaded plugins know, core roles included."""
        return sorted(self.platform.roles.roles)

    async def actor(
        self, role: str, *, province: str | None = "01", site: str | None = None, lab: str | None = None
    ) -> Actor:
        """A principal holding ``role``, scoped the way the role needs; the same one on every call.

        Staff roles get a staff account (province-, site- or lab-scoped as the
        role says; ``site`` and ``lab`` default to ``site-<province>-1`` and
        ``lab-<province>-1``), ``citizen`` a signed-in citizen, ``device`` an
        API key of a venue scanner.
        """
        definition = self.platform.roles.get(role)
        if definition is None:
            raise LookupError(f"unknown role {role!r}; known: {', '.join(self.roles)}")
        scope = definition.scope
        province = None if scope in ("national", "self") else province
        if scope in ("province", "site", "lab") and province is None:
            raise ValueError(f"role {role!r} is scoped by {scope}: give a province")
        site = (site or f"site-{province}-1") if scope == "site" else None
        lab = (lab or f"lab-{province}-1") if scope == "lab" else None
        key = (role, province, site, lab)
        known = self._actors.get(key)
        if known is None:
            known = await self._make(role, province, site, lab)
            self._actors[key] = known
        return known

    async def actors(self, province: str = "01") -> dict[str, Actor]:
        """One principal of every role, those with a scope in ``province``."""
        return {role: await self.actor(role, province=province) for role in self.roles}

    async def staff(
        self, roles: Iterable[str], *, province: str | None = None, site: str | None = None, lab: str | None = None
    ) -> Actor:
        """A new staff account holding several roles at once."""
        roles = list(roles)
        headers = await staff_headers(self.platform, roles, province=province, site=site, lab=lab)
        return Actor(role="+".join(roles), headers=headers, principal=await self._principal(headers))

    async def citizen(self, phone: str | None = None) -> Actor:
        """A new signed-in citizen (a fresh phone number unless given)."""
        phone = normalize_phone(phone or f"09{next(_phones) % 100_000_000:08d}")
        headers, _subject = await citizen_headers(self.platform, phone)
        return Actor(role=CITIZEN, headers=headers, principal=await self._principal(headers), phone=phone)

    async def _make(self, role: str, province: str | None, site: str | None, lab: str | None) -> Actor:
        if role == CITIZEN:
            return await self.citizen()
        if role == DEVICE:
            assert province is not None and site is not None
            headers = await device_headers(self.platform, province=province, site=site)
            return Actor(role=role, headers=headers, principal=await self._principal(headers))
        return await self.staff([role], province=province, site=site, lab=lab)

    async def _principal(self, headers: dict[str, str]) -> Principal:
        identity = self.platform.identity
        if "X-API-Key" in headers:
            principal = await identity.principal_from_api_key(headers["X-API-Key"])
        else:
            principal = await identity.principal_from_token(headers["Authorization"].removeprefix("Bearer "))
        assert principal is not None, "a credential the kit just issued was not recognised"
        return principal


@pytest.fixture(scope="session")
def phongdich_databases() -> Iterator[TestDatabases]:
    """Migrated templates, one per set of plugins, copied into a fresh database for every test."""
    databases = TestDatabases()
    yield databases
    asyncio.run(databases.close())


@pytest.fixture
def phongdich_plugins() -> list[str]:
    """Override: the plugins to load besides the national ones (entry-point names)."""
    return []


@pytest.fixture
def phongdich_settings() -> dict[str, Any]:
    """Override: settings for the app, e.g. ``{"plugin": {"myplugin": {"page_size": 10}}}``."""
    return {}


@pytest.fixture(autouse=True)
def phongdich_cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, at the smallest cost: tests create many staff accounts."""
    monkeypatch.setattr(core.identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest_asyncio.fixture
async def phongdich_app_factory(
    phongdich_databases: TestDatabases,
) -> AsyncIterator[Callable[..., Awaitable[PhongdichApp]]]:
    """Factory: ``await phongdich_app_factory(plugins=[...], extra_plugins=[(name, obj)], **settings)``.

    Every app gets its own fresh database, unless ``worker_of=app``: then it is
    another worker of that app's deployment (same settings, same database), as
    when several processes serve one platform. All are stopped, and their
    databases dropped, after the test.
    """
    async with AsyncExitStack() as cleanup:

        async def factory(
            *,
            plugins: Iterable[str] = (),
            extra_plugins: Iterable[tuple[str, object]] = (),
            worker_of: PhongdichApp | None = None,
            **settings: Any,
        ) -> PhongdichApp:
            if worker_of is None:
                platform = await started_platform(
                    phongdich_databases, plugins=plugins, extra_plugins=extra_plugins, **settings
                )
                cleanup.push_async_callback(phongdich_databases.drop, platform.settings.database_url)
            else:
                platform = Platform(worker_of.platform.settings, extra_plugins=extra_plugins)
                await platform.start()
                # Piccolo's tables follow the database started last; both workers share it, keep the first's pool.
                worker_of.platform.db.activate()
            cleanup.push_async_callback(platform.stop)
            client = await cleanup.enter_async_context(http_client(platform))
            return PhongdichApp(platform=platform, client=client)

        yield factory


@pytest_asyncio.fixture
async def phongdich_app(
    phongdich_app_factory: Callable[..., Awaitable[PhongdichApp]],
    phongdich_plugins: list[str],
    phongdich_settings: dict[str, Any],
) -> PhongdichApp:
    """The app with ``phongdich_plugins`` loaded and ``phongdich_settings`` applied."""
    return await phongdich_app_factory(plugins=phongdich_plugins, **phongdich_settings)


@pytest.fixture
def phongdich_client(phongdich_app: PhongdichApp) -> httpx.AsyncClient:
    """The in-process HTTP client of ``phongdich_app``."""
    return phongdich_app.client
