"""Fixtures for the vaccination plugin: a platform with signing keys, an HTTP client, and a
small registry (product, site, lot, stock, today's session, open groups) built through the API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core import dcc
from core.platform import Platform
from core.testing import http_client
from tests.plugins.vaccination.support import World, build_world


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    dcc.KeyStore(path).init(country="VN", organisation="Ministry of Health of Viet Nam")
    return path


@pytest.fixture
async def vax(make_platform: Any, keys_dir: Path) -> Platform:
    return await make_platform(plugin={"vaccination": {"keys_dir": str(keys_dir)}})  # type: ignore[no-any-return]


@pytest.fixture
async def api(vax: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(vax) as client:
        yield client


@pytest.fixture
async def world(vax: Platform, api: httpx.AsyncClient) -> World:
    return await build_world(vax, api)
