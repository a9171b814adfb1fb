"""Sites, labs, test types, labels and sample registration at collection."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import segno

from core import hookimpl
from core.tables import AuditLog
from plugins.testing.catalogue import TestType
from plugins.testing.identifiers import ALPHABET, LABEL_DIGITS, new_label, normalize_code, parse_label
from plugins.testing.tables import Person, Sample
from tests.plugins.testing.conftest import DN, HN, PERSON, SITE, SITE_DN

LABEL = re.compile(rf"^S-[{ALPHABET}]{{{LABEL_DIGITS}}}$")


async def test_sites_and_labs_are_listed_per_province(world):
    sites = (await world.client.get("/api/testing/sites", params={"province": HN})).json()
    assert {s["code"] for s in sites} == {"clinic-hn-1", "clinic-hn-2"}
    assert all(s["pool_size_max"] == 10 for s in sites)
    labs = (await world.client.get("/api/testing/labs", params={"province": DN})).json()
    assert [lab["code"] for lab in labs] == ["lab-dn-1"]


async def test_site_management_is_checked(world, platform):
    body = {"code": SITE, "name": "Again", "province": HN}
    assert (await world.client.post("/api/testing/sites", json=body, headers=world.admin)).status_code == 409
    body = {"code": "x-1", "name": "Nowhere", "province": "99"}
    bad = await world.client.post("/api/testing/sites", json=body, headers=world.admin)
    assert bad.status_code == 400 and "province" in bad.json()["detail"]
    from core.testing import staff_headers

    dn_admin = await staff_headers(platform, ["province_admin"], province=DN)
    body = {"code": "hn-9", "name": "Hanoi site", "province": HN}
    assert (await world.client.post("/api/testing/sites", json=body, headers=dn_admin)).status_code == 403
    assert (await world.client.post("/api/testing/sites", json=body, headers=world.collector)).status_code == 403
    changed = await world.client.patch(f"/api/testing/sites/{SITE}", json={"pool_size_max": 5}, headers=world.admin)
    assert changed.status_code == 200 and changed.json()["pool_size_max"] == 5
    too_big = await world.client.patch(f"/api/testing/sites/{SITE}", json={"pool_size_max": 51}, headers=world.admin)
    assert too_big.status_code == 400 and "pool_size_max" in too_big.text


async def test_test_types_carry_their_loinc_codes(world):
    types = {t["code"]: t for t in (await world.client.get("/api/testing/test-types")).json()}
    assert types["rt-pcr"]["loinc"] == "94500-6" and types["rt-pcr"]["poolable"] is True
    assert types["rapid-antigen"]["loinc"] == "94558-4" and types["rapid-antigen"]["poolable"] is False


class SalivaPcr:
    """A plugin that adds a test type through the testing plugin's own hook."""

    @hookimpl
    def testing_register_test_types(self):
        return [
            TestType(
                code="saliva-pcr",
                loinc="94845-5",
                name_vi="RT-PCR nước bọt",
                name_en="Saliva RT-PCR",
                method="naat",
                poolable=True,
                dcc_type="LP6464-4",
            )
        ]


async def test_plugins_add_test_types(make_world):
    world = await make_world(extra_plugins=[("saliva", SalivaPcr())])
    codes = {t["code"] for t in (await world.client.get("/api/testing/test-types")).json()}
    assert codes == {"rt-pcr", "rapid-antigen", "saliva-pcr"}
    receipt = await world.register(test_type="saliva-pcr")
    assert receipt["test_type"] == "saliva-pcr"


async def test_walk_in_registration_issues_label_and_receipt(world, platform):
    receipt = await world.register(person=PERSON, symptom_onset="2021-08-01", collected_at=_iso(minutes=-5))
    assert LABEL.match(receipt["sample_id"])
    assert normalize_code(receipt["result_code"]) is not None
    assert receipt["lookup_url"].startswith("http://127.0.0.1:8000/testing/result?code=")
    assert receipt["full_name"] == "Nguyễn Văn An"
    assert "<svg" in receipt["receipt_svg"] and receipt["result_code"] in receipt["receipt_svg"]
    row = await Sample.select().where(Sample.id == receipt["sample_id"]).first()
    assert row["site"] == SITE and row["province"] == HN and row["status"] == "collected"
    # Only a keyed digest of the result code is stored.
    assert receipt["result_code"].replace("-", "") not in str(row)
    person = await Person.select().where(Person.id == row["person"]).first()
    assert person["phone"] == "+84912345678" and person["id_number"] == "001090012345"
    audited = await AuditLog.select().where(AuditLog.resource_id == receipt["sample_id"])
    assert [a["action"] for a in audited] == ["testing.sample.create"]


