"""Bulk results: CSV uploads and FHIR R4 Bundles, all stored or none with a per-row report."""

from __future__ import annotations

import json
import uuid

from core.tables import AuditLog
from plugins.testing.fhir import LOINC, SAMPLE_SYSTEM, SNOMED
from plugins.testing.identifiers import new_label
from plugins.testing.tables import ResultVersion, Sample
from tests.plugins.testing.conftest import HN, LAB

CSV_URL = "/api/testing/lab/uploads/csv"
FHIR_URL = "/api/testing/lab/uploads/fhir"


async def _at_lab(world, count, **body):
    labels = [(await world.register(**body))["sample_id"] for _ in range(count)]
    assert (await world.receive(labels)).status_code == 201
    return labels


async def _upload(world, text, headers=None, *, encoding="utf-8", url=CSV_URL, **params):
    raw = text.encode(encoding) if isinstance(text, str) else text
    return await world.client.post(
        url, content=raw, headers={**(headers or world.lab), "Content-Type": "text/csv"}, params=params
    )


def _errors(response):
    assert response.status_code == 400, response.text
    return [(e["row"], e["column"]) for e in response.json()["errors"]]


async def test_csv_upload_stores_every_result(world):
    single = await _at_lab(world, 3)
    members = [(await world.register())["sample_id"] for _ in range(2)]
    pool = await world.pool(members)
    await world.receive([pool["id"]])
    csv_text = (
        "\ufefflabel,outcome,ct_value\r\n"
        f"{pool['id']},negative,\r\n"
        f"{single[0]},positive,21.5\r\n"
        f"{single[1].lower()},âm tính,\r\n"
        f'{single[2]},invalid,""\r\n'
        "\r\n"
    )
    response = await _upload(world, csv_text)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["entries"] == 4 and sorted(body["released"]) == sorted([*members, *single])
    assert body["reported_positive"] == [single[0]]
    results = {r["id"]: r["result"] for r in await Sample.select(Sample.id, Sample.result)}
    assert results == {
        single[0]: "positive",
        single[1]: "negative",
        single[2]: "invalid",
        members[0]: "negative",
        members[1]: "negative",
    }
    ct = await ResultVersion.select(ResultVersion.ct_value).where(ResultVersion.sample == single[0]).first()
    assert ct["ct_value"] == 21.5


async def test_csv_reports_every_bad_row_and_stores_nothing(world):
    labels = await _at_lab(world, 4)
    waiting = (await world.register())["sample_id"]
    csv_text = "\n".join(
        [
            "label,outcome,ct_value",
            f"{labels[0]},negative,",  # row 2: fine
            '"=HYPERLINK(""http://evil"",""x"")",negative,',  # row 3: formula
            f"{labels[1]},maybe,",  # row 4: bad outcome
            f"{labels[2]},positive,99",  # row 5: Ct out of range
            f"{labels[0]},positive,",  # row 6: duplicate of row 2
            f"{new_label('sample')},negative,",  # row 7: unknown label
            f"{waiting},negative,",  # row 8: never received
            f"{labels[3]},negative",  # row 9: too few cells
            "@SUM(A1),negative,",  # row 10: formula
            f"{labels[3]},+1,",  # row 11: formula in outcome
        ]
    )
    response = await _upload(world, csv_text)
    assert _errors(response) == [
        (3, "label"),
        (4, "outcome"),
        (5, "ct_value"),
        (6, "label"),
        (7, "label"),
        (8, "label"),
        (9, None),
        (10, "label"),
        (11, "outcome"),
    ]
    messages = {e["row"]: e["message"] for e in response.json()["errors"]}
    assert "formula" in messages[3] and "already on row 2" in messages[6]
    assert "no sample" in messages[7] and "not been received" in messages[8]
    assert "nothing was stored" in response.json()["detail"]
    assert await ResultVersion.count() == 0
    assert await Sample.count().where(Sample.status == "resulted") == 0


async def test_csv_with_wrong_columns(world):
    assert _errors(await _upload(world, "sample,result\nS-1,negative\n")) == [(1, None), (1, None)]
    wrong = await _upload(world, "sample,result\nS-1,negative\n")
    assert "unknown column(s) 'sample', 'result'" in wrong.text and "missing column(s) label, outcome" in wrong.text
    semicolons = await _upload(world, "label;outcome\nS-1;negative\n")
    assert semicolons.status_code == 400 and "separated by ';'" in semicolons.text
    twice = await _upload(world, "label,outcome,outcome\n")
    assert twice.status_code == 400 and "appear twice" in twice.text
    empty = await _upload(world, "")
    assert empty.status_code == 400 and "empty" in empty.text
    header_only = await _upload(world, "label,outcome\n")
    assert header_only.status_code == 400 and "no results" in header_only.text


