"""Correcting pool results (Dorfman applied again) and revoking the certificates of corrected results."""

from __future__ import annotations

import pytest

from core import clock, dcc
from core.principal import Principal
from core.tables import AuditLog
from plugins.testing.identifiers import new_label
from plugins.testing.tables import (
    CaseReport,
    IssuedCertificate,
    Pool,
    PoolResultVersion,
    ResultVersion,
    RetestOrder,
    Sample,
    UntoldResult,
)
from tests.plugins.testing.conftest import HN, LAB, PERSON

REASON = "plate map read in the wrong order"


@pytest.fixture
async def signing(make_world, tmp_path):
    keys = tmp_path / "keys"
    dcc.KeyStore(keys).init(country="VN", organisation="Ministry of Health of Viet Nam")
    return await make_world(plugin={"testing": {"keys_dir": str(keys)}})


async def _pool(world, outcome, *, people=3, first_person=None):
    """A received pool of fresh people (the first one ``first_person`` if given) with ``outcome`` entered."""
    receipts = []
    for index in range(people):
        body = {"person": first_person} if index == 0 and first_person else {}
        receipts.append(await world.register(**body))
    pool = await world.pool([r["sample_id"] for r in receipts])
    assert (await world.receive([pool["id"]])).status_code == 201
    assert (await world.result(pool["id"], outcome)).status_code == 201
    return pool, receipts


async def _correct_pool(world, pool_id, outcome, headers=None, **body):
    return await world.client.post(
        f"/api/testing/pools/{pool_id}/corrections",
        json={"outcome": outcome, "reason": REASON, **body},
        headers=headers or world.lab,
    )


async def _certificate(world, receipt, date_of_birth="1985-01-20"):
    response = await world.client.post(
        "/api/testing/lookup/certificate", json={"code": receipt["result_code"], "date_of_birth": date_of_birth}
    )
    assert response.status_code == 200, response.text
    return response.json()["certificate"]


async def _verify(world, certificate):
    response = await world.client.post("/api/testing/verify", json={"hc1": certificate})
    assert response.status_code == 200, response.text
    return response.json()


async def _state(sample_id):
    return (
        await Sample.select(Sample.status, Sample.result, Sample.result_version).where(Sample.id == sample_id).first()
    )


async def _phone(sample_id):
    row = await Sample.select(Sample.person.phone.as_alias("phone")).where(Sample.id == sample_id).first()
    return row["phone"]


