"""Shared fixtures: a fresh database per test (SQLite or PostgreSQL), platforms and clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from core.platform import Platform
from core.testing import TestDatabases, http_client, started_platform


@pytest.fixture(scope="session")
def databases() -> Iterator[TestDatabases]:
    dbs = TestDatabases()
    yield dbs
    asyncio.run(dbs.close())


@pytest.fixture
async def make_platform(databases: TestDatabases) -> AsyncIterator[Any]:
    """Factory: ``await make_platform(plugins=[...], extra_plugins=[(name, obj)], **settings)``."""
    made: list[Platform] = []

    async def factory(**kwargs: Any) -> Platform:
        platform = await started_platform(databases, **kwargs)
        made.append(platform)
        return platform

    yield factory
    for platform in made:
        await platform.stop()
        await databases.drop(platform.settings.database_url)


@pytest.fixture
async def platform(make_platform: Any) -> Platform:
    return await make_platform()  # type: ignore[no-any-return]


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(platform) as test_client:
        yield test_client