async def test_csv_in_the_wrong_encoding(world):
    [label] = await _at_lab(world, 1)
    text = f"label,outcome\n{label},âm tính\n"
    legacy = await _upload(world, text, encoding="cp1258")
    assert legacy.status_code == 400 and "not UTF-8" in legacy.text
    utf16 = await _upload(world, text, encoding="utf-16")
    assert utf16.status_code == 400 and "UTF-16" in utf16.text
    assert await ResultVersion.count() == 0
    assert (await _upload(world, text)).status_code == 201


async def test_csv_row_limit_is_a_setting(make_world):
    world = await make_world(plugin={"testing": {"max_upload_rows": 2}})
    labels = await _at_lab(world, 3)
    text = "label,outcome\n" + "".join(f"{label},negative\n" for label in labels)
    response = await _upload(world, text)
    assert response.status_code == 400 and "more than 2 rows" in response.text


async def test_lab_systems_upload_with_an_api_key(world):
    labels = await _at_lab(world, 2)
    issued = await world.platform.identity.create_api_key(
        name="LIS", roles=["lab_system"], kind="service", created_by="test", province=HN, lab=LAB
    )
    key = {"X-API-Key": issued.key}
    response = await _upload(world, "label,outcome\n" + "".join(f"{label},negative\n" for label in labels), key)
    assert response.status_code == 201, response.text
    # A lab system enters results; it does not browse people's data.
    assert (await world.client.get("/api/testing/samples", headers=key)).status_code == 403
    other = await world.platform.identity.create_api_key(
        name="LIS B", roles=["lab_system"], kind="service", created_by="test", province=HN, lab="lab-hn-2"
    )
    [late] = await _at_lab(world, 1)
    foreign = await _upload(world, f"label,outcome\n{late},negative\n", {"X-API-Key": other.key})
    assert _errors(foreign) == [(2, "label")]


def _bundle(*entries):
    return {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}


def _specimen_entry(label):
    full_url = f"urn:uuid:{uuid.uuid4()}"
    resource = {
        "resourceType": "Specimen",
        "identifier": [{"system": SAMPLE_SYSTEM, "value": label}],
        "subject": {"display": "tested person"},
    }
    return full_url, {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": "Specimen"}}


def _observation_entry(specimen_ref, snomed, *, loinc="94500-6", status="final", ct=None):
    resource = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": snomed}]},
        "specimen": specimen_ref,
    }
    if ct is not None:
        resource["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": "94510-5"}]},
                "valueQuantity": {"value": ct, "unit": "{Ct}", "system": "http://unitsofmeasure.org", "code": "{Ct}"},
            }
        ]
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": resource,
        "request": {"method": "POST", "url": "Observation"},
    }


async def test_fhir_bundle_import(world):
    from fhir.resources.R4B.bundle import Bundle

    labels = await _at_lab(world, 3)
    antigen = await _at_lab(world, 1, test_type="rapid-antigen")
    url0, specimen0 = _specimen_entry(labels[0])
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "94558-4"}]},
        "specimen": [{"identifier": {"system": SAMPLE_SYSTEM, "value": antigen[0]}}],
        "conclusionCode": [{"coding": [{"system": SNOMED, "code": "260385009"}]}],
    }
    bundle = _bundle(
        specimen0,
        _observation_entry({"reference": url0}, "10828004", ct=19.2),
        _observation_entry({"identifier": {"system": SAMPLE_SYSTEM, "value": labels[1]}}, "260415000"),
        _observation_entry({"reference": f"Specimen/{labels[2]}"}, "419984006", status="amended"),
        {"resource": report, "request": {"method": "POST", "url": "DiagnosticReport"}},
    )
    Bundle.model_validate(bundle)  # what we send is a valid FHIR bundle
    response = await world.client.post(FHIR_URL, json=bundle, headers=world.lab)
    assert response.status_code == 201, response.text
    results = {r["id"]: r["result"] for r in await Sample.select(Sample.id, Sample.result)}
    assert results == {labels[0]: "positive", labels[1]: "negative", labels[2]: "invalid", antigen[0]: "negative"}
    ct = await ResultVersion.select(ResultVersion.ct_value).where(ResultVersion.sample == labels[0]).first()
    assert ct["ct_value"] == 19.2


