"""Building blocks for vaccination tests: staff and citizens, and a registry made through the API."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from core.platform import Platform
from core.testing import citizen_headers, staff_headers
from plugins.vaccination import localtime

PROVINCE = "01"
SITE = "site-hn-1"
PRODUCT = "COMIRNATY"
LOT = "FD1234"
NO_SCREENING = {
    "anaphylaxis_previous_dose": False,
    "allergy_to_component": False,
    "acute_illness": False,
    "covid_last_6_months": False,
    "pregnant": False,
    "immunocompromised_or_anticoagulated": False,
}
_phones = itertools.count(10_000_000)
_ids = itertools.count(100_000_000_000)


def next_phone() -> str:
    return f"09{next(_phones) % 100_000_000:08d}"


def next_id_number() -> str:
    return f"{next(_ids):012d}"


def product_body(code: str = PRODUCT, **rule: Any) -> dict[str, Any]:
    return {
        "code": code,
        "name": f"{code} vaccine",
        "manufacturer": "Maker",
        "dcc_vp": "1119349007",
        "dcc_mp": "EU/1/20/1528",
        "dcc_ma": "ORG-100030215",
        "rule": {
            "effective_from": "2021-01-01",
            "primary_doses": 2,
            "min_interval_days": 21,
            "max_interval_days": 42,
            "min_age_years": 12,
            "booster_doses": 1,
            "booster_min_interval_days": 90,
            **rule,
        },
    }


@dataclass
class World:
    platform: Platform
    api: httpx.AsyncClient
    admin: dict[str, str]
    province_admin: dict[str, str]
    vaccinator: dict[str, str]
    session_id: str
    extra: dict[str, Any] = field(default_factory=dict)

    async def citizen(self, phone: str | None = None) -> tuple[dict[str, str], str]:
        return await citizen_headers(self.platform, phone or next_phone())

    async def register(self, headers: dict[str, str], *, expect: int | None = None, **fields: Any) -> dict[str, Any]:
        body = {
            "full_name": "Nguyễn Văn An",
            "birth_date": "1980-05-17",
            "sex": "male",
            "id_number": next_id_number(),
            "province": PROVINCE,
            "priority_group": "health_workers",
            **fields,
        }
        response = await self.api.post("/api/vaccination/people", json=body, headers=headers)
        if expect is not None:
            assert response.status_code == expect, response.text
        else:
            assert response.status_code in (200, 201), response.text
        return response.json()  # type: ignore[no-any-return]

    async def session(self, *, day: date | None = None, capacity: int = 50, product: str = PRODUCT) -> str:
        response = await self.api.post(
            f"/api/vaccination/sites/{SITE}/sessions",
            json={
                "day": (day or localtime.today()).isoformat(),
                "starts_at": "08:00",
                "ends_at": "11:30",
                "product_code": product,
                "capacity": capacity,
            },
            headers=self.province_admin,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]  # type: ignore[no-any-return]

    async def book(
        self, headers: dict[str, str], person_id: str, session_id: str | None = None, **extra: Any
    ) -> httpx.Response:
        return await self.api.post(
            "/api/vaccination/bookings",
            json={
                "person_id": person_id,
                "session_id": session_id or self.session_id,
                "screening": NO_SCREENING,
                **extra,
            },
            headers=headers,
        )

    async def dose(self, *, expect: int = 201, **body: Any) -> dict[str, Any]:
        response = await self.api.post(
            "/api/vaccination/doses",
            json={"lot_number": LOT, "screening": NO_SCREENING, **body},
            headers=self.vaccinator,
        )
        assert response.status_code == expect, response.text
        return response.json()  # type: ignore[no-any-return]

    async def vaccinated_person(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        """A citizen, their registered self, and the dose recorded through a booking today."""
        headers, _subject = await self.citizen()
        person = (await self.register(headers))["person"]
        booked = await self.book(headers, person["id"])
        assert booked.status_code == 201, booked.text
        recorded = await self.dose(booking_code=booked.json()["booking"]["code"])
        return headers, person, recorded


async def build_world(platform: Platform, api: httpx.AsyncClient) -> World:
    admin = await staff_headers(platform, ["national_admin"])
    province_admin = await staff_headers(platform, ["province_admin"], province=PROVINCE)
    vaccinator = await staff_headers(platform, ["vaccinator"], province=PROVINCE, site=SITE)
    steps = [
        ("/api/vaccination/products", product_body(), admin),
        ("/api/vaccination/sites", {"id": SITE, "name": "Trạm Y tế Dịch Vọng", "province": PROVINCE}, province_admin),
        (
            "/api/vaccination/lots",
            {
                "number": LOT,
                "product_code": PRODUCT,
                "expires_on": (localtime.today() + timedelta(days=90)).isoformat(),
                "doses_per_vial": 6,
            },
            admin,
        ),
        (
            f"/api/vaccination/sites/{SITE}/stock",
            {"product_code": PRODUCT, "lot_number": LOT, "doses": 100},
            province_admin,
        ),
    ]
    for path, body, headers in steps:
        response = await api.post(path, json=body, headers=headers)
        assert response.status_code == 201, f"{path}: {response.text}"
    opened = await api.put(
        "/api/vaccination/priority-groups/open",
        json={"groups": ["health_workers", "elderly", "general"]},
        headers=admin,
    )
    assert opened.status_code == 200, opened.text
    world = World(
        platform=platform,
        api=api,
        admin=admin,
        province_admin=province_admin,
        vaccinator=vaccinator,
        session_id="",
    )
    world.session_id = await world.session()
    return world
