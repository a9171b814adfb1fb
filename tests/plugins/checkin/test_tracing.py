"""Tracing: F1 by overlapping visits (tail, minimum overlap, sub-locations), F2, risk, zones,
notices, exports, province scoping and referrals, and cases opened from released test results."""

from __future__ import annotations

import csv
import io
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from core import hookimpl
from core.tables import MessageOutbox
from core.testing import http_client
from plugins.checkin.tables import Visit
from plugins.checkin.venues import VenueType, load_venue, venue_types
from plugins.checkin.visits import settings_of
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


# -- the SQL against a plain reading of the rules ----------------------------------------------


class Stay(msgspec.Struct, frozen=True):
    subject: str
    venue: str
    sub: str | None
    arrived: int
    left: int


Weight = Callable[[str, int, int], float]


def reference_trace(
    stays: list[Stay], f0: str, window: tuple[int, int], now: int, weight: Weight, config: Any
) -> dict[str, tuple[Any, ...]]:
    """Tracing as issue #3 words it, pair by pair in Python.

    ``weight(venue, minutes, degree)`` is the venue type's weight times the province rules' answers.
    Returns {person: (degree, minutes, overlaps, risk, (venue, source, start, end) of the strongest
    overlap, the earliest among equally strong ones)}.
    """
    tail = config.tail_minutes * 60

    def contacts(
        sources: dict[str, tuple[int, int]], exclude: set[str], degree: int, factor: float
    ) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for f in stays:
            if f.subject not in sources:
                continue
            start, end = sources[f.subject]
            for c in stays:
                if c.venue != f.venue or c.subject in exclude or c.subject in sources:
                    continue
                if f.sub is not None and c.sub is not None and f.sub != c.sub:
                    continue
                # Together (the source's tail included), inside the source's infectious window.
                low = max(c.arrived, f.arrived, start)
                high = min(c.left, f.left + tail, end + tail)
                if high <= low:
                    continue
                minutes = (high - low) // 60
                score = round(minutes / 60 * weight(c.venue, minutes, degree) * factor, 4)
                person = found.setdefault(c.subject, [0, 0, 0.0, low, None])
                person[0] += minutes
                person[1] += 1
                person[2] = round(person[2] + score, 4)
                person[3] = min(person[3], low)
                # The strongest overlap is shown; between equally strong ones, the earliest.
                key = (-score, low, high, c.venue, f.subject)
                if person[4] is None or key < person[4]:
                    person[4] = key
        return {p: v for p, v in found.items() if v[0] >= config.min_overlap_minutes}

    def shown(person: list[Any]) -> tuple[Any, ...]:
        _score, low, high, venue, source = person[4]
        return (venue, source, low, high)

    f1 = contacts({f0: window}, {f0}, 1, 1.0)
    f2 = contacts({p: (v[3], max(now, window[1])) for p, v in f1.items()}, {f0, *f1}, 2, config.f2_risk_factor)
    return {
        **{p: (1, v[0], v[1], v[2], shown(v)) for p, v in f1.items()},
        **{p: (2, v[0], v[1], v[2], shown(v)) for p, v in f2.items()},
    }


async def test_f1_and_f2_sets_match_a_pair_by_pair_reading_of_the_rules(make_platform):
    """Random stays (sub-locations, tails, windows cutting stays, repeated and seconds-long overlaps):
    the SQL finds exactly the F1 and F2 that comparing every pair of stays finds, with the same
    minutes, overlap counts and risk."""
    # The window opens at the sample date, 20 hours ago: it cuts through the stays made before.
    platform = await make_platform(base_url=BASE_URL, plugin={"checkin": {"infectious_days_before": 0}})
    async with http_client(platform) as client:
        await check_against_reference(Kit(platform, client), rules=None)


class MinuteRules:
    """Hanoi rules that depend on the overlap: long stays at a restaurant, and F2 at a karaoke."""

    PROVINCE = "01"

    @hookimpl
    def checkin_risk_weight(self, venue, overlap_minutes, degree):
        if venue.venue_type == "restaurant":
            return 1.7 if overlap_minutes >= 45 else None
        if venue.venue_type == "bar_karaoke" and degree == 2:
            return 0.3
        return None


async def test_province_rules_match_a_pair_by_pair_reading_too(make_platform):
    """The same comparison with rules that weigh Hanoi's overlaps by their length and degree: those
    venues' overlaps are weighed group by group, Da Nang's from the table, and the sums match."""
    platform = await make_platform(
        base_url=BASE_URL,
        plugin={"checkin": {"infectious_days_before": 0}},
        extra_plugins=[("minute_rules", MinuteRules())],
    )
    async with http_client(platform) as client:
        await check_against_reference(Kit(platform, client), rules=MinuteRules())