async def test_fhir_bundle_problems_store_nothing(world):
    labels = await _at_lab(world, 4)
    bundle = _bundle(
        _observation_entry({"reference": f"Specimen/{labels[0]}"}, "260385009"),  # 1: fine
        _observation_entry({"reference": f"Specimen/{labels[1]}"}, "260385009", status="preliminary"),  # 2
        _observation_entry({"reference": f"Specimen/{labels[2]}"}, "260385009", loinc="94558-4"),  # 3: wrong test
        _observation_entry({"reference": f"Specimen/{labels[3]}"}, "12345"),  # 4: unknown result code
        _observation_entry({"reference": "urn:uuid:missing"}, "260385009"),  # 5: no specimen
        _observation_entry({"reference": f"Specimen/{new_label('sample')}"}, "260385009"),  # 6: unknown
    )
    response = await world.client.post(FHIR_URL, json=bundle, headers=world.lab)
    assert _errors(response) == [
        (2, "status"),
        (3, "code"),
        (4, "valueCodeableConcept"),
        (5, "specimen"),
        (6, "specimen"),
    ]
    assert "LOINC 94500-6" in response.json()["errors"][1]["message"]
    assert await ResultVersion.count() == 0
    not_json = await world.client.post(FHIR_URL, content=b"{nope", headers=world.lab)
    assert not_json.status_code == 400 and "bundle" in not_json.json()["detail"]
    not_bundle = await world.client.post(FHIR_URL, json={"resourceType": "Patient"}, headers=world.lab)
    assert _errors(not_bundle) == [(0, "resourceType")]
    empty = await world.client.post(FHIR_URL, json=_bundle(), headers=world.lab)
    assert _errors(empty) == [(0, "entry")]


async def test_fhir_export_is_valid_r4(world):
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient
    from fhir.resources.R4B.specimen import Specimen

    [label] = await _at_lab(world, 1)
    await world.result(label, "negative")
    corrected = await world.client.post(
        f"/api/testing/samples/{label}/corrections",
        json={"outcome": "positive", "reason": "plate map misread", "ct_value": 27.5},
        headers=world.lab,
    )
    assert corrected.status_code == 201
    response = await world.client.get(f"/api/testing/fhir/samples/{label}", headers=world.epi)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    Bundle.model_validate(bundle)
    classes = {
        "Patient": Patient,
        "Specimen": Specimen,
        "Observation": Observation,
        "DiagnosticReport": DiagnosticReport,
    }
    resources = [entry["resource"] for entry in bundle["entry"]]
    for resource in resources:
        classes[resource["resourceType"]].model_validate(resource)
    kinds = [r["resourceType"] for r in resources]
    assert kinds == ["Patient", "Specimen", "Observation", "DiagnosticReport", "Observation", "DiagnosticReport"]
    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
    references = _references(bundle)
    assert references and references <= full_urls  # every reference resolves inside the bundle
    old, new = (r for r in resources if r["resourceType"] == "Observation")
    assert old["code"]["coding"][0] == {"system": LOINC, "code": "94500-6", "display": "SARS-CoV-2 RT-PCR"}
    assert (old["status"], old["valueCodeableConcept"]["coding"][0]["code"]) == ("amended", "260385009")
    assert (new["status"], new["valueCodeableConcept"]["coding"][0]["code"]) == ("corrected", "10828004")
    assert new["component"][0]["valueQuantity"]["value"] == 27.5
    specimen = resources[1]
    assert specimen["identifier"][0] == {"system": SAMPLE_SYSTEM, "value": label}
    patient = resources[0]
    assert patient["birthDate"] == "1985-01-20" and patient["telecom"][0]["value"].startswith("+84")
    exported = await AuditLog.select().where(AuditLog.action == "testing.fhir.export")
    assert [a["resource_id"] for a in exported] == [label]
    assert (await world.client.get(f"/api/testing/fhir/samples/{label}", headers=world.epi_dn)).status_code == 403


async def test_fhir_results_export_follows_scope(world):
    from fhir.resources.R4B.bundle import Bundle

    labels = await _at_lab(world, 2)
    for label in labels:
        await world.result(label, "negative")
    mine = (await world.client.get("/api/testing/fhir/results", headers=world.lab)).json()
    Bundle.model_validate(mine)
    specimens = [e["resource"] for e in mine["entry"] if e["resource"]["resourceType"] == "Specimen"]
    assert sorted(s["identifier"][0]["value"] for s in specimens) == sorted(labels)
    theirs = (await world.client.get("/api/testing/fhir/results", headers=world.epi_dn)).json()
    Bundle.model_validate(theirs)
    assert "entry" not in theirs


