"""Fixtures for the core's tests: platforms with example plugins on fresh databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher

import core.identity
from core.platform import Platform
from core.settings import Settings
from core.testing import TestDatabases

# The hasher the platform ships with, kept so that a test can check its strength.
PRODUCTION_HASHER = core.identity._hasher


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Still argon2id, with the smallest cost: tests create many accounts on two shared cores."""
    monkeypatch.setattr(core.identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
async def start_platform(databases: TestDatabases) -> AsyncIterator[Callable[..., Awaitable[Platform]]]:
    """Factory: ``await start_platform(("name", plugin), ..., url=None, **settings)``.

    Every call builds a fresh plugin manager. Without ``url`` the platform gets a
    fresh database copied from the core template (example plugins own no
    tables, so one template serves them all); with ``url`` it joins an existing
    one, like a second worker or a restarted process.
    """
    made: list[Platform] = []

    async def factory(*extra: tuple[str, object], url: str | None = None, **settings: Any) -> Platform:
        url = url or await databases.fresh_url()
        platform = Platform(databases.settings(url, **settings), extra_plugins=extra)
        made.append(platform)
        await platform.start()
        return platform

    yield factory
    for platform in reversed(made):
        await platform.stop()
    for url in dict.fromkeys(p.settings.database_url for p in made):
        await databases.drop(url)


@pytest.fixture
def sync_database(databases: TestDatabases) -> Iterator[Callable[..., Settings]]:
    """For synchronous (CLI) tests: ``settings = sync_database(prepare=None, **settings)``.

    Makes a fresh migrated database, optionally runs ``await prepare(platform)``
    on a started platform, and returns settings that point at it.
    """
    urls: list[str] = []

    def factory(prepare: Callable[[Platform], Awaitable[Any]] | None = None, **overrides: Any) -> Settings:
        async def build() -> Settings:
            url = await databases.fresh_url()
            urls.append(url)
            settings = databases.settings(url, **overrides)
            if prepare is not None:
                platform = Platform(settings)
                await platform.start()
                try:
                    await prepare(platform)
                finally:
                    await platform.stop()
            return settings

        return asyncio.run(build())

    yield factory
    for url in urls:
        asyncio.run(databases.drop(url))