async def test_negative_pool_corrected_to_positive_withdraws_members_and_retests_them(signing):
    world = signing
    pool, receipts = await _pool(world, "negative", first_person=PERSON)
    members = sorted(r["sample_id"] for r in receipts)
    holder = receipts[0]
    certificate = await _certificate(world, holder, PERSON["date_of_birth"])
    assert (await _verify(world, certificate))["valid"] is True

    corrected = await _correct_pool(world, pool["id"], "positive", ct_value=33.5)
    assert corrected.status_code == 201, corrected.text
    done = corrected.json()
    assert sorted(done["withdrawn"]) == members and sorted(done["retests"]) == members
    assert done["released"] == [] and done["kept"] == [] and done["revoked_certificates"] == 1
    assert done["pool"]["status"] == "positive" and done["pool"]["result_version"] == 2
    assert [(v["version"], v["outcome"], v["current"], v["reason"]) for v in done["pool"]["results"]] == [
        (1, "negative", False, ""),
        (2, "positive", True, REASON),
    ]

    # Every member is back to retesting; its pool-derived negative stays, superseded, for staff.
    for member in members:
        assert await _state(member) == {"status": "retest", "result": None, "result_version": 1}
    staff_view = (await world.client.get(f"/api/testing/samples/{holder['sample_id']}", headers=world.epi)).json()
    assert [(v["outcome"], v["source"], v["current"]) for v in staff_view["results"]] == [("negative", "pool", False)]
    assert [s["step"] for s in staff_view["timeline"]][-2:] == ["result", "retesting"]
    retests = (await world.client.get("/api/testing/lab/retests", headers=world.lab)).json()
    assert sorted(r["sample_id"] for r in retests) == members
    assert {(r["pool"], r["reason"]) for r in retests} == {(pool["id"], "pool_positive")}

    # The citizen sees the retest, not the negative; everyone told the negative hears it is withdrawn.
    lookup = await world.client.post(
        "/api/testing/lookup", json={"code": holder["result_code"], "date_of_birth": PERSON["date_of_birth"]}
    )
    assert lookup.status_code == 200
    assert lookup.json()["status"] == "retesting" and lookup.json()["result"] is None
    withdrawn = await world.messages(kind="testing.result.withdrawn")
    assert len(withdrawn) == 3 and all(m["body_vi"].startswith("DINH CHINH:") for m in withdrawn)
    assert "+84912345678" in {m["recipient"] for m in withdrawn}
    assert "withdrawn" in withdrawn[0]["body_en"]

    # The certificate for the withdrawn negative is revoked: published, and refused by verification.
    verdict = await _verify(world, certificate)
    assert verdict["valid"] is False and verdict["revoked"] is True
    published = (await world.client.get("/api/testing/revocations")).json()
    hashes = dcc.revocation_hashes(dcc.decode(certificate))
    assert published["country"] == "VN"
    assert all(hashes[kind] in published["hashes"][kind] for kind in ("UCI", "COUNTRYCODEUCI", "SIGNATURE"))
    refused = await world.client.post(
        "/api/testing/lookup/certificate",
        json={"code": holder["result_code"], "date_of_birth": PERSON["date_of_birth"]},
    )
    assert refused.status_code == 409

    actions = [row["action"] for row in await AuditLog.select(AuditLog.action).order_by(AuditLog.id)]
    assert actions.count("testing.pool.correct") == 1
    assert actions.count("testing.result.correct") == 3
    assert actions.count("testing.certificate.revoke") == 1

    # The retests come back: each member's own result is its next version; the positive is reported.
    infected = next(member for member in members if member != holder["sample_id"])
    for member in members:
        entered = await world.result(member, "positive" if member == infected else "negative")
        assert entered.status_code == 201, entered.text
        assert await _state(member) == {
            "status": "resulted",
            "result": "positive" if member == infected else "negative",
            "result_version": 2,
        }
    assert [r["sample"] for r in await CaseReport.select(CaseReport.sample)] == [infected]
    assert await RetestOrder.count().where(RetestOrder.done_at.is_null()) == 0
    again = await world.messages(recipient="+84912345678")
    assert [m["kind"] for m in again] == ["testing.result", "testing.result.withdrawn", "testing.result.corrected"]
    # A new negative gets a new certificate (its own identifier), which is valid.
    renewed = await _certificate(world, holder, PERSON["date_of_birth"])
    assert (await _verify(world, renewed))["valid"] is True
    assert dcc.decode(renewed).hcert["t"][0]["ci"] != dcc.decode(certificate).hcert["t"][0]["ci"]
    assert (await _verify(world, certificate))["revoked"] is True