def _references(value):
    found = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                found.add(item)
            else:
                found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def test_csv_rows_read_inline_and_carefully_agree():
    """Plain rows take the fast path; anything unusual gets the careful path, with the same checks."""
    from plugins.testing.imports import parse_csv

    labels = [new_label("sample") for _ in range(9)]
    rows = [
        f"{labels[0]},negative,",
        f"{labels[1]},positive,60.0",
        f"{labels[2]},Negative,",  # a word in another case
        f" {labels[3]} ,neg,24,5",  # spaces around the label, a decimal comma: quoted below
        f"{labels[4]},positive,60.5",  # past 60
        f"\t{labels[5]},negative,",  # a tab first: a formula look-alike
        f"{labels[6]},negative,=1+1",
        f"{labels[7]},maybe,",
        f"{labels[8]},invalid,0",
    ]
    rows[3] = f' {labels[3]} ,neg,"24,5"'
    entries, errors = parse_csv(("label,outcome,ct_value\n" + "\n".join(rows)).encode(), max_rows=100)
    found = {entry.row: (entry.label.strip(), entry.outcome, entry.ct_value) for entry in entries}
    assert found == {
        2: (labels[0], "negative", None),
        3: (labels[1], "positive", 60.0),
        4: (labels[2], "negative", None),
        5: (labels[3], "negative", 24.5),
        10: (labels[8], "invalid", 0.0),
    }
    assert [(e.row, e.column) for e in errors] == [(6, "ct_value"), (7, "label"), (8, "ct_value"), (9, "outcome")]


async def test_upload_checks_stored_state_of_every_row_and_rolls_back_whole(world):
    """Rows that read well but do not fit what is stored: each reported, and nothing of the file kept.

    On PostgreSQL the good rows are first stored by one statement that checks every row; this file makes
    it roll back and check the rows one by one, so the report and the untouched database must be the same.
    """
    from core.tables import EventOutbox
    from plugins.testing.tables import CaseReport, UntoldBatch, UntoldResult

    good = await _at_lab(world, 3)
    [antigen] = await _at_lab(world, 1, test_type="rapid-antigen")
    waiting = (await world.register())["sample_id"]
    [done] = await _at_lab(world, 1)
    assert (await world.result(done, "negative")).status_code == 201
    members = [(await world.register())["sample_id"] for _ in range(2)]
    pool = await world.pool(members)
    await world.receive([pool["id"]])
    [elsewhere] = await _at_lab(world, 1, headers=world.collector)
    elsewhere_lab = await world.client.post(
        "/api/testing/lab/receipts", json={"labels": [elsewhere]}, headers=world.lab_b
    )
    assert elsewhere_lab.status_code in (201, 409)
    before = {r["id"]: (r["status"], r["result"]) for r in await Sample.select(Sample.id, Sample.status, Sample.result)}
    results_before = await ResultVersion.count()
    untold_before = await UntoldResult.count()
    rows = [
        f"{good[0]},positive,21.5",  # row 2
        f"{good[1]},negative,",  # row 3
        f"{waiting},negative,",  # row 4: not received
        f"{done},positive,",  # row 5: already has a result
        f"{members[0]},negative,",  # row 6: waiting in a pool
        f"{antigen},negative,30",  # row 7: an antigen test has no Ct value
        f"{good[2]},invalid,",  # row 8
    ]
    response = await _upload(world, "label,outcome,ct_value\n" + "\n".join(rows) + "\n")
    assert _errors(response) == [(4, "label"), (5, "label"), (6, "label"), (7, "ct_value")]
    messages = [e["message"] for e in response.json()["errors"]]
    assert "not been received" in messages[0] and "already has a result" in messages[1]
    assert f"in pool {pool['id']}" in messages[2] and "no Ct value" in messages[3]
    after = {r["id"]: (r["status"], r["result"]) for r in await Sample.select(Sample.id, Sample.status, Sample.result)}
    assert after == before
    assert await ResultVersion.count() == results_before
    assert await UntoldResult.count() == untold_before and await UntoldBatch.count() == 0
    assert await CaseReport.count() == 0 and await EventOutbox.count() == 0

    # The good rows alone go in, with the positive reported once and its Ct value kept.
    fixed = "label,outcome,ct_value\n" + "\n".join([rows[0], rows[1], rows[6]]) + "\n"
    stored = await _upload(world, fixed)
    assert stored.status_code == 201, stored.text
    assert stored.json()["reported_positive"] == [good[0]] and sorted(stored.json()["released"]) == sorted(good)
    [report] = await CaseReport.select()
    [version] = await ResultVersion.select().where(ResultVersion.sample == good[0])
    assert report["result"] == version["id"] and version["ct_value"] == 21.5 and version["source"] == "individual"
    assert await EventOutbox.count() == 1
    again = await _upload(world, fixed)
    assert _errors(again) == [(2, "label"), (3, "label"), (4, "label")]


