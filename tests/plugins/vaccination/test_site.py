"""At the site: check-in by code, recording doses against stock, refusals that store nothing,
corrections that keep the old version, merging duplicates, and adverse events."""

from __future__ import annotations

import uuid
from datetime import timedelta

from core import clock
from core.tables import AuditLog, EventOutbox
from core.testing import staff_headers
from plugins.vaccination import localtime
from plugins.vaccination.tables import Booking, Certificate, Dose, DoseRevision, Lot, LotStock
from tests.plugins.vaccination.support import LOT, NO_SCREENING, PRODUCT, PROVINCE, SITE, next_id_number


async def _stock(world) -> dict[str, int]:
    rows = (await world.api.get(f"/api/vaccination/sites/{SITE}/stock", headers=world.vaccinator)).json()
    return {row["lot_number"]: row["available"] for row in rows}


async def _lot(world, number: str, *, doses: int, expires_in_days: int = 60) -> None:
    expires = (localtime.today() + timedelta(days=expires_in_days)).isoformat()
    created = await world.api.post(
        "/api/vaccination/lots",
        json={"number": number, "product_code": PRODUCT, "expires_on": expires, "doses_per_vial": 6},
        headers=world.admin,
    )
    assert created.status_code == 201, created.text
    received = await world.api.post(
        f"/api/vaccination/sites/{SITE}/stock",
        json={"product_code": PRODUCT, "lot_number": number, "doses": doses},
        headers=world.province_admin,
    )
    assert received.status_code == 201, received.text


async def _walk_in(world, **fields) -> dict:
    response = await world.api.post(
        "/api/vaccination/people",
        json={
            "full_name": "Hoàng Văn Vãng Lai",
            "birth_date": "1970-01-01",
            "sex": "male",
            "id_number": next_id_number(),
            "province": PROVINCE,
            "priority_group": "general",
            **fields,
        },
        headers=world.vaccinator,
    )
    assert response.status_code == 201, response.text
    return response.json()["person"]


