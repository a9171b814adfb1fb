"""Public figures (doses per day, province and product; coverage; stock), the FHIR R4 export for
staff, and bulk registration from CSV with a per-row report that stores nothing on error."""

from __future__ import annotations

import uuid
from datetime import timedelta

from core import clock
from core.tables import AuditLog
from core.testing import device_headers, staff_headers
from plugins.vaccination import localtime
from plugins.vaccination.tables import Lot, LotStock, Person
from tests.plugins.vaccination.support import LOT, PRODUCT, PROVINCE, SITE, next_id_number


async def _two_vaccinated_and_one_registered(world):
    first = await world.vaccinated_person()
    headers, _ = await world.citizen()
    elder = (
        await world.register(
            headers, full_name="Bà Cụ Tám", birth_date="1950-02-03", priority_group="elderly", sex="female"
        )
    )["person"]
    code = (await world.book(headers, elder["id"])).json()["booking"]["code"]
    await world.dose(booking_code=code)
    other_headers, _ = await world.citizen()
    await world.register(other_headers, full_name="Lý Văn Chờ", priority_group="general")
    return first, elder


async def test_public_figures_count_doses_without_personal_data(world):
    await _two_vaccinated_and_one_registered(world)
    today = localtime.today().isoformat()
    by_day = await world.api.get("/api/vaccination/figures/doses")
    assert by_day.status_code == 200
    assert by_day.json() == {"by": "day", "rows": [{"key": today, "doses": 2}], "total": 2}
    assert (await world.api.get("/api/vaccination/figures/doses?by=province")).json()["rows"] == [
        {"key": "01", "doses": 2}
    ]
    assert (await world.api.get("/api/vaccination/figures/doses?by=product")).json()["rows"] == [
        {"key": PRODUCT, "doses": 2}
    ]
    assert (await world.api.get("/api/vaccination/figures/doses?province=79")).json()["total"] == 0
    yesterday = (localtime.today() - timedelta(days=1)).isoformat()
    assert (await world.api.get(f"/api/vaccination/figures/doses?until={yesterday}")).json()["total"] == 0
    assert (await world.api.get("/api/vaccination/figures/doses?by=person")).status_code == 400

    by_age = (await world.api.get("/api/vaccination/figures/coverage")).json()["rows"]
    adults = next(r for r in by_age if r["key"] == "18-49")
    elders = next(r for r in by_age if r["key"] == "65+")
    assert (adults["registered"], adults["at_least_one_dose"], adults["primary_complete"]) == (2, 1, 0)
    assert (elders["registered"], elders["at_least_one_dose"]) == (1, 1)
    by_group = {
        r["key"]: r for r in (await world.api.get("/api/vaccination/figures/coverage?by=priority_group")).json()["rows"]
    }
    assert by_group["elderly"]["at_least_one_dose"] == 1
    assert by_group["general"] == {
        "key": "general",
        "registered": 1,
        "at_least_one_dose": 0,
        "primary_complete": 0,
        "boosted": 0,
    }
    everything = by_day.text + str(by_age) + str(by_group)
    assert "Nguyễn" not in everything and "Tám" not in everything


async def test_stock_figures_per_province_and_product(world):
    await world.vaccinated_person()
    expired_id = uuid.uuid4()
    await Lot.insert(
        Lot(
            id=expired_id,
            key=f"{PRODUCT}:OLD",
            number="OLD",
            product=PRODUCT,
            expires_on=localtime.today() - timedelta(days=3),
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
            received=30,
            used=12,
            updated_at=clock.now(),
        )
    )
    rows = (await world.api.get("/api/vaccination/figures/stock")).json()["rows"]
    assert rows == [
        {"province": "01", "product": PRODUCT, "received": 130, "used": 13, "available": 99, "expired_unused": 18}
    ]
    assert (await world.api.get("/api/vaccination/figures/stock?province=79")).json()["rows"] == []


