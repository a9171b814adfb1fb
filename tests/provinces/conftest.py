"""Province plugins under test with the plugin author's kit (``core.pytest_plugin``), as an outside team would.

The kit's fixtures are imported here rather than named in ``pytest_plugins``
(which only the root conftest may do); its database templates are the
suite's own ``databases``.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from core import pytest_plugin as kit
from core.pytest_plugin import Actor, PhongdichApp
from core.testing import TestDatabases
from plugins.vaccination import localtime

PROVINCE_PLUGINS = ["hanoi", "hcmc"]
HANOI, HCMC, DANANG = "01", "79", "48"
NO_SCREENING = {
    "anaphylaxis_previous_dose": False,
    "allergy_to_component": False,
    "acute_illness": False,
    "covid_last_6_months": False,
    "pregnant": False,
    "immunocompromised_or_anticoagulated": False,
}
_ids = itertools.count(300_000_000_000)


# The kit's fixtures, as `pytest_plugins = ["core.pytest_plugin"]` would give them.
phongdich_app = kit.phongdich_app
phongdich_app_factory = kit.phongdich_app_factory
phongdich_cheap_password_hashing = kit.phongdich_cheap_password_hashing
phongdich_client = kit.phongdich_client
phongdich_settings = kit.phongdich_settings


@pytest.fixture(scope="session")
def phongdich_databases(databases: TestDatabases) -> TestDatabases:
    return databases


@pytest.fixture
def phongdich_plugins() -> list[str]:
    return list(PROVINCE_PLUGINS)


class Steps:
    """What the tests do through the HTTP API, in the words of the people who do it."""

    def __init__(self, app: PhongdichApp) -> None:
        self.app = app
        self.client: httpx.AsyncClient = app.client

    # -- checkin ----------------------------------------------------------------------------

    async def venue(self, province: str, *, district: str, ward: str, **fields: Any) -> dict[str, Any]:
        operator = await self.app.actor("venue_operator", province=province, site=f"venues-{province}")
        body = {
            "name": "Quán cà phê",
            "address": "1 Đường Số 1",
            "province": province,
            "district": district,
            "ward": ward,
            "venue_type": "cafe",
            "capacity": 40,
            "contact_phone": "0243 821 2709",
            "default_stay_minutes": 60,
            **fields,
        }
        response = await self.client.post("/api/checkin/venues/", json=body, headers=operator.headers)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def questionnaire(self, venue: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.get(f"/api/checkin/codes/{code_of(venue)}/questionnaire")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def check_in(
        self,
        who: Actor,
        venue: dict[str, Any],
        *,
        answers: dict[str, Any] | None = None,
        version: str | None = None,
        minutes_ago: int = 0,
        stay: int = 30,
        since: datetime | None = None,
    ) -> httpx.Response:
        """Check in with the national answers (nothing risky) plus ``answers``, on the venue's current form."""
        if version is None:
            version = (await self.questionnaire(venue))["version"]
        given: dict[str, Any] = {"symptoms": ["none"], "contact_case": False, "travel": False, **(answers or {})}
        arrived = (since or datetime.now(UTC)) - timedelta(minutes=minutes_ago)
        body = {
            "code": code_of(venue),
            "full_name": "Nguyễn Thị Lan",
            "declaration": {"questionnaire_version": version, "answers": given},
            "arrived_at": arrived.isoformat(),
            "stay_minutes": stay,
        }
        return await self.client.post("/api/checkin/visits", json=body, headers=who.headers)

    # -- vaccination ------------------------------------------------------------------------

    async def vaccination_site(self, province: str, site: str) -> str:
        """A site with stock and one session today; the product and lot are made once. Returns the session id."""
        admin = await self.app.actor("national_admin")
        province_admin = await self.app.actor("province_admin", province=province)
        if (await self.client.get("/api/vaccination/products")).json() == []:
            for path, body in (
                ("/api/vaccination/products", PRODUCT),
                (
                    "/api/vaccination/lots",
                    {
                        "number": "FD1234",
                        "product_code": "COMIRNATY",
                        "expires_on": (localtime.today() + timedelta(days=90)).isoformat(),
                        "doses_per_vial": 6,
                    },
                ),
            ):
                response = await self.client.post(path, json=body, headers=admin.headers)
                assert response.status_code == 201, response.text
        for path, body in (
            ("/api/vaccination/sites", {"id": site, "name": f"Trạm Y tế {site}", "province": province}),
            (
                f"/api/vaccination/sites/{site}/stock",
                {"product_code": "COMIRNATY", "lot_number": "FD1234", "doses": 100},
            ),
            (
                f"/api/vaccination/sites/{site}/sessions",
                {
                    "day": localtime.today().isoformat(),
                    "starts_at": "08:00",
                    "ends_at": "11:30",
                    "product_code": "COMIRNATY",
                    "capacity": 50,
                },
            ),
        ):
            response = await self.client.post(path, json=body, headers=province_admin.headers)
            assert response.status_code == 201, f"{path}: {response.text}"
        return response.json()["id"]  # type: ignore[no-any-return]

    async def open_groups(self, province: str, groups: list[str]) -> httpx.Response:
        province_admin = await self.app.actor("province_admin", province=province)
        return await self.client.put(
            "/api/vaccination/priority-groups/open",
            json={"province": province, "groups": groups},
            headers=province_admin.headers,
        )

    async def register(self, who: Actor, *, province: str, group: str) -> httpx.Response:
        body = {
            "full_name": "Trần Văn Bình",
            "birth_date": "1990-03-14",
            "sex": "male",
            "id_number": f"{next(_ids):012d}",
            "province": province,
            "priority_group": group,
        }
        return await self.client.post("/api/vaccination/people", json=body, headers=who.headers)

    async def book(self, who: Actor, person_id: str, session_id: str) -> httpx.Response:
        body = {"person_id": person_id, "session_id": session_id, "screening": NO_SCREENING}
        return await self.client.post("/api/vaccination/bookings", json=body, headers=who.headers)


PRODUCT = {
    "code": "COMIRNATY",
    "name": "Comirnaty",
    "manufacturer": "Pfizer-BioNTech",
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
    },
}


def code_of(venue: dict[str, Any]) -> str:
    return next(code["token"] for code in venue["codes"] if code["sub_location_name"] is None)  # type: ignore[no-any-return]


@pytest.fixture
def steps(phongdich_app: PhongdichApp) -> Steps:
    return Steps(phongdich_app)