async def test_check_in_by_code_shows_who_to_expect(world):
    headers, subject = await world.citizen()
    person = (await world.register(headers))["person"]
    code = (await world.book(headers, person["id"])).json()["booking"]["code"]

    elsewhere = await staff_headers(world.platform, ["vaccinator"], province=PROVINCE, site="other-site")
    assert (await world.api.post("/api/vaccination/checkin", json={"code": code}, headers=elsewhere)).status_code == 403
    assert (
        await world.api.post("/api/vaccination/checkin", json={"code": "ZZZZ2222"}, headers=world.vaccinator)
    ).status_code == 404
    assert (
        await world.api.post("/api/vaccination/checkin", json={"code": "a"}, headers=world.vaccinator)
    ).status_code == 400

    response = await world.api.post(
        "/api/vaccination/checkin", json={"code": f"{code[:4]}-{code[4:].lower()}"}, headers=world.vaccinator
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["booking"]["status"] == "checked_in"
    assert body["person"]["id_number"] == person["id_number"]  # the vaccinator compares it with the ID card
    assert next(q["id"] for q in body["screening_questions"]) == "anaphylaxis_previous_dose"
    audit = await AuditLog.select().where((AuditLog.subject_id == subject) & (AuditLog.action == "vaccination.checkin"))
    assert len(audit) == 1

    tomorrow = await world.session(day=localtime.today() + timedelta(days=1))
    other_headers, _ = await world.citizen()
    other = (await world.register(other_headers))["person"]
    later_code = (await world.book(other_headers, other["id"], tomorrow)).json()["booking"]["code"]
    not_today = await world.api.post("/api/vaccination/checkin", json={"code": later_code}, headers=world.vaccinator)
    assert not_today.status_code == 409
    assert "not today" in not_today.json()["detail"]


async def test_recording_a_dose_uses_stock_and_issues_a_certificate(world):
    headers, person, recorded = await world.vaccinated_person()
    dose = recorded["dose"]
    assert (dose["dose_number"], dose["dose_type"], dose["lot_number"], dose["site"]) == (1, "primary", LOT, SITE)
    assert dose["administered_on"] == localtime.today().isoformat()
    assert [c["format"] for c in recorded["certificates"]] == ["eu-dcc"]
    assert recorded["certificates"][0]["content"].startswith("HC1:")
    assert (await _stock(world))[LOT] == 99

    me = (await world.api.get(f"/api/vaccination/people/{person['id']}", headers=headers)).json()
    assert me["doses_received"] == 1 and me["primary_complete"] is False
    assert me["next_due_on"] == (localtime.today() + timedelta(days=21)).isoformat()
    booking_row = await Booking.select().where(Booking.person == person["id"]).first()
    assert booking_row["status"] == "done" and booking_row["active_person"] is None
    event = await EventOutbox.select().where(EventOutbox.event == "vaccination_dose_recorded").first()
    assert event is not None

    again = await world.dose(expect=409, booking_code=booking_row["code"])
    assert again["detail"] == "booking_code: the booking is done"
    listed = (await world.api.get(f"/api/vaccination/people/{person['id']}/doses", headers=headers)).json()
    assert [d["id"] for d in listed] == [dose["id"]]


async def test_unknown_expired_or_used_up_lots_are_refused_and_nothing_is_stored(world):
    headers, _ = await world.citizen()
    person = (await world.register(headers))["person"]
    code = (await world.book(headers, person["id"])).json()["booking"]["code"]

    unknown = await world.dose(expect=400, booking_code=code, lot_number="NO-SUCH-LOT")
    assert unknown["detail"] == f"lot_number: unknown lot NO-SUCH-LOT for {PRODUCT}"

    expired_id = uuid.uuid4()
    await Lot.insert(
        Lot(
            id=expired_id,
            key=f"{PRODUCT}:EXPIRED1",
            number="EXPIRED1",
            product=PRODUCT,
            expires_on=localtime.today() - timedelta(days=1),
            doses_per_vial=6,
            created_at=clock.now(),
        )
    )
    await LotStock.insert(
        LotStock(
            id=uuid.uuid4(),
            key=f"{expired_id}:{SITE}",
            lot=expired_id,
            site=SITE,
            province=PROVINCE,
            received=10,
            used=0,
            updated_at=clock.now(),
        )
    )
    expired = await world.dose(expect=400, booking_code=code, lot_number="EXPIRED1")
    assert expired["detail"].startswith("lot_number: lot EXPIRED1 expired on")

    await _lot(world, "LAST1", doses=1)
    allergic = await world.dose(
        expect=400, booking_code=code, lot_number="LAST1", screening={**NO_SCREENING, "anaphylaxis_previous_dose": True}
    )
    assert allergic["detail"].startswith("screening.anaphylaxis_previous_dose")
    assert await Dose.count() == 0
    assert (await _stock(world))["LAST1"] == 1
    assert (await Booking.select(Booking.status).where(Booking.code == code).first())["status"] == "booked"

    first = await world.dose(booking_code=code, lot_number="LAST1")
    assert first["dose"]["lot_number"] == "LAST1"
    walk_in = await _walk_in(world)
    empty = await world.dose(expect=409, person_id=walk_in["id"], product_code=PRODUCT, lot_number="LAST1")
    assert empty["detail"] == f"lot_number: no doses of lot LAST1 left at site {SITE}; receive stock first"
    assert await Dose.count() == 1
    assert await Dose.count().where(Dose.person == walk_in["id"]) == 0


async def test_walk_in_doses_and_too_early_second_doses(world):
    person = await _walk_in(world)
    no_product = await world.dose(expect=400, person_id=person["id"])
    assert no_product["detail"].startswith("product_code: required")
    nothing = await world.dose(expect=400)
    assert nothing["detail"].startswith("booking_code:")
    first = await world.dose(person_id=person["id"], product_code=PRODUCT)
    assert first["dose"]["dose_number"] == 1
    early = await world.dose(expect=400, person_id=person["id"], product_code=PRODUCT)
    assert "too early: dose 2" in early["detail"]
    assert await Dose.count().where(Dose.person == person["id"]) == 1
    assert (await _stock(world))[LOT] == 99

    booked_headers, _ = await world.citizen()
    booked = (await world.register(booked_headers))["person"]
    code = (await world.book(booked_headers, booked["id"])).json()["booking"]["code"]
    clash = await world.dose(expect=409, person_id=booked["id"], product_code=PRODUCT)
    assert code in clash["detail"]
    site_less = await staff_headers(world.platform, ["national_admin"])
    response = await world.api.post(
        "/api/vaccination/doses",
        json={"lot_number": LOT, "screening": NO_SCREENING, "booking_code": code},
        headers=site_less,
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("site_id:")


async def test_corrections_keep_the_old_version_and_reissue_certificates(world):
    headers, person, recorded = await world.vaccinated_person()
    dose_id = recorded["dose"]["id"]
    first_certificate = recorded["certificates"][0]
    await _lot(world, "RIGHT1", doses=5)

    short = await world.api.post(
        f"/api/vaccination/doses/{dose_id}/corrections",
        json={"reason": "oops", "lot_number": "RIGHT1"},
        headers=world.vaccinator,
    )
    assert short.status_code == 400
    assert "reason" in short.text
    empty = await world.api.post(
        f"/api/vaccination/doses/{dose_id}/corrections",
        json={"reason": "nothing at all to change"},
        headers=world.vaccinator,
    )
    assert empty.status_code == 400
    elsewhere = await staff_headers(world.platform, ["vaccinator"], province=PROVINCE, site="other-site")
    foreign = await world.api.post(
        f"/api/vaccination/doses/{dose_id}/corrections",
        json={"reason": "the vial was from another lot", "lot_number": "RIGHT1"},
        headers=elsewhere,
    )
    assert foreign.status_code == 403
    citizen = await world.api.post(
        f"/api/vaccination/doses/{dose_id}/corrections",
        json={"reason": "the vial was from another lot", "lot_number": "RIGHT1"},
        headers=headers,
    )
    assert citizen.status_code == 403

    corrected = await world.api.post(
        f"/api/vaccination/doses/{dose_id}/corrections",
        json={"reason": "the vial was from another lot", "lot_number": "RIGHT1"},
        headers=world.vaccinator,
    )
    assert corrected.status_code == 201, corrected.text
    body = corrected.json()
    assert body["dose"]["version"] == 2 and body["dose"]["lot_number"] == "RIGHT1"
    assert body["certificates"][0]["id"] != first_certificate["id"]
    assert await _stock(world) == {LOT: 100, "RIGHT1": 4}

    history = await world.api.get(f"/api/vaccination/doses/{dose_id}/history", headers=world.province_admin)
    assert history.status_code == 200, history.text
    revisions = history.json()["revisions"]
    assert [(r["version"], r["snapshot"]["lot_number"], r["reason"]) for r in revisions] == [
        (1, LOT, "the vial was from another lot")
    ]
    assert (await world.api.get(f"/api/vaccination/doses/{dose_id}/history", headers=headers)).status_code == 403
    certificates = (
        await world.api.get(
            f"/api/vaccination/people/{person['id']}/certificates?include_revoked=true", headers=headers
        )
    ).json()
    assert [(c["dose_version"], c["revoked"]) for c in certificates] == [(1, True), (2, False)]
    assert certificates[0]["revocation_reason"] == "re-issued after a correction"


async def test_merging_a_duplicate_moves_and_renumbers_doses(world):
    headers, person, _recorded = await world.vaccinated_person()
    twin = await _walk_in(world, full_name=person["full_name"], birth_date=person["birth_date"])
    assert twin["duplicate_status"] == "probable"
    await world.dose(person_id=twin["id"], product_code=PRODUCT)

    merged = await world.api.post(
        f"/api/vaccination/duplicates/{twin['id']}/resolve", json={"decision": "merge"}, headers=world.province_admin
    )
    assert merged.status_code == 200, merged.text
    assert merged.json()["id"] == person["id"]
    assert merged.json()["doses_received"] == 2 and merged.json()["primary_complete"] is True
    doses = (await world.api.get(f"/api/vaccination/people/{person['id']}/doses", headers=headers)).json()
    assert [d["dose_number"] for d in doses] == [1, 2]
    assert doses[1]["version"] == 2
    assert await DoseRevision.count().where(DoseRevision.dose == doses[1]["id"]) == 1
    twin_row = (await world.api.get(f"/api/vaccination/people/{twin['id']}", headers=world.province_admin)).json()
    assert twin_row["duplicate_status"] == "merged" and twin_row["doses_received"] == 0
    live = await Certificate.select().where((Certificate.person == person["id"]) & Certificate.revoked_at.is_null())
    assert sorted(c["dose_version"] for c in live) == [1, 2]


async def test_adverse_events_are_classified_and_serious_ones_flagged(world):
    headers, _person, recorded = await world.vaccinated_person()
    dose_id = recorded["dose"]["id"]
    today = localtime.today().isoformat()
    mild = await world.api.post(
        "/api/vaccination/aefi",
        json={"dose_id": dose_id, "onset_on": today, "symptoms": "sore arm, mild fever"},
        headers=world.vaccinator,
    )
    assert mild.status_code == 201, mild.text
    assert mild.json()["serious"] is False and mild.json()["reporter_kind"] == "staff"
    serious = await world.api.post(
        "/api/vaccination/aefi",
        json={"dose_id": dose_id, "onset_on": today, "symptoms": "chest pain, admitted", "hospitalised": True},
        headers=headers,
    )
    assert serious.status_code == 201, serious.text
    assert serious.json()["serious"] is True and serious.json()["criteria"] == ["hospitalised"]
    flagged = await EventOutbox.select().where(EventOutbox.event == "vaccination_serious_aefi_reported")
    assert len(flagged) == 1 and flagged[0]["province"] == PROVINCE

    stranger, _ = await world.citizen()
    foreign = await world.api.post(
        "/api/vaccination/aefi", json={"dose_id": dose_id, "onset_on": today, "symptoms": "made up"}, headers=stranger
    )
    assert foreign.status_code == 403
    before_dose = await world.api.post(
        "/api/vaccination/aefi",
        json={"dose_id": dose_id, "onset_on": "2021-01-01", "symptoms": "before the dose"},
        headers=headers,
    )
    assert before_dose.status_code == 400
    assert before_dose.json()["detail"].startswith("onset_on:")

    listed = (await world.api.get("/api/vaccination/aefi?serious=true", headers=world.province_admin)).json()
    assert [r["id"] for r in listed] == [serious.json()["id"]]
    assert len((await world.api.get("/api/vaccination/aefi", headers=world.province_admin)).json()) == 2
    elsewhere = await staff_headers(world.platform, ["epidemiologist"], province="79")
    assert (await world.api.get("/api/vaccination/aefi", headers=elsewhere)).json() == []
    assert (await world.api.get("/api/vaccination/aefi", headers=headers)).status_code == 403