async def test_staff_read_a_sample_and_it_is_audited(world):
    receipt = await world.register(person=PERSON)
    sample = await world.client.get(f"/api/testing/samples/{receipt['sample_id']}", headers=world.epi)
    assert sample.status_code == 200, sample.text
    body = sample.json()
    assert body["person"]["full_name"] == "Nguyễn Văn An" and body["person"]["date_of_birth"] == "1990-04-12"
    assert [step["step"] for step in body["timeline"]] == ["collected"]
    # Another province's epidemiologist and another site's collector may not read it.
    assert (
        await world.client.get(f"/api/testing/samples/{receipt['sample_id']}", headers=world.epi_dn)
    ).status_code == 403
    other_site = await world.client.get(f"/api/testing/samples/{receipt['sample_id']}", headers=world.collector_b)
    assert other_site.status_code == 403
    # A lab that has not received it may not read it either.
    assert (
        await world.client.get(f"/api/testing/samples/{receipt['sample_id']}", headers=world.lab)
    ).status_code == 403
    reads = await AuditLog.select().where(
        (AuditLog.resource_id == receipt["sample_id"]) & (AuditLog.action == "testing.sample.read")
    )
    assert len(reads) == 1 and reads[0]["subject_id"] is not None


async def test_sample_lists_are_filtered_by_scope(world):
    ours = await world.register()
    theirs = await world.register(headers=world.collector_b)
    dn = await world.register(headers=world.collector_dn)
    listed = {s["id"] for s in (await world.client.get("/api/testing/samples", headers=world.collector)).json()}
    assert listed == {ours["sample_id"]}
    listed = {s["id"] for s in (await world.client.get("/api/testing/samples", headers=world.epi)).json()}
    assert listed == {ours["sample_id"], theirs["sample_id"]}
    listed = {s["id"] for s in (await world.client.get("/api/testing/samples", headers=world.admin)).json()}
    assert listed == {ours["sample_id"], theirs["sample_id"], dn["sample_id"]}
    assert (await world.client.get("/api/testing/samples", headers=world.lab)).json() == []


async def test_labels_have_128_random_bits():
    labels = {new_label("sample") for _ in range(2000)}
    assert len(labels) == 2000
    values = [_decode(label[2:]) for label in labels]
    assert all(value < 2**128 for value in values)
    # Every one of the 128 bit positions varies across labels.
    for bit in range(128):
        assert len({(value >> bit) & 1 for value in values}) == 2
    assert parse_label(" s-" + next(iter(labels))[2:].lower() + " ")[1] in labels


async def test_label_print_is_a_qr_of_the_label(world):
    receipt = await world.register()
    response = await world.client.get(f"/api/testing/samples/{receipt['sample_id']}/label", headers=world.collector)
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    expected_path = segno.make(receipt["sample_id"], error="m").svg_inline(scale=3, border=1).split(' d="')[1][:80]
    assert expected_path in response.text
    assert "Nguy" not in response.text  # no personal data on the tube


async def test_citizen_pre_registration_is_redeemed_once(world):
    headers, citizen_id = await world.citizen("0987654321")
    registered = await world.client.post(
        "/api/testing/registrations",
        json={"full_name": "Lê Thị Cúc", "date_of_birth": "2001-02-03"},
        headers=headers,
    )
    assert registered.status_code == 201, registered.text
    code = registered.json()["code"]
    receipt = await world.register(registration_code=code.lower())
    assert receipt["full_name"] == "Lê Thị Cúc"
    row = (
        await Sample.select(Sample.person.citizen_id, Sample.person.phone)
        .where(Sample.id == receipt["sample_id"])
        .first()
    )
    assert row == {"person.citizen_id": citizen_id, "person.phone": "+84987654321"}
    again = await world.client.post("/api/testing/samples", json={"registration_code": code}, headers=world.collector)
    assert again.status_code == 404 and "registration_code" in again.json()["detail"]


