"""Booking: never more than capacity under concurrency, short codes, eligibility, effective-dated
rules, the priority waitlist and cancellation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from core import Conflict, Message, Principal, clock, hookimpl
from core.plugins import HookFailed
from core.tables import MessageOutbox
from core.testing import http_client
from plugins.vaccination import booking, doses, localtime
from plugins.vaccination.schemas import BookingBody, DoseBody
from plugins.vaccination.tables import Booking, Person, SiteSession, WaitlistEntry
from tests.plugins.vaccination.support import (
    LOT,
    NO_SCREENING,
    PROVINCE,
    SITE,
    build_world,
    next_id_number,
    next_phone,
)


async def test_booking_gives_a_short_code_by_sms_and_cancels(world):
    headers, _ = await world.citizen()
    person = (await world.register(headers))["person"]
    response = await world.book(headers, person["id"])
    assert response.status_code == 201, response.text
    booked = response.json()["booking"]
    code = booked["code"]
    assert len(code) == 8 and set(code) <= set(booking.CODE_ALPHABET)
    assert booked["dose_number"] == 1 and booked["dose_type"] == "primary" and booked["status"] == "booked"
    sms = await MessageOutbox.select().where(MessageOutbox.kind == "vaccination.booking").first()
    assert sms["recipient"] == person["phone"] and code in sms["body_en"]

    twice = await world.book(headers, person["id"])
    assert twice.status_code == 409
    assert twice.json()["detail"].startswith("person_id: this person already has an active booking")

    stranger, _ = await world.citizen()
    assert (await world.api.post(f"/api/vaccination/bookings/{code}/cancel", headers=stranger)).status_code == 403
    session = (await world.api.get(f"/api/vaccination/sessions/{world.session_id}")).json()
    assert session["booked"] == 1
    cancelled = await world.api.post(f"/api/vaccination/bookings/{code.lower()}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert (await world.api.get(f"/api/vaccination/sessions/{world.session_id}")).json()["booked"] == 0
    again = await world.api.post(f"/api/vaccination/bookings/{code}/cancel", headers=headers)
    assert again.status_code == 409
    assert (await world.book(headers, person["id"])).status_code == 201  # may book anew
    mine = (await world.api.get("/api/vaccination/bookings", headers=headers)).json()
    assert sorted(b["status"] for b in mine) == ["booked", "cancelled"]
    assert (await world.api.get("/api/vaccination/bookings", headers=stranger)).json() == []


async def test_two_hundred_concurrent_requests_for_twenty_places(world):
    """Exactly the capacity is booked, everyone else is told "full", and every answer matches what was stored."""
    session_id = uuid.UUID(await world.session(capacity=20))
    people = await _people(200)
    admin = Principal(id="staff:test", kind="staff", roles=frozenset({"national_admin"}))

    async def attempt(person: Person) -> tuple[uuid.UUID, str, uuid.UUID | None]:
        body = BookingBody(person_id=person.id, session_id=session_id, screening=NO_SCREENING)
        try:
            outcome = await booking.book(world.platform, admin, body)
        except booking.SessionFull as exc:
            return person.id, f"full: {exc}", None
        except Exception as exc:  # any other answer breaks the contract, and is shown
            return person.id, f"error: {type(exc).__name__}: {exc}", None
        assert outcome.booking is not None
        return person.id, "booked", outcome.booking.id

    outcomes = await asyncio.gather(*(attempt(person) for person in people))
    answers = [answer for _person, answer, _booking in outcomes]
    assert answers.count("booked") == 20, sorted(set(answers))
    assert answers.count("full: session_id: the session is full") == 180, sorted(set(answers))
    stored = await Booking.select(Booking.id, Booking.person, Booking.code).where(Booking.session == session_id)
    # Every success is a stored booking, and every refusal left none behind.
    assert {(row["person"], row["id"]) for row in stored} == {
        (person_id, booking_id) for person_id, answer, booking_id in outcomes if answer == "booked"
    }
    session = await SiteSession.select(SiteSession.booked).where(SiteSession.id == session_id).first()
    assert session["booked"] == 20
    # Each booked person's code went out by SMS with the booking, and nobody else got one.
    phones = {person.id: person.phone for person in people}
    sms = await MessageOutbox.select(MessageOutbox.recipient, MessageOutbox.body_en).where(
        MessageOutbox.kind == "vaccination.booking"
    )
    assert sorted(row["recipient"] for row in sms) == sorted(phones[row["person"]] for row in stored)
    codes = {phones[row["person"]]: row["code"] for row in stored}
    assert all(codes[row["recipient"]] in row["body_en"] for row in sms)


async def test_a_failing_sms_channel_stores_no_booking(make_platform, keys_dir):
    """The code's SMS is queued in the booking's transaction: when it cannot be, nothing is booked."""
    gateway = BrokenGateway()
    platform = await make_platform(
        plugin={"vaccination": {"keys_dir": str(keys_dir)}}, extra_plugins=[("gateway", gateway)]
    )
    async with http_client(platform) as api:
        world = await build_world(platform, api)
        [person] = await _people(1)
        admin = Principal(id="staff:test", kind="staff", roles=frozenset({"national_admin"}))
        body = BookingBody(person_id=person.id, session_id=uuid.UUID(world.session_id), screening=NO_SCREENING)
        gateway.down = True
        with pytest.raises(HookFailed, match="'gateway' failed in send_message"):
            await booking.book(platform, admin, body)
        assert await Booking.count().where(Booking.person == person.id) == 0
        assert (await api.get(f"/api/vaccination/sessions/{world.session_id}")).json()["booked"] == 0
        gateway.down = False
        outcome = await booking.book(platform, admin, body)
        assert outcome.booking is not None
        assert await Booking.count().where(Booking.person == person.id) == 1


async def test_a_booking_that_cannot_get_its_turn_in_time_is_refused_and_stores_nothing(world, monkeypatch):
    if world.platform.db.kind != "sqlite":
        pytest.skip("PostgreSQL queues writers on the session's row lock, not in the process")
    [person] = await _people(1)
    admin = Principal(id="staff:test", kind="staff", roles=frozenset({"national_admin"}))
    body = BookingBody(person_id=person.id, session_id=uuid.UUID(world.session_id), screening=NO_SCREENING)
    monkeypatch.setattr(booking, "WRITE_BUDGET_SECONDS", 0.2)
    async with booking._write_queue(world.platform.db).lock:  # another booking's write that takes too long
        with pytest.raises(booking.WritesBusy, match=r"^session_id: too many bookings"):
            await booking.book(world.platform, admin, body)
    assert await Booking.count().where(Booking.person == person.id) == 0
    assert (await world.api.get(f"/api/vaccination/sessions/{world.session_id}")).json()["booked"] == 0
    assert (await booking.book(world.platform, admin, body)).booking is not None


async def test_a_booking_kept_waiting_past_its_budget_hears_full_if_the_session_filled(world, monkeypatch):
    if world.platform.db.kind != "sqlite":
        pytest.skip("PostgreSQL bookings are not queued in the process")
    session_id = uuid.UUID(await world.session(capacity=1))
    first, second = await _people(2)
    admin = Principal(id="staff:test", kind="staff", roles=frozenset({"national_admin"}))
    await booking.book(
        world.platform, admin, BookingBody(person_id=first.id, session_id=session_id, screening=NO_SCREENING)
    )
    monkeypatch.setattr(booking, "ADMISSION_BUDGET_SECONDS", 0.2)
    admission = booking._write_queue(world.platform.db).admission
    for _ in range(booking.ADMITTED_AT_ONCE):  # every place in the admission taken by slow bookings
        await admission.acquire()
    try:
        body = BookingBody(person_id=second.id, session_id=session_id, screening=NO_SCREENING)
        with pytest.raises(booking.SessionFull):
            await booking.book(world.platform, admin, body)
        body = BookingBody(person_id=second.id, session_id=uuid.UUID(world.session_id), screening=NO_SCREENING)
        with pytest.raises(booking.WritesBusy):
            await booking.book(world.platform, admin, body)
    finally:
        for _ in range(booking.ADMITTED_AT_ONCE):
            admission.release()
    assert await Booking.count().where(Booking.person == second.id) == 0


class BrokenGateway:
    """An SMS gateway that fails while ``down``, and otherwise leaves the message to the outbox."""

    down = False

    @hookimpl(tryfirst=True)
    def send_message(self, message: Message, platform: object) -> None:
        if self.down:
            raise ConnectionError("gateway down")


async def _people(count: int) -> list[Person]:
    """Registered people with phones, eligible for a first dose, stored directly (registration is tested apart)."""
    now = clock.now()
    rows = []
    for _ in range(count):
        index = next_id_number()
        rows.append(
            Person(
                id=uuid.uuid4(),
                subject_id=f"test:{index}",
                account_holder=True,
                full_name=f"Người Thứ {index}",
                name_key=f"nguoi thu {index}",
                birth_date=localtime.today().replace(year=1980),
                birth_year=1980,
                sex="female",
                id_number=index,
                phone=next_phone(),
                province=PROVINCE,
                priority_group="general",
                channel="self",
                registered_by="test",
                created_at=now,
            )
        )
    await Person.insert(*rows)
    return rows


async def test_concurrent_http_bookings_never_overbook(world):
    session_id = await world.session(capacity=5)
    citizens = []
    for _ in range(30):
        headers, _ = await world.citizen()
        person = (await world.register(headers))["person"]
        citizens.append((headers, person["id"]))
    responses = await asyncio.gather(*(world.book(h, p, session_id) for h, p in citizens))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 5
    assert statuses.count(409) == 25
    assert all(r.json()["detail"] == "session_id: the session is full" for r in responses if r.status_code == 409)
    stored = await Booking.select(Booking.id, Booking.code).where(Booking.session == session_id)
    answered = [r.json()["booking"] for r in responses if r.status_code == 201]
    assert sorted((str(row["id"]), row["code"]) for row in stored) == sorted((b["id"], b["code"]) for b in answered)
    assert (await world.api.get(f"/api/vaccination/sessions/{session_id}")).json()["places_left"] == 0


async def test_same_person_racing_gets_one_booking(world):
    headers, _ = await world.citizen()
    person = (await world.register(headers))["person"]
    responses = await asyncio.gather(*(world.book(headers, person["id"]) for _ in range(8)))
    assert sorted(r.status_code for r in responses).count(201) == 1
    assert await Booking.count().where(Booking.person == person["id"]) == 1
    assert (await world.api.get(f"/api/vaccination/sessions/{world.session_id}")).json()["booked"] == 1


async def test_eligibility_is_checked_at_booking(world):
    headers, _ = await world.citizen()
    child = (await world.register(headers, birth_date=(localtime.today() - timedelta(days=365 * 8)).isoformat()))[
        "person"
    ]
    response = await world.book(headers, child["id"])
    assert response.status_code == 400
    assert response.json()["detail"].startswith("person_id: aged 7") or response.json()["detail"].startswith(
        "person_id: aged 8"
    )
    assert "aged 12 and over" in response.json()["detail"]

    teacher = (
        await world.register(headers, relationship="dependant", full_name="Trần Văn Giáo", priority_group="teachers")
    )["person"]
    closed = await world.book(headers, teacher["id"])
    assert closed.status_code == 400
    assert "teachers may not book yet in province 01" in closed.json()["detail"]

    adult = (await world.register(headers, relationship="dependant", full_name="Trần Thị Lớn"))["person"]
    missing = await world.api.post(
        "/api/vaccination/bookings",
        json={"person_id": adult["id"], "session_id": world.session_id, "screening": {"pregnant": False}},
        headers=headers,
    )
    assert missing.status_code == 400
    assert missing.json()["detail"].startswith("screening: answer every screening question")
    allergic = await world.book(headers, adult["id"], screening={**NO_SCREENING, "allergy_to_component": True})
    assert allergic.status_code == 400
    assert allergic.json()["detail"].startswith("screening.allergy_to_component: a contraindication")
    feverish = await world.book(headers, adult["id"], screening={**NO_SCREENING, "acute_illness": True})
    assert feverish.status_code == 400
    assert "postponed" in feverish.json()["detail"]
    unknown_session = await world.book(headers, adult["id"], str(uuid.uuid4()))
    assert unknown_session.status_code == 404
    assert await Booking.count() == 0
    pregnant = await world.book(headers, adult["id"], screening={**NO_SCREENING, "pregnant": True})
    assert pregnant.status_code == 201  # a precaution, not a contraindication


async def test_interval_and_mixing_at_booking(world):
    headers, person, _recorded = await world.vaccinated_person()
    tomorrow = await world.session(day=localtime.today() + timedelta(days=1))
    early = await world.book(headers, person["id"], tomorrow)
    assert early.status_code == 400
    due = localtime.today() + timedelta(days=21)
    assert early.json()["detail"] == (
        f"session_id: too early: dose 2 of COMIRNATY is due from {due}, 21 days after the dose of {localtime.today()}"
    )
    other = await world.api.post(
        "/api/vaccination/products",
        json={
            "code": "VAXZEVRIA",
            "name": "Vaxzevria",
            "manufacturer": "AstraZeneca AB",
            "dcc_vp": "J07BX03",
            "dcc_mp": "EU/1/21/1529",
            "dcc_ma": "ORG-100001699",
            "rule": {"effective_from": "2021-01-01", "primary_doses": 2, "min_interval_days": 28, "min_age_years": 18},
        },
        headers=world.admin,
    )
    assert other.status_code == 201
    mixed_session = await world.session(day=localtime.today() + timedelta(days=30), product="VAXZEVRIA")
    mixed = await world.book(headers, person["id"], mixed_session)
    assert mixed.status_code == 400
    assert mixed.json()["detail"].startswith("mixing_justification: dose 2 would be VAXZEVRIA after COMIRNATY")
    justified = await world.book(
        headers, person["id"], mixed_session, mixing_justification="COMIRNATY out of stock in the district"
    )
    assert justified.status_code == 201, justified.text
    assert justified.json()["booking"]["dose_number"] == 2


async def test_a_booking_keeps_the_rule_it_was_made_under(world, monkeypatch):
    headers_a, person_a, _ = await world.vaccinated_person()
    headers_b, person_b, _ = await world.vaccinated_person()
    later = localtime.today() + timedelta(days=21)
    session_later = await world.session(day=later)
    kept = await world.book(headers_a, person_a["id"], session_later)
    assert kept.status_code == 201, kept.text

    stricter = await world.api.post(
        "/api/vaccination/products/COMIRNATY/rules",
        json={
            "effective_from": localtime.today().isoformat(),
            "primary_doses": 2,
            "min_interval_days": 56,
            "min_age_years": 12,
        },
        headers=world.admin,
    )
    assert stricter.status_code == 201, stricter.text
    refused = await world.book(headers_b, person_b["id"], session_later)
    assert refused.status_code == 400
    assert "56 days after" in refused.json()["detail"]

    # Three weeks later, at the site: person A's booking still counts under the 21-day rule.
    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now + timedelta(days=21))
    vaccinator = Principal(
        id="staff:vaccinator", kind="staff", roles=frozenset({"vaccinator"}), province=PROVINCE, site=SITE
    )
    recorded = await doses.record(
        world.platform,
        vaccinator,
        DoseBody(lot_number=LOT, screening=NO_SCREENING, booking_code=kept.json()["booking"]["code"]),
    )
    assert recorded.dose.dose_number == 2
    assert recorded.dose.administered_on == later
    walk_in = DoseBody(
        lot_number=LOT, screening=NO_SCREENING, person_id=uuid.UUID(person_b["id"]), product_code="COMIRNATY"
    )
    with pytest.raises(ValueError, match="56 days after"):
        await doses.record(world.platform, vaccinator, walk_in)


async def test_waitlist_fills_a_cancelled_place_in_priority_order(world):
    session_id = await world.session(capacity=1)
    first_headers, _ = await world.citizen()
    first = (await world.register(first_headers))["person"]
    taken = await world.book(first_headers, first["id"], session_id)
    assert taken.status_code == 201

    late_headers, _ = await world.citizen()
    late = (await world.register(late_headers, priority_group="general", full_name="Võ Văn Muộn"))["person"]
    full = await world.book(late_headers, late["id"], session_id)
    assert full.status_code == 409
    waiting = await world.book(late_headers, late["id"], session_id, join_waitlist=True)
    assert waiting.status_code == 202
    assert waiting.json()["waitlist"]["rank"] == 15
    again = await world.book(late_headers, late["id"], session_id, join_waitlist=True)
    assert again.status_code == 409

    nurse_headers, _ = await world.citizen()
    nurse = (await world.register(nurse_headers, priority_group="health_workers", full_name="Đỗ Thị Y Tá"))["person"]
    nurse_waits = await world.book(nurse_headers, nurse["id"], session_id, join_waitlist=True)
    assert nurse_waits.status_code == 202
    assert nurse_waits.json()["waitlist"]["rank"] == 1

    cancelled = await world.api.post(
        f"/api/vaccination/bookings/{taken.json()['booking']['code']}/cancel", headers=first_headers
    )
    assert cancelled.status_code == 200
    nurse_bookings = (await world.api.get("/api/vaccination/bookings", headers=nurse_headers)).json()
    assert [b["status"] for b in nurse_bookings] == ["booked"]
    assert (await world.api.get("/api/vaccination/bookings", headers=late_headers)).json() == []
    sms = await MessageOutbox.select().where(MessageOutbox.recipient == nurse["phone"]).first()
    assert nurse_bookings[0]["code"] in sms["body_en"] and "waitlist" in sms["body_en"]
    statuses = {
        row["person"]: row["status"] for row in await WaitlistEntry.select().where(WaitlistEntry.session == session_id)
    }
    assert statuses == {uuid.UUID(nurse["id"]): "booked", uuid.UUID(late["id"]): "waiting"}
    assert (await world.api.get(f"/api/vaccination/sessions/{session_id}")).json()["booked"] == 1


async def test_session_full_is_a_conflict_naming_the_session(world):
    with pytest.raises(Conflict):
        raise booking.SessionFull("session_id: the session is full")


async def test_booking_qr_code_checks_the_person_in(world):
    headers, subject = await world.citizen()
    person = (await world.register(headers))["person"]
    code = (await world.book(headers, person["id"])).json()["booking"]["code"]
    svg = await world.api.get(f"/api/vaccination/bookings/{code}/qr", headers=headers)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    stranger, _ = await world.citizen()
    assert (await world.api.get(f"/api/vaccination/bookings/{code}/qr", headers=stranger)).status_code == 403

    owner = Principal(id="citizen:x", kind="citizen", roles=frozenset({"citizen"}), subject_id=subject)
    token = await booking.qr_token(world.platform, owner, code)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    refused = await world.api.post("/api/vaccination/checkin", json={"qr": forged}, headers=world.vaccinator)
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("qr:")
    neither = await world.api.post("/api/vaccination/checkin", json={}, headers=world.vaccinator)
    assert neither.status_code == 400
    checked = await world.api.post("/api/vaccination/checkin", json={"qr": token}, headers=world.vaccinator)
    assert checked.status_code == 200, checked.text
    assert checked.json()["booking"]["code"] == code
