"""Checking in by scanning a venue code: declaration, same visit, idempotency, check-out, bad input."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core import hookimpl
from core.testing import http_client
from plugins.checkin.declarations import NATIONAL_VERSION, Question
from tests.plugins.checkin.conftest import BASE_URL, Kit


async def test_citizen_checks_in_and_sees_the_visit(kit):
    venue = await kit.venue(await kit.operator())
    citizen, subject = await kit.citizen()
    response = await kit.check_in(citizen, kit.code_of(venue))
    assert response.status_code == 201, response.text
    visit = response.json()
    assert visit["venue_name"] == "Quán Phở Thìn"
    assert visit["status"] == "present"
    assert visit["repeat"] is False
    assert visit["risky"] is False
    arrived = datetime.fromisoformat(visit["arrived_at"])
    left = datetime.fromisoformat(visit["left_at"])
    assert left - arrived == timedelta(minutes=60)  # the venue's default stay
    mine = await kit.client.get("/api/checkin/me/visits", headers=citizen)
    assert [v["id"] for v in mine.json()] == [visit["id"]]
    rows = await kit.platform.db.execute("SELECT subject_id, phone, full_name FROM checkin_visit")
    assert [dict(r) for r in rows] == [{"subject_id": subject, "phone": "+84900000001", "full_name": "Nguyễn Văn An"}]
    assert await kit.declaration_count() == 1


async def test_questionnaire_is_served_and_versioned(kit):
    venue = await kit.venue(await kit.operator())
    form = await kit.client.get(f"/api/checkin/codes/{kit.code_of(venue)}/questionnaire")
    assert form.status_code == 200
    assert form.json()["version"] == NATIONAL_VERSION
    assert [q["id"] for q in form.json()["questions"]][:3] == ["symptoms", "contact_case", "travel"]
    citizen, _ = await kit.citizen()
    outdated = await kit.check_in(citizen, kit.code_of(venue), declaration=kit.declaration(version="vn-2020.1"))
    assert outdated.status_code == 409
    assert "questionnaire_version" in outdated.json()["detail"]


async def test_risky_answers_are_flagged_for_the_province(kit):
    venue = await kit.venue(await kit.operator())
    citizen, subject = await kit.citizen()
    response = await kit.check_in(
        citizen, kit.code_of(venue), declaration=kit.declaration(symptoms=["fever", "cough"], contact_case=True)
    )
    assert response.status_code == 201
    assert response.json()["risky"] is True
    assert response.json()["risk_flags"] == ["symptoms", "contact"]
    hanoi = await kit.client.get("/api/checkin/flags", headers=await kit.epidemiologist("01"))
    assert [f["subject_id"] for f in hanoi.json()] == [subject]
    assert hanoi.json()[0]["full_name"] == "Nguyễn Văn An"
    danang = await kit.client.get("/api/checkin/flags", headers=await kit.epidemiologist("48"))
    assert danang.json() == []
    audit = await kit.platform.audit.for_subject(subject)
    assert [a.action for a in audit] == ["checkin.flag.list"]


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({"symptoms": ["fever", "none"]}, "declaration.answers.symptoms"),
        ({"symptoms": ["plague"]}, "declaration.answers.symptoms"),
        ({"contact_case": "yes"}, "declaration.answers.contact_case"),
        ({"favourite_colour": True}, "declaration.answers.favourite_colour"),
    ],
)
async def test_bad_answers_name_the_question(kit, answers, field):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    response = await kit.check_in(citizen, kit.code_of(venue), declaration=kit.declaration(**answers))
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(field)
    assert await kit.visit_count() == 0


async def test_missing_required_answer_is_refused(kit):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    declaration = {"questionnaire_version": NATIONAL_VERSION, "answers": {"symptoms": ["none"], "travel": False}}
    response = await kit.check_in(citizen, kit.code_of(venue), declaration=declaration)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("declaration.answers.contact_case")


async def test_second_scan_within_ten_minutes_is_the_same_visit(kit):
    venue = await kit.venue(await kit.operator(), sub_locations=[{"name": "Bàn 1"}, {"name": "Bàn 2"}])
    citizen, _ = await kit.citizen()
    first = await kit.check_in(citizen, kit.code_of(venue, "Bàn 1"), minutes_ago=8)
    second = await kit.check_in(citizen, kit.code_of(venue, "Bàn 2"))
    assert second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["repeat"] is True
    # Seen at two tables: the visit is traced against the whole venue.
    assert second.json()["sub_location_id"] is None
    later = await kit.check_in(citizen, kit.code_of(venue), minutes_ago=-0.0)
    assert later.json()["id"] == first.json()["id"]
    assert await kit.visit_count() == 1
    other_place = await kit.venue(await kit.operator(site="site-2"), name="Bún chả Hương Liên")
    elsewhere = await kit.check_in(citizen, kit.code_of(other_place))
    assert elsewhere.json()["id"] != first.json()["id"]
    assert await kit.visit_count() == 2


async def test_scan_eleven_minutes_later_is_a_new_visit(kit):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    first = await kit.check_in(citizen, kit.code_of(venue), minutes_ago=11)
    second = await kit.check_in(citizen, kit.code_of(venue))
    assert first.json()["id"] != second.json()["id"]
    assert await kit.visit_count() == 2


async def test_retried_request_with_idempotency_key_creates_one_visit(kit):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    key = str(uuid.uuid4())
    first = await kit.check_in(citizen, kit.code_of(venue), key=key, minutes_ago=30)
    retry = await kit.check_in(citizen, kit.code_of(venue), key=key, minutes_ago=30)
    assert first.status_code == retry.status_code == 201
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["repeat"] is True
    assert await kit.visit_count() == 1
    assert await kit.declaration_count() == 1
    # Another person's identical key is theirs alone.
    other, _ = await kit.citizen()
    theirs = await kit.check_in(other, kit.code_of(venue), key=key)
    assert theirs.json()["id"] != first.json()["id"]


async def test_concurrent_duplicates_make_one_visit(kit):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    same_key = [kit.check_in(citizen, kit.code_of(venue), key="tap-1") for _ in range(5)]
    no_key = [kit.check_in(citizen, kit.code_of(venue)) for _ in range(3)]
    responses = await asyncio.gather(*same_key, *no_key)
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await kit.visit_count() == 1
    assert await kit.declaration_count() == 1


async def test_check_out_by_the_person_and_automatically(kit):
    venue = await kit.venue(await kit.operator(), default_stay_minutes=30)
    citizen, _ = await kit.citizen()
    old = await kit.check_in(citizen, kit.code_of(venue), minutes_ago=120)
    mine = (await kit.client.get("/api/checkin/me/visits", headers=citizen)).json()
    assert mine[0]["status"] == "auto_checked_out"
    assert mine[0]["id"] == old.json()["id"]
    current = await kit.check_in(citizen, kit.code_of(venue), minutes_ago=20)
    out = await kit.client.post(f"/api/checkin/visits/{current.json()['id']}/checkout", json={}, headers=citizen)
    assert out.status_code == 200, out.text
    assert out.json()["status"] == "checked_out"
    assert datetime.fromisoformat(out.json()["left_at"]) <= datetime.now(UTC)
    twice = await kit.client.post(f"/api/checkin/visits/{current.json()['id']}/checkout", json={}, headers=citizen)
    assert twice.status_code == 409
    stranger, _ = await kit.citizen()
    theirs = await kit.client.post(f"/api/checkin/visits/{old.json()['id']}/checkout", json={}, headers=stranger)
    assert theirs.status_code == 403


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"arrived_at": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}, 400, "arrived_at"),
        ({"arrived_at": (datetime.now(UTC) - timedelta(days=3)).isoformat()}, 400, "arrived_at"),
        ({"arrived_at": "2021-07-20T08:30:00"}, 400, "arrived_at"),
        ({"stay_minutes": 60 * 24 * 30}, 400, "stay_minutes"),
        ({"stay_minutes": 60 * 25}, 400, "stay_minutes"),
        ({"stay_minutes": 0}, 400, "stay_minutes"),
        ({"full_name": "A" * 101}, 400, "full_name"),
        ({"full_name": "=cmd|' /C calc'!A0"}, 400, "full_name"),
        ({"full_name": "+84 trick"}, 400, "full_name"),
        ({"full_name": "-1+1"}, 400, "full_name"),
        ({"full_name": "@SUM(A1)"}, 400, "full_name"),
        ({"code": "x" * 2000}, 400, "code"),
        ({"code": "1.e30.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 400, "code"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(kit, change, status, field):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    body = {
        "code": kit.code_of(venue),
        "full_name": "Trần Thị Bình",
        "declaration": kit.declaration(),
        **change,
    }
    response = await kit.client.post("/api/checkin/visits", json=body, headers=citizen)
    assert response.status_code == status, response.text
    assert field in response.text
    assert await kit.visit_count() == 0
    assert await kit.declaration_count() == 0


async def test_a_formula_name_is_told_why_in_words(kit):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    body = {"code": kit.code_of(venue), "full_name": "=HYPERLINK(1)", "declaration": kit.declaration()}
    response = await kit.client.post("/api/checkin/visits", json=body, headers=citizen)
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["key"] == "full_name"
    assert "spreadsheet would run it as a formula" in error["message"], error
    assert "regex" not in response.text


async def test_unknown_venue_code_is_404_and_anonymous_is_401(kit):
    from core.signing import Signer

    forged_but_signed = Signer.from_settings(kit.platform.settings, "checkin.venue").sign(
        {"c": uuid.uuid4().hex}, ttl=None
    )
    citizen, _ = await kit.citizen()
    assert (await kit.check_in(citizen, forged_but_signed)).status_code == 404
    venue = await kit.venue(await kit.operator())
    anonymous = await kit.client.post(
        "/api/checkin/visits", json={"code": kit.code_of(venue), "full_name": "An", "declaration": kit.declaration()}
    )
    assert anonymous.status_code == 401


async def test_flood_from_one_identity_is_rate_limited(make_platform):
    platform = await make_platform(base_url=BASE_URL, plugin={"checkin": {"checkins_per_identity_per_hour": 3}})
    async with http_client(platform) as client:
        kit = Kit(platform, client)
        citizen, _ = await kit.citizen()
        codes = [kit.code_of(await kit.venue(await kit.operator(site=f"s{i}"))) for i in range(4)]
        statuses = [(await kit.check_in(citizen, code)).status_code for code in codes]
        assert statuses == [201, 201, 201, 429]
        assert await kit.visit_count() == 3
        other, _ = await kit.citizen()
        assert (await kit.check_in(other, codes[3])).status_code == 201


class HanoiQuestions:
    """A Hanoi province plugin: one extra question, only for Hanoi venues."""

    PROVINCE = "01"

    @hookimpl
    def checkin_declaration_questions(self, venue):
        return [
            Question(
                id="hn.green_zone",
                kind="yes_no",
                text_vi="Bạn có đến từ vùng xanh không?",
                text_en="Do you come from a green zone?",
                risk="zone",
                risky_answers=("no",),
            )
        ]


async def test_province_questions_apply_only_to_its_venues(make_platform):
    platform = await make_platform(base_url=BASE_URL, extra_plugins=[("hn_questions", HanoiQuestions())])
    async with http_client(platform) as client:
        kit = Kit(platform, client)
        hanoi = await kit.venue(await kit.operator())
        danang = await kit.venue(await kit.operator(province="48", site="dn-1"), province="48", ward="20194")
        hanoi_form = (await client.get(f"/api/checkin/codes/{kit.code_of(hanoi)}/questionnaire")).json()
        danang_form = (await client.get(f"/api/checkin/codes/{kit.code_of(danang)}/questionnaire")).json()
        assert "hn.green_zone" in [q["id"] for q in hanoi_form["questions"]]
        assert hanoi_form["version"].startswith(NATIONAL_VERSION + "+01.")
        assert danang_form["version"] == NATIONAL_VERSION
        assert "hn.green_zone" not in [q["id"] for q in danang_form["questions"]]

        citizen, _ = await kit.citizen()
        missing = await kit.check_in(citizen, kit.code_of(hanoi), declaration=kit.declaration(hanoi_form["version"]))
        assert missing.status_code == 400
        assert "hn.green_zone" in missing.json()["detail"]
        answered = await kit.check_in(
            citizen, kit.code_of(hanoi), declaration=kit.declaration(hanoi_form["version"], **{"hn.green_zone": False})
        )
        assert answered.status_code == 201
        assert answered.json()["risk_flags"] == ["zone"]
        rows = await platform.db.execute("SELECT questionnaire_version FROM checkin_declaration")
        assert [dict(r) for r in rows] == [{"questionnaire_version": hanoi_form["version"]}]
