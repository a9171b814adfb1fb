"""``phongdich demo`` for check-in: venues for the demo operators, check-ins to follow up and trace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from plugins.checkin import demo


async def test_demo_loads_once_and_is_usable_by_the_demo_staff(kit):
    await demo.load_demo_data(kit.platform)
    await demo.load_demo_data(kit.platform)  # a second run adds nothing
    provinces = len(demo.DEMO_PROVINCES)
    assert await kit.visit_count() == provinces * len(demo.VISITORS) * 2
    assert await kit.declaration_count() == provinces * len(demo.VISITORS) * 2

    # The Hanoi demo operator sees (only) the Hanoi venues, each with a code per place.
    operator = await kit.operator(province="01", site="venue-hn-1")
    venues = (await kit.client.get("/api/checkin/venues/", headers=operator)).json()
    assert sorted(v["name"] for v in venues) == sorted(f"{name} HN" for name, *_ in demo.VENUES)
    cafe = next(v for v in venues if v["name"].startswith("Quán cà phê"))
    cafe = (await kit.client.get(f"/api/checkin/venues/{cafe['id']}", headers=operator)).json()
    assert len(cafe["codes"]) == 3  # the venue and its two floors

    # The first visitor coughed: the Hanoi epidemiologist has two flagged declarations to follow up.
    epidemiologist = await kit.epidemiologist("01")
    flags = (await kit.client.get("/api/checkin/flags", headers=epidemiologist)).json()
    assert [f["full_name"] for f in flags] == [demo.VISITORS[0]] * 2

    # Tracing the last visitor: everyone else met them at the café or the market, but the first visitor
    # had left the café before they came and met them at the market for 10 minutes only (less than the
    # minimum overlap): an F2, through those who overlapped with both.
    case = await kit.client.post(
        "/api/checkin/cases/",
        json={
            "province": "01",
            "phone": "0901000005",
            "sampled_at": (datetime.now(UTC) - timedelta(minutes=30)).isoformat(),
        },
        headers=epidemiologist,
    )
    assert case.status_code == 201, case.text
    assert (case.json()["f1_count"], case.json()["f2_count"]) == (4, 1)
    contacts = await kit.client.get(f"/api/checkin/cases/{case.json()['id']}/contacts", headers=epidemiologist)
    degrees = {c["full_name"]: c["degree"] for c in contacts.json()}
    assert degrees == {name: 2 if name == demo.VISITORS[0] else 1 for name in demo.VISITORS[:5]}
