"""Fixtures for the checkin plugin: a started platform with an HTTPS base URL, and a kit of steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from core.platform import Platform
from core.testing import citizen_headers, device_headers, http_client, staff_headers
from plugins.checkin.declarations import NATIONAL_VERSION

BASE_URL = "https://phongdich.test"


class Kit:
    """Steps that tests compose: staff and citizens, venues, check-ins, all through the HTTP API."""

    def __init__(self, platform: Platform, client: httpx.AsyncClient) -> None:
        self.platform = platform
        self.client = client
        self._phones = 0

    async def operator(self, province: str = "01", site: str = "site-1") -> dict[str, str]:
        return await staff_headers(self.platform, ["venue_operator"], province=province, site=site)

    async def epidemiologist(self, province: str = "01") -> dict[str, str]:
        return await staff_headers(self.platform, ["epidemiologist"], province=province)

    async def admin(self) -> dict[str, str]:
        return await staff_headers(self.platform, ["national_admin"])

    async def device(self, province: str = "01", site: str = "site-1") -> dict[str, str]:
        return await device_headers(self.platform, province=province, site=site)

    async def citizen(self, phone: str | None = None) -> tuple[dict[str, str], str]:
        if phone is None:
            self._phones += 1
            phone = f"09{self._phones:08d}"
        return await citizen_headers(self.platform, phone)

    async def venue(self, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
        body = {
            "name": "Quán Phở Thìn",
            "address": "13 Lò Đúc, Hai Bà Trưng, Hà Nội",
            "province": "01",
            "district": "007",
            "ward": "00226",
            "venue_type": "restaurant",
            "capacity": 40,
            "contact_phone": "0243 821 2709",
            "default_stay_minutes": 60,
        }
        body.update(fields)
        response = await self.client.post("/api/checkin/venues/", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()

    @staticmethod
    def code_of(venue: dict[str, Any], sub_location: str | None = None) -> str:
        for code in venue["codes"]:
            if code["sub_location_name"] == sub_location:
                return code["token"]
        raise AssertionError(f"no code for {sub_location!r}")

    @staticmethod
    def declaration(version: str = NATIONAL_VERSION, **answers: Any) -> dict[str, Any]:
        given = {"symptoms": ["none"], "contact_case": False, "travel": False}
        given.update(answers)
        return {"questionnaire_version": version, "answers": given}

    async def check_in(
        self,
        headers: dict[str, str],
        code: str,
        *,
        minutes_ago: float = 0,
        stay: int | None = None,
        name: str = "Nguyễn Văn An",
        declaration: dict[str, Any] | None = None,
        key: str | None = None,
        since: datetime | None = None,
    ) -> httpx.Response:
        """Check in ``minutes_ago`` before ``since`` (default: now)."""
        body: dict[str, Any] = {
            "code": code,
            "full_name": name,
            "declaration": declaration or self.declaration(),
            "arrived_at": ((since or datetime.now(UTC)) - timedelta(minutes=minutes_ago)).isoformat(),
        }
        if stay is not None:
            body["stay_minutes"] = stay
        extra = {"Idempotency-Key": key} if key else {}
        return await self.client.post("/api/checkin/visits", json=body, headers={**headers, **extra})

    async def visit_count(self) -> int:
        rows = await self.platform.db.execute("SELECT count(*) AS n FROM checkin_visit")
        return int(rows[0]["n"])

    async def declaration_count(self) -> int:
        rows = await self.platform.db.execute("SELECT count(*) AS n FROM checkin_declaration")
        return int(rows[0]["n"])


@pytest.fixture
async def kit(make_platform: Any) -> AsyncIterator[Kit]:
    platform = await make_platform(base_url=BASE_URL)
    async with http_client(platform) as client:
        yield Kit(platform, client)