async def test_registration_bad_input_gets_clear_4xx(world):
    post = world.client.post
    url = "/api/testing/samples"
    neither = await post(url, json={}, headers=world.collector)
    assert neither.status_code == 400 and "person" in neither.json()["detail"]
    both = await post(url, json={"person": PERSON, "registration_code": "AAAA-BBBB-CCCC"}, headers=world.collector)
    assert both.status_code == 400
    unknown_type = await post(url, json={"person": PERSON, "test_type": "smell-test"}, headers=world.collector)
    assert unknown_type.status_code == 400 and "test_type" in unknown_type.json()["detail"]
    bad_phone = await post(url, json={"person": {**PERSON, "phone": "12345"}}, headers=world.collector)
    assert bad_phone.status_code == 400 and "phone" in bad_phone.text
    formula = await post(url, json={"person": {**PERSON, "full_name": "=HYPERLINK(1)"}}, headers=world.collector)
    assert formula.status_code == 400 and "full_name" in formula.text
    future = await post(url, json={"person": PERSON, "collected_at": _iso(minutes=60)}, headers=world.collector)
    assert future.status_code == 400 and "collected_at" in future.json()["detail"]
    naive = await post(url, json={"person": PERSON, "collected_at": "2021-08-12T09:30:00"}, headers=world.collector)
    assert naive.status_code == 400
    unborn = await post(url, json={"person": {**PERSON, "date_of_birth": "2999-01-01"}}, headers=world.collector)
    assert unborn.status_code == 400 and "date_of_birth" in unborn.json()["detail"]
    other_site = await post(url, json={"person": PERSON, "site": SITE_DN}, headers=world.collector)
    assert other_site.status_code == 403
    no_site = await post(url, json={"person": PERSON, "site": "nowhere"}, headers=world.admin)
    assert no_site.status_code == 404 and "site" in no_site.json()["detail"]
    unknown_field = await post(url, json={"person": PERSON, "colour": "red"}, headers=world.collector)
    assert unknown_field.status_code == 400
    assert await Sample.count() == 0


async def test_pre_printed_labels_are_used_once(world):
    issued = await world.client.post(
        "/api/testing/labels", json={"kind": "sample", "count": 3}, headers=world.collector
    )
    assert issued.status_code == 201, issued.text
    labels = issued.json()["labels"]
    assert len(labels) == 3 and all(LABEL.match(label) for label in labels)
    receipt = await world.register(label=labels[0])
    assert receipt["sample_id"] == labels[0]
    used = await world.client.post(
        "/api/testing/samples", json={"person": PERSON, "label": labels[0]}, headers=world.collector
    )
    assert used.status_code == 409 and "already used" in used.json()["detail"]
    never_issued = await world.client.post(
        "/api/testing/samples", json={"person": PERSON, "label": new_label("sample")}, headers=world.collector
    )
    assert never_issued.status_code == 404 and "not issued" in never_issued.json()["detail"]
    malformed = await world.client.post(
        "/api/testing/samples", json={"person": PERSON, "label": "S-123"}, headers=world.collector
    )
    assert malformed.status_code == 400 and "label" in malformed.json()["detail"]
    pool_label = await world.client.post(
        "/api/testing/samples", json={"person": PERSON, "label": new_label("pool")}, headers=world.collector
    )
    assert pool_label.status_code == 400
    other_site = await world.client.post(
        "/api/testing/samples", json={"person": PERSON, "label": labels[1]}, headers=world.collector_b
    )
    assert other_site.status_code == 409
    assert await Sample.count() == 1


async def test_same_id_number_is_one_person(world):
    first = await world.register(person=PERSON)
    second = await world.register(person={**PERSON, "phone": "0911111111"})
    rows = await Sample.select(Sample.person).where(Sample.id.is_in([first["sample_id"], second["sample_id"]]))
    assert len({row["person"] for row in rows}) == 1
    person = await Person.select().first()
    assert person["phone"] == "+84911111111"  # the newest phone wins


def _iso(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def _decode(digits: str) -> int:
    value = 0
    for char in digits:
        value = value * 32 + ALPHABET.index(char)
    return value


async def test_demo_data_is_loaded_once(platform):
    from plugins.testing.demo import load_demo_data
    from plugins.testing.tables import CaseReport, CollectionSite, Lab

    await load_demo_data(platform)
    await load_demo_data(platform)
    assert sorted(r["code"] for r in await CollectionSite.select(CollectionSite.code)) == [
        "clinic-dn-1",
        "clinic-hcm-1",
        "clinic-hn-1",
    ]
    assert await Lab.count() == 3
    assert await Sample.count() == 18
    assert await Sample.count().where(Sample.status == "resulted") == 18
    assert await CaseReport.count() == 3


async def test_openapi_documents_the_testing_api(client):
    schema = (await client.get("/schema/openapi.json")).json()
    paths = [path for path in schema["paths"] if path.startswith("/api/testing/")]
    assert "/api/testing/lab/uploads/csv" in paths and "/api/testing/lookup" in paths
    assert len(paths) >= 25