async def test_fhir_export_is_scoped_and_audited(world):
    (headers, person, recorded), _elder = await _two_vaccinated_and_one_registered(world)
    response = await world.api.get("/api/vaccination/export/fhir", headers=world.province_admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    resources = [e["resource"] for e in bundle["entry"]]
    patients = {r["id"]: r for r in resources if r["resourceType"] == "Patient"}
    immunizations = [r for r in resources if r["resourceType"] == "Immunization"]
    assert len(patients) == 2 and len(immunizations) == 2
    mine = next(i for i in immunizations if i["id"] == recorded["dose"]["id"])
    assert mine["status"] == "completed"
    assert mine["patient"]["reference"] == f"urn:uuid:{person['id']}"
    assert mine["vaccineCode"]["coding"] == [{"system": "http://snomed.info/sct", "code": "1119349007"}]
    assert mine["lotNumber"] == LOT
    assert mine["protocolApplied"][0]["doseNumberPositiveInt"] == 1
    assert mine["protocolApplied"][0]["targetDisease"][0]["coding"][0]["code"] == "840539006"
    assert patients[person["id"]]["birthDate"] == person["birth_date"]
    assert patients[person["id"]]["identifier"][0]["value"] == person["id_number"]
    entry_urls = {e["fullUrl"] for e in bundle["entry"]}
    assert mine["patient"]["reference"] in entry_urls
    exported = await AuditLog.select(AuditLog.resource_id).where(AuditLog.action == "vaccination.export.fhir")
    assert sorted(r["resource_id"] for r in exported) == sorted(patients)

    elsewhere = await staff_headers(world.platform, ["epidemiologist"], province="79")
    assert (await world.api.get("/api/vaccination/export/fhir", headers=elsewhere)).json()["entry"] == []
    assert (await world.api.get("/api/vaccination/export/fhir", headers=headers)).status_code == 403
    assert (await world.api.get("/api/vaccination/export/fhir")).status_code == 401


CSV_HEADER = "full_name,birth_date,sex,id_number,phone,province,priority_group\n"


def _csv(*rows: str) -> bytes:
    return (CSV_HEADER + "".join(row + "\n" for row in rows)).encode()


async def _upload(world, body: bytes, headers, query: str = ""):
    return await world.api.post(
        f"/api/vaccination/people/bulk{query}", content=body, headers={**headers, "Content-Type": "text/csv"}
    )


async def test_bulk_registration_stores_every_row_or_none(world):
    taken = next_id_number()
    headers, _ = await world.citizen()
    await world.register(headers, id_number=taken, full_name="Đặng Văn Có", birth_date="1985-01-01")
    before = await Person.count()
    bad = _csv(
        f"Trần Thị Một,1990-01-01,female,{next_id_number()},0912000001,01,industrial_workers",
        f"Trần Thị Hai,1990-13-01,female,{next_id_number()},,01,industrial_workers",
        "Trần Thị Ba,1990-01-03,female,12345,,01,industrial_workers",
        f"Trần Thị Bốn,1990-01-04,female,{next_id_number()},,01,astronauts",
        f"Trần Thị Năm,1990-01-05,robot,{next_id_number()},abc,79,general",
    )
    response = await _upload(world, bad, world.province_admin)
    assert response.status_code == 422, response.text
    report = response.json()
    assert report["stored"] is False and report["rows"] == 5
    assert [(e["row"], e["field"]) for e in report["errors"]] == [
        (3, "birth_date"),
        (4, "id_number"),
        (5, "priority_group"),
        (6, "sex"),
        (6, "phone"),
        (6, "province"),
    ]
    assert "01 only" in report["errors"][-1]["message"]
    assert await Person.count() == before

    csv_report = await _upload(world, bad, world.province_admin, "?report=csv")
    assert csv_report.status_code == 422
    assert csv_report.headers["content-type"].startswith("text/csv")
    assert csv_report.content.startswith("\ufeffrow,outcome,person_id,field,message\r\n".encode())

    good = _csv(
        f"Trần Thị Một,1990-01-01,female,{next_id_number()},0912000001,01,industrial_workers",
        f"Đặng Văn Có,1985-01-01,male,{next_id_number()},,01,industrial_workers",
        f"Đặng Văn Có,1985-01-01,male,{taken},,01,industrial_workers",
    )
    dry = await _upload(world, good, world.province_admin, "?dry_run=true")
    assert dry.status_code == 200 and dry.json()["stored"] is False
    assert await Person.count() == before
    stored = await _upload(world, good, world.province_admin)
    assert stored.status_code == 201, stored.text
    result = stored.json()
    assert (result["created"], result["probable_duplicates"], result["existing"]) == (1, 1, 1)
    assert [r["outcome"] for r in result["results"]] == ["created", "probable_duplicate", "existing"]
    assert await Person.count() == before + 2


async def test_bulk_registration_input_errors(world):
    registrar = await device_headers(
        world.platform, province=PROVINCE, site="company-1", roles=["vaccination_registrar"]
    )
    ok = await _upload(world, _csv(f"Công Nhân A,1995-05-05,male,{next_id_number()},,01,industrial_workers"), registrar)
    assert ok.status_code == 201, ok.text
    assert (await _upload(world, b"\xff\xfe\x00bad", registrar)).status_code == 400
    missing = await _upload(world, b"full_name,birth_date\nA,2000-01-01\n", registrar)
    assert missing.status_code == 400
    assert missing.json()["detail"].startswith("file: the header lacks column(s) sex, id_number")
    assert (await _upload(world, CSV_HEADER.encode(), registrar)).status_code == 400
    duplicate_id = next_id_number()
    twice = await _upload(
        world,
        _csv(f"A B,1990-01-01,male,{duplicate_id},,01,general", f"C D,1990-01-02,male,{duplicate_id},,01,general"),
        registrar,
    )
    assert twice.status_code == 422
    assert twice.json()["errors"] == [{"row": 3, "field": "id_number", "message": "the same ID number is on row 2"}]
    headers, _ = await world.citizen()
    assert (await _upload(world, _csv(), headers)).status_code == 403