async def test_positive_pool_corrected_to_negative_releases_only_members_still_waiting(world):
    pool, receipts = await _pool(world, "positive")
    members = sorted(r["sample_id"] for r in receipts)
    own, waiting = members[0], members[1:]
    assert (await world.result(own, "positive", ct_value=21)).status_code == 201

    corrected = await _correct_pool(world, pool["id"], "negative")
    assert corrected.status_code == 201, corrected.text
    done = corrected.json()
    assert done["kept"] == [own] and done["withdrawn"] == [] and done["retests"] == []
    assert sorted(done["released"]) == waiting and sorted(done["cancelled_retests"]) == waiting
    # The member retested on its own keeps its positive; the others take the pool's negative.
    assert await _state(own) == {"status": "resulted", "result": "positive", "result_version": 1}
    for member in waiting:
        assert await _state(member) == {"status": "resulted", "result": "negative", "result_version": 1}
    sources = {r["sample"]: (r["source"], r["pool"]) for r in await ResultVersion.select()}
    assert sources[own] == ("individual", None)
    assert all(sources[m] == ("pool", pool["id"]) for m in waiting)
    orders = {o["sample"]: o for o in await RetestOrder.select()}
    assert orders[own]["cancelled_at"] is None and orders[own]["done_at"] is not None
    assert all(orders[m]["cancelled_at"] is not None for m in waiting)
    assert (await world.client.get("/api/testing/lab/retests", headers=world.lab)).json() == []
    told = await world.messages(kind="testing.result")
    assert len(told) == 3 and sum("AM TINH" in m["body_vi"] for m in told) == 2
    [pool_audit] = await AuditLog.select(AuditLog.detail).where(AuditLog.action == "testing.pool.correct")
    assert pool_audit["detail"] == "pool result version 1 -> 2: positive -> negative"

    # Back to positive: the derived negatives are withdrawn and their cancelled retests reopened.
    back = await _correct_pool(world, pool["id"], "positive")
    assert back.status_code == 201, back.text
    assert back.json()["kept"] == [own] and sorted(back.json()["withdrawn"]) == waiting
    retests = (await world.client.get("/api/testing/lab/retests", headers=world.lab)).json()
    assert sorted(r["sample_id"] for r in retests) == waiting
    assert await RetestOrder.count() == 3
    assert len(await world.messages(kind="testing.result.withdrawn")) == 2
    assert await _state(own) == {"status": "resulted", "result": "positive", "result_version": 1}
    assert await PoolResultVersion.count().where(PoolResultVersion.pool == pool["id"]) == 3

    # And negative once more: the withdrawn members take the pool's negative as their next version.
    final = await _correct_pool(world, pool["id"], "negative")
    assert sorted(final.json()["released"]) == waiting
    for member in waiting:
        assert await _state(member) == {"status": "resulted", "result": "negative", "result_version": 2}
    versions = await ResultVersion.select(ResultVersion.version, ResultVersion.current, ResultVersion.source).where(
        ResultVersion.sample == waiting[0]
    )
    history = sorted((v["version"], v["current"], v["source"]) for v in versions)
    assert history == [(1, False, "pool"), (2, True, "pool")]
    assert (await world.client.get("/api/testing/lab/retests", headers=world.lab)).json() == []
    assert [m["kind"] for m in await world.messages(recipient=(await _phone(waiting[0])))] == [
        "testing.result",
        "testing.result.withdrawn",
        "testing.result.corrected",
    ]


async def test_fhir_export_marks_a_withdrawn_negative_entered_in_error(world):
    """A pool member's negative taken back by a pool correction is withdrawn data, not an amended result."""
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from fhir.resources.R4B.observation import Observation

    pool, receipts = await _pool(world, "negative", people=2)
    withdrawn, retested = sorted(r["sample_id"] for r in receipts)
    assert (await _correct_pool(world, pool["id"], "positive")).status_code == 201
    assert (await world.result(retested, "positive", ct_value=22)).status_code == 201

    def statuses(bundle):
        Bundle.model_validate(bundle)
        found = []
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] in ("Observation", "DiagnosticReport"):
                kind = Observation if resource["resourceType"] == "Observation" else DiagnosticReport
                kind.model_validate(resource)
                found.append((resource["resourceType"], resource["status"]))
        return found

    # Withdrawn and still waiting for its retest: its only version is entered-in-error.
    waiting = await world.client.get(f"/api/testing/fhir/samples/{withdrawn}", headers=world.epi)
    assert waiting.status_code == 200
    assert statuses(waiting.json()) == [("Observation", "entered-in-error"), ("DiagnosticReport", "entered-in-error")]
    # Retested: the withdrawn negative stays entered-in-error; its own result is the current one.
    again = await world.client.get(f"/api/testing/fhir/samples/{retested}", headers=world.epi)
    assert again.status_code == 200
    assert statuses(again.json()) == [
        ("Observation", "entered-in-error"),
        ("DiagnosticReport", "entered-in-error"),
        ("Observation", "corrected"),
        ("DiagnosticReport", "corrected"),
    ]
    # A result replaced by a correction is still amended, not withdrawn.
    corrected = await world.client.post(
        f"/api/testing/samples/{retested}/corrections",
        json={"outcome": "negative", "reason": REASON},
        headers=world.lab,
    )
    assert corrected.status_code == 201, corrected.text
    after = await world.client.get(f"/api/testing/fhir/samples/{retested}", headers=world.epi)
    assert [status for kind, status in statuses(after.json()) if kind == "Observation"] == [
        "entered-in-error",
        "corrected",
        "corrected",
    ]


