"""Negative test certificates in the EU DCC format, verifiable offline with the published keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import clock, dcc
from core.tables import AuditLog
from plugins.testing.tables import Sample
from tests.plugins.testing.conftest import PERSON


@pytest.fixture
async def signing(make_world, tmp_path):
    keys = tmp_path / "keys"
    dcc.KeyStore(keys).init(country="VN", organisation="Ministry of Health of Viet Nam")
    world = await make_world(plugin={"testing": {"keys_dir": str(keys)}})
    return world, dcc.KeyStore(keys)


async def _resulted(world, outcome="negative", **body):
    receipt = await world.register(**{"person": PERSON, **body})
    await world.receive([receipt["sample_id"]])
    assert (await world.result(receipt["sample_id"], outcome)).status_code == 201
    return receipt


async def test_negative_result_gets_a_verifiable_certificate(signing):
    world, keys = signing
    receipt = await _resulted(world)
    response = await world.client.post(
        "/api/testing/lookup/certificate", json={"code": receipt["result_code"], "date_of_birth": "1990-04-12"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["certificate"].startswith("HC1:") and "<svg" in body["qr_svg"]
    # Offline: only the published certificates (CSCA and document signers), as DER, are needed.
    from cryptography import x509

    published = [(entry.kind, entry.der) for entry in keys.trust_list().entries()]
    trust = dcc.TrustList.of(
        "VN",
        [x509.load_der_x509_certificate(der) for kind, der in published if kind == "CSCA"],
        [x509.load_der_x509_certificate(der) for kind, der in published if kind == "DSC"],
    )
    assert trust.signers
    decoded = dcc.verify(body["certificate"], trust, now=clock.now())
    certificate = decoded.hcert
    assert certificate["dob"] == "1990-04-12"
    assert certificate["nam"] == {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Văn An", "gnt": "VAN<AN"}
    [test] = certificate["t"]
    assert test["tg"] == "840539006" and test["tt"] == "LP6464-4" and test["nm"] == "SARS-CoV-2 RT-PCR"
    assert test["tr"] == "260415000" and test["tc"] == "Điểm lấy mẫu clinic-hn-1"
    assert test["co"] == "VN" and test["is"] == "Ministry of Health of Viet Nam"
    assert test["sc"].endswith("Z") and dcc.uvci_is_well_formed(test["ci"])
    assert decoded.expires_at - decoded.issued_at <= timedelta(hours=72)
    tampered = body["certificate"][:-6] + ("A" if body["certificate"][-6] != "A" else "B") + body["certificate"][-5:]
    with pytest.raises(dcc.InvalidCertificate):
        dcc.verify(tampered, trust, now=clock.now())
    issued = await AuditLog.select().where(AuditLog.action == "testing.certificate.issue")
    assert [a["resource_id"] for a in issued] == [receipt["sample_id"]]


async def test_only_recent_negative_results_get_certificates(signing):
    world, _keys = signing
    positive = await _resulted(world, "positive")
    refused = await world.client.post(
        "/api/testing/lookup/certificate", json={"code": positive["result_code"], "date_of_birth": "1990-04-12"}
    )
    assert refused.status_code == 409 and "negative" in refused.json()["detail"]
    wrong = await world.client.post(
        "/api/testing/lookup/certificate", json={"code": positive["result_code"], "date_of_birth": "1990-04-13"}
    )
    assert wrong.status_code == 404 and "No result matches" in wrong.json()["detail"]
    old = await _resulted(world, person={**PERSON, "id_number": None, "full_name": "Hồ Thị Lan"})
    await Sample.update({Sample.collected_at: clock.now() - timedelta(hours=73)}).where(Sample.id == old["sample_id"])
    stale = await world.client.post(
        "/api/testing/lookup/certificate", json={"code": old["result_code"], "date_of_birth": "1990-04-12"}
    )
    assert stale.status_code == 409 and "72 hours" in stale.json()["detail"]
    antigen = await _resulted(world, test_type="rapid-antigen", person={**PERSON, "id_number": None})
    no_device = await world.client.post(
        "/api/testing/lookup/certificate", json={"code": antigen["result_code"], "date_of_birth": "1990-04-12"}
    )
    assert no_device.status_code == 409 and "device id" in no_device.json()["detail"]


async def test_family_phone_certificates(signing):
    world, keys = signing
    receipt = await _resulted(world)
    headers, _ = await world.citizen(PERSON["phone"])
    response = await world.client.get(f"/api/testing/me/results/{receipt['sample_id']}/certificate", headers=headers)
    assert response.status_code == 200, response.text
    dcc.verify(response.json()["certificate"], keys.trust_list(), now=clock.now())
    stranger, _ = await world.citizen("0955000333")
    other = await world.client.get(f"/api/testing/me/results/{receipt['sample_id']}/certificate", headers=stranger)
    assert other.status_code == 404


async def test_without_signing_keys_the_service_says_so(make_world, tmp_path):
    world = await make_world(plugin={"testing": {"keys_dir": str(tmp_path / "none")}})
    receipt = await _resulted(world)
    response = await world.client.post(
        "/api/testing/lookup/certificate", json={"code": receipt["result_code"], "date_of_birth": "1990-04-12"}
    )
    assert response.status_code == 503 and "keys init" in response.json()["detail"]