async def test_a_big_upload_is_queued_whole_and_told_once_each_by_the_job(world, monkeypatch):
    from core.tables import EventOutbox
    from plugins.testing import notices
    from plugins.testing.results import EVENT as RELEASED
    from plugins.testing.tables import CaseReport, UntoldBatch, UntoldResult

    monkeypatch.setattr(notices, "INLINE", 2)
    labels = await _at_lab(world, 5)
    retested_members = [(await world.register())["sample_id"] for _ in range(2)]
    pool = await world.pool(retested_members)
    await world.receive([pool["id"]])
    assert (await world.result(pool["id"], "positive")).status_code == 201
    rows = [f"{label},{'positive' if index in (0, 2) else 'negative'}," for index, label in enumerate(labels)]
    rows += [f"{member},negative," for member in retested_members]  # their retests come back
    response = await _upload(world, "label,outcome,ct_value\n" + "\n".join(rows) + "\n")
    assert response.status_code == 201, response.text
    assert await world.messages(kind="testing.result") == []  # more than told inline: queued
    queued = await UntoldResult.count() + sum(
        len(batch["samples"].split(",")) for batch in await UntoldBatch.select(UntoldBatch.samples)
    )
    assert queued == 7
    if world.platform.db.kind == "postgres":  # stored set-wise: the notices queued as one batch
        assert await UntoldBatch.count() == 1
    uploaded = await ResultVersion.select(ResultVersion.id).where(ResultVersion.sample.is_in(labels))
    ids = {uuid.UUID(str(row["id"])) for row in uploaded}
    assert len(ids) == len(labels) and len({row["id"] for row in await ResultVersion.select()}) == 7
    if world.platform.db.kind == "postgres":  # numbered by the statement: time-ordered UUIDs (version 7)
        assert {value.version for value in ids} == {7}
    assert (await world.client.get("/api/testing/lab/retests", headers=world.lab)).json() == []
    # Each positive announced once, with its own event, and reported with that event's id.
    assert sorted(response.json()["reported_positive"]) == sorted([labels[0], labels[2]])
    events = {str(row["id"]): row["payload"] for row in await EventOutbox.select().where(EventOutbox.event == RELEASED)}
    reports = {row["sample"]: row["event_id"] for row in await CaseReport.select()}
    assert set(reports) == {labels[0], labels[2]} and set(reports.values()) == set(events)
    for sample_id, event_id in reports.items():
        payload = events[event_id] if isinstance(events[event_id], dict) else json.loads(events[event_id])
        assert payload["sample_id"] == sample_id and payload["result"] == "positive"
    # Corrected before anyone was told: that person hears only the latest result, once (at once, as a
    # correction is a small release).
    corrected = await world.client.post(
        f"/api/testing/samples/{labels[1]}/corrections",
        json={"outcome": "invalid", "reason": "the well was empty"},
        headers=world.lab,
    )
    assert corrected.status_code == 201
    summary = await world.platform.scheduler.run_now("testing.notices.send")
    assert summary == "sent 6 result notice(s); 0 waiting"
    told = await world.messages()
    assert len(told) == 7 and len({m["recipient"] for m in told}) == 7
    assert {m["kind"] for m in told} == {"testing.result"}
    corrected_phone = (
        await Sample.select(Sample.person.phone.as_alias("phone")).where(Sample.id == labels[1]).first()
    )["phone"]
    [message] = await world.messages(recipient=corrected_phone)
    assert "KHONG XAC DINH" in message["body_vi"]
    assert await UntoldBatch.count() == 0 and await UntoldResult.count() == 0
    assert await world.platform.scheduler.run_now("testing.notices.send") == "sent 0 result notice(s); 0 waiting"
