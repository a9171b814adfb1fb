"""The city's risk-zone map: who may grade areas, what bad input gets, and how the levels weigh tracing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.settings import SettingsError
from core.testing import TestDatabases, started_platform
from tests.provinces.conftest import HANOI, HCMC, PROVINCE_PLUGINS, Steps


async def test_city_staff_grade_areas_and_the_map_is_public(steps: Steps, phongdich_app):
    epidemiologist = await phongdich_app.actor("epidemiologist", province=HCMC)
    graded = await steps.client.put(
        "/api/hcmc/zones/760", json={"level": "red", "note": "Quyết định 2686/QĐ-UBND"}, headers=epidemiologist.headers
    )
    assert graded.status_code == 200, graded.text
    assert graded.json() | {"set_at": None} == {
        "area": "760",
        "kind": "district",
        "level": "red",
        "weight": 3.0,
        "note": "Quyết định 2686/QĐ-UBND",
        "set_at": None,
    }
    regraded = await steps.client.put("/api/hcmc/zones/26734", json={"level": "green"}, headers=epidemiologist.headers)
    assert regraded.status_code == 200
    downgraded = await steps.client.put("/api/hcmc/zones/760", json={"level": "orange"}, headers=epidemiologist.headers)
    assert downgraded.json()["weight"] == 2.0

    published = await steps.client.get("/api/hcmc/zones")
    assert published.status_code == 200
    assert [(z["area"], z["kind"], z["level"], z["note"]) for z in published.json()] == [
        ("26734", "ward", "green", ""),
        ("760", "district", "orange", ""),
    ]


async def test_only_the_citys_own_staff_may_grade_and_bad_input_is_named(steps: Steps, phongdich_app):
    hanoi_epi = await phongdich_app.actor("epidemiologist", province=HANOI)
    refused = await steps.client.put("/api/hcmc/zones/760", json={"level": "red"}, headers=hanoi_epi.headers)
    assert refused.status_code == 403
    assert "cannot act in province 79" in refused.json()["detail"]
    citizen = await phongdich_app.actor("citizen")
    assert (
        await steps.client.put("/api/hcmc/zones/760", json={"level": "red"}, headers=citizen.headers)
    ).status_code == 403
    assert (await steps.client.put("/api/hcmc/zones/760", json={"level": "red"})).status_code == 401

    admin = await phongdich_app.actor("province_admin", province=HCMC)
    for area, body, field in (
        ("760", {"level": "purple"}, "level"),
        ("760", {"level": "red", "colour": "red"}, "colour"),
        ("760", {"level": "red", "note": "x" * 201}, "note"),
        ("7600", {"level": "red"}, "area"),
        ("abc", {"level": "red"}, "area"),
        ("001", {"level": "red"}, "area"),  # Ba Đình is Hà Nội's
    ):
        answer = await steps.client.put(f"/api/hcmc/zones/{area}", json=body, headers=admin.headers)
        assert answer.status_code == 400, (area, body, answer.text)
        assert field in answer.text, (area, body, answer.text)
    assert (await steps.client.get("/api/hcmc/zones")).json() == []


@pytest.mark.parametrize("weights", [{}, {"weight_yellow": 1.25, "weight_red": 5.0}])
async def test_zone_levels_weigh_the_risk_of_contacts(phongdich_app_factory, weights):
    app = await phongdich_app_factory(plugins=PROVINCE_PLUGINS, plugin={"hcmc": weights})
    steps = Steps(app)
    epidemiologist = await app.actor("epidemiologist", province=HCMC)
    for area, level in (("760", "red"), ("26734", "yellow")):
        response = await steps.client.put(
            f"/api/hcmc/zones/{area}", json={"level": level}, headers=epidemiologist.headers
        )
        assert response.status_code == 200, response.text

    # Three cafés: a yellow ward of a red district, another ward of that district, an ungraded district.
    yellow_ward = await steps.venue(HCMC, district="760", ward="26734", name="Cà phê Tân Định")
    red_district = await steps.venue(HCMC, district="760", ward="26737", name="Cà phê Đa Kao")
    ungraded = await steps.venue(HCMC, district="770", ward="27127", name="Cà phê Quận 3")
    now = datetime.now(UTC).replace(microsecond=0)
    case = await app.citizen()
    contacts = {}
    answers = {"hcm.f0_at_home": False}
    for venue, start in ((yellow_ward, 600), (red_district, 400), (ungraded, 200)):
        # The case stays an hour; a contact arrives ten minutes later and stays forty minutes.
        visit = await steps.check_in(case, venue, answers=answers, minutes_ago=start, stay=60, since=now)
        assert visit.status_code == 201, visit.text
        contact = await app.citizen()
        visit = await steps.check_in(contact, venue, answers=answers, minutes_ago=start - 10, stay=40, since=now)
        assert visit.status_code == 201, visit.text
        contacts[venue["id"]] = contact.subject_id

    opened = await steps.client.post(
        "/api/checkin/cases/",
        json={"province": HCMC, "subject_id": case.subject_id, "sampled_at": (now - timedelta(hours=1)).isoformat()},
        headers=epidemiologist.headers,
    )
    assert opened.status_code == 201, opened.text
    traced = await steps.client.get(
        f"/api/checkin/cases/{opened.json()['id']}/contacts", headers=epidemiologist.headers
    )
    risk = {row["subject_id"]: row["risk_score"] for row in traced.json()}
    minutes = {row["subject_id"]: row["overlap_minutes"] for row in traced.json()}
    assert len(set(minutes.values())) == 1, minutes  # the same overlap everywhere: only the zone differs

    yellow = weights.get("weight_yellow", 1.5)
    red = weights.get("weight_red", 3.0)
    base = risk[contacts[ungraded["id"]]]
    assert risk[contacts[yellow_ward["id"]]] == pytest.approx(base * yellow, rel=1e-3)
    assert risk[contacts[red_district["id"]]] == pytest.approx(base * red, rel=1e-3)


async def test_zone_weights_must_rise_with_the_level(databases: TestDatabases):
    with pytest.raises(SettingsError, match=r"plugin\.hcmc.*must not decrease"):
        await started_platform(databases, plugins=PROVINCE_PLUGINS, plugin={"hcmc": {"weight_red": 1.2}})
    with pytest.raises(SettingsError, match=r"plugin\.hcmc\.weight_red"):
        await started_platform(databases, plugins=PROVINCE_PLUGINS, plugin={"hcmc": {"weight_red": -1}})
