"""Fixtures for the testing plugin: sites and labs in two provinces, staff of each role, helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from core.platform import Platform
from core.tables import MessageOutbox
from core.testing import citizen_headers, http_client, staff_headers

HN, DN = "01", "48"
SITE, SITE_B, SITE_DN = "clinic-hn-1", "clinic-hn-2", "clinic-dn-1"
LAB, LAB_B, LAB_DN = "lab-hn-1", "lab-hn-2", "lab-dn-1"
PERSON = {
    "full_name": "Nguyễn Văn An",
    "date_of_birth": "1990-04-12",
    "phone": "0912345678",
    "id_number": "001090012345",
}


@dataclass
class World:
    """A started platform with an HTTP client, places and staff headers."""

    platform: Platform
    client: httpx.AsyncClient
    admin: dict[str, str]
    collector: dict[str, str]
    collector_b: dict[str, str]
    collector_dn: dict[str, str]
    lab: dict[str, str]
    lab_b: dict[str, str]
    lab_dn: dict[str, str]
    epi: dict[str, str]
    epi_dn: dict[str, str]
    seq: list[int] = field(default_factory=lambda: [0])

    async def register(self, headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        """Register a walk-in sample (a fresh person unless ``person`` is given); returns the receipt."""
        if "person" not in body and "registration_code" not in body:
            self.seq[0] += 1
            n = self.seq[0]
            body["person"] = {
                "full_name": f"Trần Thị Bình {n}",
                "date_of_birth": "1985-01-20",
                "phone": f"09{n:08d}",
            }
        response = await self.client.post("/api/testing/samples", json=body, headers=headers or self.collector)
        assert response.status_code == 201, response.text
        return response.json()

    async def pool(self, labels: list[str], headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api/testing/pools", json={"samples": labels, **body}, headers=headers or self.collector
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def receive(self, labels: list[str], headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post("/api/testing/lab/receipts", json={"labels": labels}, headers=headers or self.lab)

    async def result(
        self, label: str, outcome: str, headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        return await self.client.post(
            "/api/testing/lab/results",
            json={"label": label, "outcome": outcome, **body},
            headers=headers or self.lab,
        )

    async def citizen(self, phone: str) -> tuple[dict[str, str], str]:
        return await citizen_headers(self.platform, phone)

    async def messages(self, recipient: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        query = MessageOutbox.select().order_by(MessageOutbox.created_at)
        if recipient is not None:
            query = query.where(MessageOutbox.recipient == recipient)
        if kind is not None:
            query = query.where(MessageOutbox.kind == kind)
        return list(await query)


async def build_world(platform: Platform, client: httpx.AsyncClient) -> World:
    admin = await staff_headers(platform, ["national_admin"])
    for code, province in ((SITE, HN), (SITE_B, HN), (SITE_DN, DN)):
        response = await client.post(
            "/api/testing/sites",
            json={"code": code, "name": f"Điểm lấy mẫu {code}", "province": province},
            headers=admin,
        )
        assert response.status_code == 201, response.text
    for code, province in ((LAB, HN), (LAB_B, HN), (LAB_DN, DN)):
        response = await client.post(
            "/api/testing/labs",
            json={"code": code, "name": f"Phòng xét nghiệm {code}", "province": province},
            headers=admin,
        )
        assert response.status_code == 201, response.text
    return World(
        platform=platform,
        client=client,
        admin=admin,
        collector=await staff_headers(platform, ["sample_collector"], province=HN, site=SITE),
        collector_b=await staff_headers(platform, ["sample_collector"], province=HN, site=SITE_B),
        collector_dn=await staff_headers(platform, ["sample_collector"], province=DN, site=SITE_DN),
        lab=await staff_headers(platform, ["lab_technician"], province=HN, lab=LAB),
        lab_b=await staff_headers(platform, ["lab_technician"], province=HN, lab=LAB_B),
        lab_dn=await staff_headers(platform, ["lab_technician"], province=DN, lab=LAB_DN),
        epi=await staff_headers(platform, ["epidemiologist"], province=HN),
        epi_dn=await staff_headers(platform, ["epidemiologist"], province=DN),
    )


_hashed: dict[str, str] = {}


@pytest.fixture(autouse=True)
def hash_each_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Staff accounts here share one password: hash it once (argon2 is slow on purpose)."""
    import core.identity

    original = core.identity.hash_password

    def memoised(password: str) -> str:
        if password not in _hashed:
            _hashed[password] = original(password)
        return _hashed[password]

    monkeypatch.setattr(core.identity, "hash_password", memoised)


@pytest.fixture
async def world(platform: Platform) -> AsyncIterator[World]:
    async with http_client(platform) as client:
        yield await build_world(platform, client)


@pytest.fixture
async def make_world(make_platform: Any) -> AsyncIterator[Any]:
    """Factory for a world on a platform with its own settings or extra plugins."""
    clients: list[httpx.AsyncClient] = []

    async def factory(**kwargs: Any) -> World:
        platform = await make_platform(**kwargs)
        client = http_client(platform)
        clients.append(client)
        return await build_world(platform, client)

    yield factory
    for client in clients:
        await client.aclose()