async def test_positive_pool_corrected_to_invalid_keeps_the_retests(world):
    pool, _receipts = await _pool(world, "positive", people=2)
    corrected = await _correct_pool(world, pool["id"], "invalid")
    assert corrected.status_code == 201, corrected.text
    done = corrected.json()
    assert done["withdrawn"] == done["released"] == done["kept"] == []
    retests = (await world.client.get("/api/testing/lab/retests", headers=world.lab)).json()
    assert {r["reason"] for r in retests} == {"pool_invalid"} and len(retests) == 2
    reasons = await Sample.select(Sample.retest_reason).where(Sample.pool == pool["id"])
    assert reasons == [{"retest_reason": "pool_invalid"}] * 2
    assert await world.messages() == []


async def test_a_withdrawn_negative_never_told_is_not_taken_back(world, monkeypatch):
    from plugins.testing import notices

    monkeypatch.setattr(notices, "INLINE", 0)
    pool, _receipts = await _pool(world, "negative", people=2)
    assert (await _correct_pool(world, pool["id"], "positive")).status_code == 201
    await world.platform.scheduler.run_now("testing.notices.send")
    assert await world.messages() == []
    assert await UntoldResult.count() == 0


async def test_pool_correction_bad_input_and_access(world):
    members = [(await world.register())["sample_id"] for _ in range(2)]
    waiting = await world.pool(members)
    await world.receive([waiting["id"]])
    early = await _correct_pool(world, waiting["id"], "positive")
    assert early.status_code == 409 and "no released result" in early.json()["detail"]
    assert (await world.result(waiting["id"], "negative")).status_code == 201
    short = await _correct_pool(world, waiting["id"], "positive", reason="oops")
    assert short.status_code == 400 and "reason" in short.text
    bad_outcome = await _correct_pool(world, waiting["id"], "maybe")
    assert bad_outcome.status_code == 400 and "outcome" in bad_outcome.text
    assert (await _correct_pool(world, new_label("pool"), "positive")).status_code == 404
    sample_label = await _correct_pool(world, members[0], "positive")
    assert sample_label.status_code == 400 and "sample label" in sample_label.json()["detail"]
    assert (await _correct_pool(world, waiting["id"], "positive", headers=world.lab_b)).status_code == 403
    assert (await _correct_pool(world, waiting["id"], "positive", headers=world.collector)).status_code == 403
    assert (await _correct_pool(world, waiting["id"], "positive", headers=world.epi)).status_code == 403
    # Nothing changed by any of them.
    row = await Pool.select(Pool.status, Pool.result_version).where(Pool.id == waiting["id"]).first()
    assert row == {"status": "negative", "result_version": 1}
    assert await PoolResultVersion.count() == 1
    assert await AuditLog.count().where(AuditLog.action == "testing.pool.correct") == 0


async def test_pool_correction_is_one_transaction(signing, monkeypatch):
    """If anything fails half-way, the pool, its members, retests, certificates and notices are as before."""
    world = signing
    pool, receipts = await _pool(world, "negative", first_person=PERSON)
    await _certificate(world, receipts[0], PERSON["date_of_birth"])
    told = len(await world.messages())

    from plugins.testing import pooling, results
    from plugins.testing.schemas import CorrectionIn

    async def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(pooling, "reorder_retests", broken)
    lab = Principal(id="staff:lab", kind="staff", roles=frozenset({"lab_technician"}), province=HN, lab=LAB)
    with pytest.raises(RuntimeError):
        await results.correct_pool(world.platform, lab, pool["id"], CorrectionIn(outcome="positive", reason=REASON))
    row = await Pool.select(Pool.status, Pool.result_version).where(Pool.id == pool["id"]).first()
    assert row == {"status": "negative", "result_version": 1}
    assert await PoolResultVersion.count() == 1
    for receipt in receipts:
        assert await _state(receipt["sample_id"]) == {"status": "resulted", "result": "negative", "result_version": 1}
    assert await ResultVersion.count().where(ResultVersion.current == True) == 3  # noqa: E712
    assert await RetestOrder.count() == 0
    assert await IssuedCertificate.count().where(IssuedCertificate.revoked_at.is_not_null()) == 0
    assert await UntoldResult.count() == 0 and len(await world.messages()) == told
    assert await AuditLog.count().where(AuditLog.action == "testing.pool.correct") == 0


