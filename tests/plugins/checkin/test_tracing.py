"""Tracing: F1 by overlapping visits (tail, minimum overlap, sub-locations), F2, risk, zones,
notices, exports, province scoping and referrals, and cases opened from released test results."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from core import hookimpl
from core.tables import MessageOutbox
from core.testing import http_client
from plugins.checkin.venues import VenueType
from tests.plugins.checkin.conftest import BASE_URL, Kit

F0_NAME = "Phạm Minh Tâm"


class Town:
    """Venues and people of a tracing scenario, all made through the API."""

    def __init__(self, kit: Kit) -> None:
        self.kit = kit
        self.people: dict[str, tuple[dict[str, str], str]] = {}
        # Every "minutes ago" counts from one instant, so overlaps are exact whatever the test's speed.
        self.now = datetime.now(UTC).replace(microsecond=0)

    async def setup_venues(self) -> None:
        kit = self.kit
        self.restaurant = await kit.venue(
            await kit.operator(site="a"), name="Nhà hàng A", sub_locations=[{"name": "Bàn 1"}, {"name": "Bàn 2"}]
        )
        self.karaoke = await kit.venue(await kit.operator(site="b"), name="Karaoke B", venue_type="bar_karaoke")
        self.office = await kit.venue(await kit.operator(site="d"), name="Văn phòng D", venue_type="office")
        self.danang = await kit.venue(
            await kit.operator(province="48", site="c"), name="Cà phê C", province="48", ward="20194", venue_type="cafe"
        )

    async def person(self, who: str) -> tuple[dict[str, str], str]:
        if who not in self.people:
            self.people[who] = await self.kit.citizen()
        return self.people[who]

    async def visit(self, who: str, venue: dict[str, Any], start: int, end: int, sub: str | None = None) -> None:
        """``who`` was at ``venue`` from ``start`` to ``end`` minutes ago."""
        headers, _ = await self.person(who)
        name = F0_NAME if who == "f0" else f"Người {who}"
        response = await self.kit.check_in(
            headers, self.kit.code_of(venue, sub), minutes_ago=start, stay=start - end, name=name, since=self.now
        )
        assert response.status_code == 201, response.text

    def subject(self, who: str) -> str:
        return self.people[who][1]


async def scenario(kit: Kit) -> Town:
    town = Town(kit)
    await town.setup_venues()
    await town.visit("f0", town.restaurant, 600, 540)
    await town.visit("f0", town.karaoke, 300, 240)
    await town.visit("f0", town.danang, 1000, 900)
    await town.visit("p1", town.restaurant, 590, 550, sub="Bàn 1")  # 40 min together
    await town.visit("p2", town.restaurant, 545, 505)  # arrives as F0 leaves: 35 min with the tail
    await town.visit("p3", town.restaurant, 520, 480)  # 10 min of F0's tail: under the minimum, but 40 with p2
    await town.visit("p4", town.restaurant, 700, 640)  # gone before F0 came
    await town.visit("p5", town.karaoke, 290, 270)  # 20 min at a karaoke
    await town.visit("p11", town.danang, 990, 930)  # met in Da Nang: a referral
    await town.visit("p1", town.office, 210, 160)  # after p1's exposure...
    await town.visit("p6", town.office, 200, 150)  # ...so p6 is an F2 through p1
    await town.visit("p1", town.office, 900, 860)  # before p1's exposure...
    await town.visit("p7", town.office, 900, 860)  # ...so p7 is nobody
    await town.visit("p2", town.office, 205, 170)  # an F1 meeting an F1 stays an F1
    return town


async def open_case(kit: Kit, town: Town, headers: dict[str, str]) -> dict[str, Any]:
    sampled = datetime.now(UTC) - timedelta(hours=1)
    response = await kit.client.post(
        "/api/checkin/cases/",
        json={"province": "01", "subject_id": town.subject("f0"), "sampled_at": sampled.isoformat()},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_f1_and_f2_each_person_once_at_closest_degree(kit):
    town = await scenario(kit)
    epi = await kit.epidemiologist("01")
    case = await open_case(kit, town, epi)
    assert (case["f1_count"], case["f2_count"]) == (4, 2)
    contacts = (await kit.client.get(f"/api/checkin/cases/{case['id']}/contacts", headers=epi)).json()
    by_subject = {c["subject_id"]: c for c in contacts}
    degrees = {who: by_subject[town.subject(who)]["degree"] for who in ("p1", "p2", "p5", "p11", "p6", "p3")}
    assert degrees == {"p1": 1, "p2": 1, "p5": 1, "p11": 1, "p6": 2, "p3": 2}
    for nobody in ("p4", "p7", "f0"):
        assert town.subject(nobody) not in by_subject
    assert len(contacts) == 6

    p1 = by_subject[town.subject("p1")]
    assert (p1["venue_name"], p1["overlap_minutes"], p1["exposures"]) == ("Nhà hàng A", 40, 1)
    assert p1["risk_score"] == 0.8  # 40/60 h at a restaurant (weight 1.2)
    p2 = by_subject[town.subject("p2")]
    assert p2["overlap_minutes"] == 35
    p5 = by_subject[town.subject("p5")]
    assert (p5["venue_name"], p5["risk_score"]) == ("Karaoke B", 0.5333)  # 20/60 h at weight 1.6
    p6 = by_subject[town.subject("p6")]
    assert p6["venue_name"] == "Văn phòng D"
    assert p6["via_subject_id"] in (town.subject("p1"), town.subject("p2"))
    # With p1 (210→160 min ago) and with p2 (205→170): 50 min each, tail included; F2 risk is halved.
    assert (p6["overlap_minutes"], p6["exposures"], p6["risk_score"]) == (100, 2, 0.8334)
    p3 = by_subject[town.subject("p3")]
    assert (p3["via_subject_id"], p3["overlap_minutes"]) == (town.subject("p2"), 40)
    p11 = by_subject[town.subject("p11")]
    assert (p11["province"], p11["referral"]) == ("48", True)
    assert [c["degree"] for c in contacts] == [1, 1, 1, 1, 2, 2]
    assert [c["risk_score"] for c in contacts[:4]] == sorted([c["risk_score"] for c in contacts[:4]], reverse=True)


async def test_zones_are_the_places_and_hours_the_case_was(kit):
    town = await scenario(kit)
    epi = await kit.epidemiologist("01")
    case = await open_case(kit, town, epi)
    zones = sorted(case["zones"], key=lambda z: z["starts_at"])
    assert [z["venue_name"] for z in zones] == ["Cà phê C", "Nhà hàng A", "Karaoke B"]
    restaurant = zones[1]
    start = datetime.fromisoformat(restaurant["starts_at"])
    end = datetime.fromisoformat(restaurant["ends_at"])
    assert end - start == timedelta(minutes=60 + 30)  # the stay plus the tail
    assert restaurant["sub_location_id"] is None


async def test_sub_locations_narrow_the_contacts(kit):
    town = Town(kit)
    await town.setup_venues()
    await town.visit("f0", town.restaurant, 300, 240, sub="Bàn 2")
    await town.visit("same_table", town.restaurant, 290, 250, sub="Bàn 2")
    await town.visit("other_table", town.restaurant, 290, 250, sub="Bàn 1")
    await town.visit("whole_venue", town.restaurant, 290, 250)
    epi = await kit.epidemiologist("01")
    case = await open_case(kit, town, epi)
    contacts = (await kit.client.get(f"/api/checkin/cases/{case['id']}/contacts?degree=1", headers=epi)).json()
    assert {c["subject_id"] for c in contacts} == {town.subject("same_table"), town.subject("whole_venue")}
    table_2 = next(s["id"] for s in town.restaurant["sub_locations"] if s["name"] == "Bàn 2")
    assert [z["sub_location_id"] for z in case["zones"]] == [table_2]


async def test_min_overlap_and_tail_are_settings(make_platform):
    platform = await make_platform(
        base_url=BASE_URL, plugin={"checkin": {"tail_minutes": 0, "min_overlap_minutes": 5, "trace_f2": False}}
    )
    async with http_client(platform) as client:
        kit = Kit(platform, client)
        town = Town(kit)
        await town.setup_venues()
        await town.visit("f0", town.restaurant, 600, 540)
        await town.visit("tail_only", town.restaurant, 539, 500)  # came one minute after: no tail now
        await town.visit("brief", town.restaurant, 550, 544)  # six minutes together: over the minimum of 5
        epi = await kit.epidemiologist("01")
        case = await open_case(kit, town, epi)
        contacts = (await client.get(f"/api/checkin/cases/{case['id']}/contacts", headers=epi)).json()
        assert [c["subject_id"] for c in contacts] == [town.subject("brief")]
        assert contacts[0]["overlap_minutes"] == 6


class HanoiRules:
    """A Hanoi plugin: a local venue type, and contacts at restaurants count double."""

    PROVINCE = "01"

    @hookimpl
    def checkin_venue_types(self, province_code):
        return [VenueType(code="bia_hoi", label_vi="Quán bia hơi", label_en="Beer hall", risk_weight=1.8)]

    @hookimpl
    def checkin_risk_weight(self, venue, overlap_minutes, degree):
        return 2.0 if venue.venue_type == "restaurant" else None


async def test_province_rules_weigh_risk_only_in_their_province(make_platform):
    platform = await make_platform(base_url=BASE_URL, extra_plugins=[("hn_rules", HanoiRules())])
    async with http_client(platform) as client:
        kit = Kit(platform, client)
        town = Town(kit)
        await town.setup_venues()
        beer = await kit.venue(await kit.operator(site="e"), name="Bia hơi Hà Nội", venue_type="bia_hoi")
        refused = await client.post(
            "/api/checkin/venues/",
            json={
                "name": "Bia Đà Nẵng",
                "address": "1 Bạch Đằng",
                "province": "48",
                "district": "490",
                "ward": "20194",
                "venue_type": "bia_hoi",
                "capacity": 10,
                "contact_phone": "0912345678",
            },
            headers=await kit.operator(province="48", site="f"),
        )
        assert refused.status_code == 400
        assert "venue_type" in refused.json()["detail"]
        await town.visit("f0", town.restaurant, 600, 540)
        await town.visit("f0", beer, 400, 340)
        await town.visit("f0", town.danang, 300, 240)
        await town.visit("at_restaurant", town.restaurant, 600, 570)
        await town.visit("at_beer", beer, 400, 370)
        await town.visit("in_danang", town.danang, 300, 270)
        epi = await kit.epidemiologist("01")
        case = await open_case(kit, town, epi)
        contacts = (await client.get(f"/api/checkin/cases/{case['id']}/contacts", headers=epi)).json()
        risk = {c["subject_id"]: c["risk_score"] for c in contacts}
        assert risk[town.subject("at_restaurant")] == 1.2  # 0.5 h x 1.2 x 2 (Hanoi rule)
        assert risk[town.subject("at_beer")] == 0.9  # 0.5 h x 1.8 (Hanoi type)
        assert risk[town.subject("in_danang")] == 0.55  # 0.5 h x 1.1, no Hanoi rule in Da Nang


async def test_notices_reach_f1_without_naming_the_case(kit):
    town = await scenario(kit)
    epi = await kit.epidemiologist("01")
    case = await open_case(kit, town, epi)
    result = await kit.client.post(f"/api/checkin/cases/{case['id']}/notify", headers=epi)
    assert result.status_code == 200, result.text
    assert result.json() == {"notified": 4, "already_notified": 0, "unreachable": 0}
    messages = await MessageOutbox.select().where(MessageOutbox.kind == "checkin.exposure")
    assert len(messages) == 4
    f0_phone = (await kit.platform.db.execute("SELECT phone FROM checkin_visit WHERE full_name = {}", F0_NAME))[0]
    p1_phone = (
        await kit.platform.db.execute("SELECT phone FROM checkin_visit WHERE subject_id = {}", town.subject("p1"))
    )[0]["phone"]
    p1_message = next(m for m in messages if m["recipient"] == p1_phone)
    assert "Nhà hàng A" in p1_message["body_vi"] and "Nhà hàng A" in p1_message["body_en"]
    for message in messages:
        assert F0_NAME not in message["body_vi"] + message["body_en"]
        assert f0_phone["phone"] not in message["body_vi"] + message["body_en"]
        assert message["recipient"] != p1_phone or "/" in message["body_vi"]  # carries the date
    again = await kit.client.post(f"/api/checkin/cases/{case['id']}/notify", headers=epi)
    assert again.json() == {"notified": 0, "already_notified": 4, "unreachable": 0}
    # Tracing again keeps who was already told.
    retraced = await kit.client.post(f"/api/checkin/cases/{case['id']}/trace", headers=epi)
    assert retraced.status_code == 200
    assert (await kit.client.post(f"/api/checkin/cases/{case['id']}/notify", headers=epi)).json()["notified"] == 0


async def test_exports_are_spreadsheet_safe_and_audited(kit):
    town = await scenario(kit)
    epi = await kit.epidemiologist("01")
    case = await open_case(kit, town, epi)
    # A name that slipped in before names were checked must still not run as a formula.
    await kit.platform.db.execute(
        "UPDATE checkin_visit SET full_name = {} WHERE subject_id = {}", '=HYPERLINK("http://x")', town.subject("p5")
    )
    await kit.client.post(f"/api/checkin/cases/{case['id']}/trace", headers=epi)
    me = (await kit.client.get("/api/me", headers=epi)).json()["id"]

    exported = await kit.client.get(f"/api/checkin/cases/{case['id']}/export?format=csv", headers=epi)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    assert exported.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert len(rows) == 6
    assert {row["exported_by"] for row in rows} == {me}
    names = {row["full_name"] for row in rows}
    assert '\'=HYPERLINK("http://x")' in names
    assert not any(name.startswith(("=", "+", "-", "@")) for name in names)

    as_json = await kit.client.get(f"/api/checkin/cases/{case['id']}/export?format=json", headers=epi)
    document = as_json.json()
    assert document["exported_by"] == me
    assert len(document["contacts"]) == 6

    for who in ("p1", "p6", "p11"):
        actions = [(a.action, a.actor_id) for a in await kit.platform.audit.for_subject(town.subject(who))]
        assert actions.count(("checkin.case.export", me)) == 2
    assert (await kit.platform.audit.verify()).ok


async def test_epidemiologists_see_their_province_and_referrals_only(kit):
    town = await scenario(kit)
    hanoi = await kit.epidemiologist("01")
    danang = await kit.epidemiologist("48")
    case = await open_case(kit, town, hanoi)
    assert [c["id"] for c in (await kit.client.get("/api/checkin/cases/", headers=hanoi)).json()] == [case["id"]]
    assert (await kit.client.get("/api/checkin/cases/", headers=danang)).json() == []
    for path in ("", "/contacts", "/export"):
        denied = await kit.client.get(f"/api/checkin/cases/{case['id']}{path}", headers=danang)
        assert denied.status_code == 403, path
    referrals = (await kit.client.get("/api/checkin/referrals/", headers=danang)).json()
    assert [r["subject_id"] for r in referrals] == [town.subject("p11")]
    assert referrals[0]["venue_name"] == "Cà phê C"
    assert (await kit.client.get("/api/checkin/referrals/", headers=hanoi)).json() == []
    opened_elsewhere = await kit.client.post(
        "/api/checkin/cases/", json={"province": "01", "subject_id": town.subject("f0")}, headers=danang
    )
    assert opened_elsewhere.status_code == 403
    citizen, _ = await town.person("p1")
    assert (await kit.client.get("/api/checkin/cases/", headers=citizen)).status_code == 403


async def test_case_input_is_checked(kit):
    epi = await kit.epidemiologist("01")
    nobody = await kit.client.post("/api/checkin/cases/", json={"province": "01"}, headers=epi)
    assert nobody.status_code == 400
    assert "subject_id" in nobody.json()["detail"]
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    later = await kit.client.post(
        "/api/checkin/cases/", json={"province": "01", "phone": "0912345678", "isolated_at": future}, headers=epi
    )
    assert later.status_code == 400
    assert "isolated_at" in later.json()["detail"]


def released(town: Town, sample: str, result: str = "positive") -> dict[str, Any]:
    return {
        "sample_id": sample,
        "subject_id": town.subject("f0"),
        "phone": None,
        "province": "01",
        "result": result,
        "collected_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
        "symptom_onset": None,
    }


async def test_positive_result_opens_one_case_per_sample_and_notifies(kit):
    town = await scenario(kit)
    events = kit.platform.events
    await events.publish("testing_result_released", released(town, "S-1", "negative"), province="01")
    await events.publish("testing_result_released", released(town, "S-2"), province="01")
    await events.publish("testing_result_released", released(town, "S-2"), province="01")  # announced twice
    stats = await events.dispatch_due()
    assert (stats.delivered, stats.failed) == (3, 0)
    rows = await kit.platform.db.execute("SELECT sample_id, source, f1_count, f2_count FROM checkin_case")
    assert [dict(r) for r in rows] == [{"sample_id": "S-2", "source": "testing", "f1_count": 4, "f2_count": 2}]
    notices = await MessageOutbox.select().where(MessageOutbox.kind == "checkin.exposure")
    assert len(notices) == 4

    # The same delivery again (a crash after handling): nothing changes.
    from plugins.checkin.tracing import open_case_from_result

    await open_case_from_result(kit.platform, released(town, "S-2"))
    assert len(await kit.platform.db.execute("SELECT id FROM checkin_case")) == 1
    assert len(await MessageOutbox.select().where(MessageOutbox.kind == "checkin.exposure")) == 4
    epi = await kit.epidemiologist("01")
    listed = (await kit.client.get("/api/checkin/cases/", headers=epi)).json()
    assert listed[0]["sample_id"] == "S-2"


async def test_malformed_result_event_is_retried_not_lost(kit):
    await kit.platform.events.publish("testing_result_released", {"sample_id": "S-9"}, province="01")
    stats = await kit.platform.events.dispatch_due()
    assert stats.failed == 1
    rows = await kit.platform.db.execute("SELECT status, last_error FROM event_delivery")
    assert rows[0]["status"] == "pending"
    assert "province" in rows[0]["last_error"] or "result" in rows[0]["last_error"]