async def check_against_reference(kit: Kit, rules: MinuteRules | None) -> None:
    town = Town(kit)
    await town.setup_venues()
    venues = [town.restaurant, town.karaoke, town.office, town.danang]
    subs = {v["id"]: [None] + [s["id"] for s in v["sub_locations"]] for v in venues}
    config = settings_of(kit.platform)
    weights, facts = {}, {}
    for venue in venues:
        types = await venue_types(kit.platform, venue["province"])
        weights[venue["id"]] = types[venue["venue_type"]].risk_weight
        facts[venue["id"]] = await load_venue(venue["id"])

    def weight(venue: str, minutes: int, degree: int) -> float:
        answer = None
        if rules is not None and facts[venue].province == rules.PROVINCE:
            answer = rules.checkin_risk_weight(venue=facts[venue], overlap_minutes=minutes, degree=degree)
        return weights[venue] * (1.0 if answer is None else answer)

    now = int(town.now.timestamp())
    rng = random.Random(2021)
    stays = []
    for person in [f"ref-{n}" for n in range(1, 60)]:
        for _ in range(rng.randint(1, 5)):
            venue = rng.choice([*venues, town.restaurant])["id"]  # the restaurant, with its tables, twice as likely
            arrived = now - rng.randint(0, 36 * 3600)
            stays.append(Stay(person, venue, rng.choice(subs[venue]), arrived, arrived + rng.randint(60, 150 * 60)))
    table_1 = subs[town.restaurant["id"]][1]
    for hours_ago, venue, sub in [
        (30, town.restaurant["id"], None),  # before the window
        (20.5, town.restaurant["id"], table_1),  # the window opens during this stay
        (10, town.restaurant["id"], None),
        (6, town.karaoke["id"], None),
        (3, town.danang["id"], None),
    ]:
        arrived = now - int(hours_ago * 3600)
        stays.append(Stay("ref-0", venue, sub, arrived, arrived + rng.randint(30 * 60, 120 * 60)))
    # Two F1s at the office hours apart, and someone there the whole time: one stay, two overlaps.
    karaoke, office = town.karaoke["id"], town.office["id"]
    stays += [
        Stay("ref-60", karaoke, None, now - 6 * 3600 + 60, now - 6 * 3600 + 25 * 60),
        Stay("ref-61", karaoke, None, now - 6 * 3600 + 60, now - 6 * 3600 + 25 * 60),
        Stay("ref-60", office, None, now - 5 * 3600, now - 4 * 3600 - 1800),
        Stay("ref-61", office, None, now - 3 * 3600, now - 2 * 3600 - 1800),
        Stay("ref-62", office, None, now - 5 * 3600 + 600, now - 2 * 3600 - 2400),
        # Half an hour with each of the two, at two times: equally strong, so the earlier one is shown.
        Stay("ref-63", office, None, now - 5 * 3600, now - 4 * 3600 - 1800),
        Stay("ref-63", office, None, now - 3 * 3600, now - 2 * 3600 - 1800),
    ]
    stays = [s for s in stays if s.left < now]
    province = {v["id"]: v["province"] for v in venues}
    await Visit.insert(
        *[
            Visit(
                venue_id=uuid.UUID(s.venue),
                sub_location_id=uuid.UUID(s.sub) if s.sub else None,
                province=province[s.venue],
                site="ref",
                subject_id=s.subject,
                full_name=f"Người {s.subject}",
                arrived_at=s.arrived,
                left_at=s.left,
                method="scan",
                recorded_by=s.subject,
            )
            for s in stays
        ]
    )
    epi = await kit.epidemiologist("01")
    sampled = town.now - timedelta(hours=20)
    response = await kit.client.post(
        "/api/checkin/cases/",
        json={
            "province": "01",
            "subject_id": "ref-0",
            "sampled_at": sampled.isoformat(),
            "isolated_at": town.now.isoformat(),
        },
        headers=epi,
    )
    assert response.status_code == 201, response.text
    case = response.json()
    window = (int(datetime.fromisoformat(case["window_start"]).timestamp()), now)
    traced_at = int(datetime.fromisoformat(case["traced_at"]).timestamp())
    expected = reference_trace(stays, "ref-0", window, traced_at, weight, config)
    contacts = (await kit.client.get(f"/api/checkin/cases/{case['id']}/contacts", headers=epi)).json()
    found = {
        c["subject_id"]: (
            c["degree"],
            c["overlap_minutes"],
            c["exposures"],
            c["risk_score"],
            (
                c["venue_id"],
                c["via_subject_id"] or "ref-0",
                int(datetime.fromisoformat(c["exposure_start"]).timestamp()),
                int(datetime.fromisoformat(c["exposure_end"]).timestamp()),
            ),
        )
        for c in contacts
    }
    assert found == expected
    assert expected["ref-62"][0] == 2
    assert expected["ref-63"][2] >= 2 and expected["ref-63"][4][2] == now - 5 * 3600
    assert 5 <= sum(1 for d in expected.values() if d[0] == 1) and 5 <= sum(1 for d in expected.values() if d[0] == 2)
    if rules is not None:  # the rules changed some scores, so the comparison tested them
        plain = reference_trace(stays, "ref-0", window, traced_at, lambda venue, _m, _d: weights[venue], config)
        assert {p: v[3] for p, v in plain.items()} != {p: v[3] for p, v in expected.items()}
