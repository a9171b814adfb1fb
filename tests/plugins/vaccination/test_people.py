"""People: registration by citizens (self and up to 4 dependants) and by staff, one person per ID
number, and Vietnamese-aware probable-duplicate flags that staff resolve."""

from __future__ import annotations

import unicodedata

from core.tables import AuditLog
from core.testing import staff_headers
from plugins.vaccination import people
from plugins.vaccination.tables import Person
from tests.plugins.vaccination.support import PROVINCE, next_id_number, next_phone


def test_names_compare_without_case_diacritics_or_spacing():
    composed = "Nguyễn Văn Đức"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert people.name_key(composed) == people.name_key(decomposed) == "nguyen van duc"
    assert people.name_key("  NGUYỄN   văn  đức ") == "nguyen van duc"
    assert people.name_key("Nguyen Van Duc") == "nguyen van duc"
    assert (
        people.name_key("Nguyễn Văn Đúc") == "nguyen van duc"
    )  # a different tone mark still matches: flagged, not merged
    assert people.name_key("Nguyễn Văn Dũng") != people.name_key("Nguyễn Văn Đức")
    assert people.clean_name("  Trần   Thị\u00a0Bích ") == "Trần Thị Bích"
    assert people.split_name("Nguyễn Văn An") == ("Nguyễn", "Văn An")


def test_id_numbers_are_normalised_and_checked():
    assert people.normalise_id_number("001 080 012 345") == "001080012345"
    assert people.normalise_id_number("012.345.678") == "012345678"
    assert people.normalise_id_number("b1234567") == "B1234567"
    for bad in ("12345678901", "1234", "0010800123456789"):
        try:
            people.normalise_id_number(bad)
        except ValueError as exc:
            assert str(exc).startswith("id_number:")
        else:
            raise AssertionError(f"{bad} was accepted")


async def test_citizen_registers_self_and_up_to_four_dependants(world):
    headers, subject = await world.citizen()
    me = await world.register(headers, expect=201)
    assert me["outcome"] == "created"
    assert me["person"]["account_holder"] is True
    assert me["person"]["channel"] == "self"
    assert me["person"]["phone"].startswith("+84")  # the account's phone, for reminders

    second_self = await world.register(headers, expect=409, full_name="Lê Thị Hoa")
    assert second_self["detail"].startswith("relationship:")

    for index in range(4):
        child = await world.register(
            headers,
            expect=201,
            relationship="dependant",
            full_name=f"Nguyễn Thị Con {index}",
            birth_date="2010-01-0" + str(index + 1),
        )
        assert child["person"]["channel"] == "dependant"
    fifth = await world.register(headers, expect=409, relationship="dependant", full_name="Nguyễn Văn Năm")
    assert fifth["detail"] == "relationship: one account can register at most 4 dependants"
    assert await Person.count().where(Person.subject_id == subject) == 5

    listed = (await world.api.get("/api/vaccination/people", headers=headers)).json()
    assert len(listed) == 5
    other, _ = await world.citizen()
    assert (await world.api.get("/api/vaccination/people", headers=other)).json() == []
    assert (await world.api.get(f"/api/vaccination/people/{me['person']['id']}", headers=other)).status_code == 403


async def test_same_id_number_is_one_person(world):
    headers, _ = await world.citizen()
    id_number = next_id_number()
    first = await world.register(headers, expect=201, id_number=id_number)
    spaced = " ".join([id_number[:3], id_number[3:6], id_number[6:]])
    again = await world.register(headers, expect=200, id_number=spaced)
    assert again["outcome"] == "existing"
    assert again["person"]["id"] == first["person"]["id"]

    stranger, _ = await world.citizen()
    before = await Person.count()
    taken = await world.register(stranger, expect=409, id_number=id_number, full_name="Kẻ Mạo Danh")
    assert taken["detail"].startswith("id_number:")
    assert await Person.count() == before

    walk_in = await world.api.post(
        "/api/vaccination/people",
        json={
            "full_name": "Nguyễn Văn An",
            "birth_date": "1980-05-17",
            "sex": "male",
            "id_number": id_number,
            "province": PROVINCE,
            "priority_group": "general",
        },
        headers=world.vaccinator,
    )
    assert walk_in.status_code == 200
    assert walk_in.json()["person"]["id"] == first["person"]["id"]