async def test_correcting_a_result_revokes_its_certificate(signing):
    world = signing
    sample = await world.register(person=PERSON)
    await world.receive([sample["sample_id"]])
    await world.result(sample["sample_id"], "negative")
    first = await _certificate(world, sample, PERSON["date_of_birth"])
    second = await _certificate(world, sample, PERSON["date_of_birth"])
    assert (await world.client.get("/api/testing/revocations")).json()["hashes"] == {
        "UCI": [],
        "COUNTRYCODEUCI": [],
        "SIGNATURE": [],
    }
    url = f"/api/testing/samples/{sample['sample_id']}/corrections"
    corrected = await world.client.post(url, json={"outcome": "positive", "reason": REASON}, headers=world.lab)
    assert corrected.status_code == 201, corrected.text
    for certificate in (first, second):
        verdict = await _verify(world, certificate)
        assert verdict == {
            "valid": False,
            "revoked": True,
            "reason": "The certificate was revoked by its issuer: the result was corrected.",
            "name": None,
            "birth_date": None,
            "summary": None,
        }
    published = (await world.client.get("/api/testing/revocations")).json()["hashes"]
    # Both certificates name the same result version: one identifier, two signatures.
    assert len(published["UCI"]) == 1 and len(published["SIGNATURE"]) == 2
    assert dcc.revocation_hashes(dcc.decode(second))["SIGNATURE"] in published["SIGNATURE"]
    [audited] = await AuditLog.select(AuditLog.detail, AuditLog.resource_id).where(
        AuditLog.action == "testing.certificate.revoke"
    )
    assert audited == {"detail": "result version 1 corrected", "resource_id": sample["sample_id"]}

    # Negative again: a new certificate for version 3 is valid; the old ones stay revoked.
    await world.client.post(url, json={"outcome": "negative", "reason": REASON}, headers=world.lab)
    renewed = await _certificate(world, sample, PERSON["date_of_birth"])
    verdict = await _verify(world, renewed)
    assert verdict["valid"] is True and verdict["name"] == "Nguyễn Văn An" and verdict["birth_date"] == "1990-04-12"
    assert dcc.decode(renewed).hcert["t"][0]["ci"].split("#")[0].endswith("/3")
    assert (await _verify(world, first))["revoked"] is True


async def test_verification_of_other_certificates(signing):
    world = signing
    damaged = await _verify(world, "HC1:not-a-certificate")
    assert damaged["valid"] is False and damaged["revoked"] is False
    too_long = await world.client.post("/api/testing/verify", json={"hc1": "HC1:" + "A" * 9000})
    assert too_long.status_code == 400
    # A vaccination certificate, signed by a trusted key, is not a test certificate.
    vaccination = dcc.hcert(
        dcc.person_name("Nguyễn", "An"),
        "1990-04-12",
        kind="v",
        entry={"ci": dcc.uvci("VN", "V1"), "co": "VN", "is": "MOH", "dn": 1, "sd": 2},
    )
    from plugins.testing.certificates import _keystore

    signer = _keystore(world.platform).signer()
    now = clock.now()
    text = dcc.encode(vaccination, signer=signer, issuer="VN", issued_at=now, expires_at=now.replace(year=now.year + 1))
    verdict = await _verify(world, text)
    assert verdict["valid"] is False and "not a test certificate" in verdict["reason"]