async def test_same_name_and_birth_date_is_flagged_not_merged(world):
    first_headers, _ = await world.citizen()
    second_headers, _ = await world.citizen()
    original = await world.register(first_headers, expect=201, full_name="Nguyễn Văn Đức", birth_date="1975-03-02")
    twin = await world.register(
        second_headers,
        expect=201,
        full_name=unicodedata.normalize("NFD", "  NGUYỄN  văn đức "),
        birth_date="1975-03-02",
    )
    assert twin["outcome"] == "probable_duplicate"
    assert twin["person"]["duplicate_status"] == "probable"
    assert twin["person"]["duplicate_of"] == original["person"]["id"]
    assert twin["person"]["full_name"] == "NGUYỄN văn đức"  # stored as written (NFC, single spaces)
    other_day = await world.register(
        second_headers, expect=201, relationship="dependant", full_name="Nguyễn Văn Đức", birth_date="1975-03-03"
    )
    assert other_day["outcome"] == "created"

    duplicates = (await world.api.get("/api/vaccination/duplicates", headers=world.province_admin)).json()
    assert [(d["person"]["id"], d["probable_duplicate_of"]["id"]) for d in duplicates] == [
        (twin["person"]["id"], original["person"]["id"])
    ]
    elsewhere = await staff_headers(world.platform, ["province_admin"], province="79")
    assert (await world.api.get("/api/vaccination/duplicates", headers=elsewhere)).json() == []
    assert (await world.api.get("/api/vaccination/duplicates", headers=first_headers)).status_code == 403

    distinct = await world.api.post(
        f"/api/vaccination/duplicates/{twin['person']['id']}/resolve",
        json={"decision": "distinct"},
        headers=world.province_admin,
    )
    assert distinct.status_code == 200, distinct.text
    assert distinct.json()["duplicate_status"] == "distinct"
    assert (await world.api.get("/api/vaccination/duplicates", headers=world.province_admin)).json() == []
    again = await world.api.post(
        f"/api/vaccination/duplicates/{twin['person']['id']}/resolve",
        json={"decision": "merge"},
        headers=world.province_admin,
    )
    assert again.status_code == 409


async def test_staff_registration_is_claimed_by_the_phone_owner(world):
    phone = next_phone()
    id_number = next_id_number()
    walk_in = await world.api.post(
        "/api/vaccination/people",
        json={
            "full_name": "Phạm Thị Lan",
            "birth_date": "1950-08-09",
            "sex": "female",
            "id_number": id_number,
            "province": PROVINCE,
            "priority_group": "elderly",
            "phone": phone,
        },
        headers=world.vaccinator,
    )
    assert walk_in.status_code == 201, walk_in.text
    assert walk_in.json()["person"]["channel"] == "walk_in"
    person_id = walk_in.json()["person"]["id"]

    stranger, _ = await world.citizen()
    assert (await world.register(stranger, expect=409, id_number=id_number))["detail"].startswith("id_number:")

    owner, subject = await world.citizen(phone)
    claimed = await world.register(owner, expect=200, id_number=id_number, full_name="Phạm Thị Lan")
    assert claimed["person"]["id"] == person_id
    assert claimed["outcome"] == "existing"
    row = await Person.select(Person.subject_id).where(Person.id == person_id).first()
    assert row["subject_id"] == subject
    assert (await world.api.get(f"/api/vaccination/people/{person_id}", headers=owner)).status_code == 200


async def test_staff_reads_are_audited_for_the_person(world):
    headers, subject = await world.citizen()
    person = (await world.register(headers))["person"]
    before = await AuditLog.count().where(AuditLog.subject_id == subject)
    assert (await world.api.get(f"/api/vaccination/people/{person['id']}", headers=headers)).status_code == 200
    assert await AuditLog.count().where(AuditLog.subject_id == subject) == before  # reading one's own: not audited
    read = await world.api.get(f"/api/vaccination/people/{person['id']}", headers=world.province_admin)
    assert read.status_code == 200
    log = (await world.api.get("/api/me/access-log", headers=headers)).json()
    assert log[0]["action"] == "vaccination.person.read"
    assert log[0]["resource_id"] == person["id"]
    elsewhere = await staff_headers(world.platform, ["province_admin"], province="79")
    assert (await world.api.get(f"/api/vaccination/people/{person['id']}", headers=elsewhere)).status_code == 403


async def test_bad_registration_input_names_the_field(world):
    headers, _ = await world.citizen()
    cases = [
        ({"id_number": "12345678901"}, "id_number"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"priority_group": "astronauts"}, "priority_group"),
        ({"province": "99"}, "province"),
        ({"phone": "12345"}, "phone"),
        ({"full_name": "1234"}, "full_name"),
        ({"sex": "x"}, "sex"),
        ({"relationship": "cousin"}, "relationship"),
        ({"unexpected": 1}, "unexpected"),
    ]
    before = await Person.count()
    for fields, name in cases:
        response = await world.register(headers, expect=400, **fields)
        assert name in str(response), (fields, response)
    assert await Person.count() == before


async def test_concurrent_dependant_registrations_respect_the_limit(world):
    import asyncio

    headers, subject = await world.citizen()
    body = {"birth_date": "2012-06-01", "sex": "female", "province": PROVINCE, "priority_group": "general"}
    responses = await asyncio.gather(
        *(
            world.api.post(
                "/api/vaccination/people",
                json={
                    **body,
                    "full_name": f"Con Thứ {index}",
                    "id_number": next_id_number(),
                    "relationship": "dependant",
                },
                headers=headers,
            )
            for index in range(8)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] * 4 + [409] * 4
    assert await Person.count().where(Person.subject_id == subject) == 4
