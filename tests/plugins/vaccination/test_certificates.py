"""Certificates over HTTP: issued after each dose in the EU DCC format, decoded and verified here
by an independent path (base45, zlib, cbor2 and cryptography's ECDSA against the published DSC),
trust and revocation lists, the verifier that records nothing, QR codes, and the keys command."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
import subprocess
import sys
import zlib
from pathlib import Path

import base45
import cbor2
import zxingcpp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from PIL import Image

from core.tables import AuditLog, EventOutbox, MessageOutbox
from core.testing import TEST_SECRET, http_client, staff_headers
from plugins.vaccination import localtime
from plugins.vaccination.tables import TABLES
from tests.plugins.vaccination.support import LOT, NO_SCREENING, build_world


def _independent_verify(hc1: str, trust_list: dict) -> dict:
    """Decode and verify an HC1 string without core.dcc, using only the published trust list."""
    assert hc1.startswith("HC1:")
    cose = cbor2.loads(zlib.decompress(base45.b45decode(hc1[4:])))
    assert cose.tag == 18
    protected_bytes, _unprotected, payload, signature = cose.value
    protected = cbor2.loads(protected_bytes)
    assert protected[1] == -7  # ES256
    kid = protected[4]
    published = {
        base64.b64decode(entry["kid"]): x509.load_der_x509_certificate(base64.b64decode(entry["rawData"]))
        for entry in trust_list["certificates"]
        if entry["certificateType"] == "DSC"
    }
    dsc = published[kid]
    assert (
        hashlib.sha256(
            base64.b64decode(
                next(e["rawData"] for e in trust_list["certificates"] if base64.b64decode(e["kid"]) == kid)
            )
        ).digest()[:8]
        == kid
    )
    sig_structure = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    dsc.public_key().verify(der, sig_structure, ec.ECDSA(hashes.SHA256()))  # raises if not genuine
    return cbor2.loads(payload)


async def test_certificate_decodes_and_verifies_independently(world):
    _headers, person, recorded = await world.vaccinated_person()
    certificate = recorded["certificates"][0]
    trust = (await world.api.get("/api/vaccination/trust-list")).json()
    assert trust["country"] == "VN"
    assert sorted(e["certificateType"] for e in trust["certificates"]) == ["CSCA", "DSC"]

    claims = _independent_verify(certificate["content"], trust)
    assert claims[1] == "VN"
    assert claims[4] > claims[6]  # expires after it was issued
    hcert = claims[-260][1]
    assert hcert["ver"] == "1.3.0"
    assert hcert["dob"] == person["birth_date"]
    assert hcert["nam"] == {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Văn An", "gnt": "VAN<AN"}
    (entry,) = hcert["v"]
    assert entry["tg"] == "840539006"
    assert (entry["dn"], entry["sd"]) == (1, 2)
    assert entry["dt"] == localtime.today().isoformat()
    assert (entry["vp"], entry["mp"], entry["ma"], entry["co"]) == ("1119349007", "EU/1/20/1528", "ORG-100030215", "VN")
    assert entry["ci"] == certificate["identifier"] and entry["ci"].startswith("URN:UVCI:01:VN:")

    # The DSC chains to the published CSCA.
    csca = x509.load_der_x509_certificate(
        base64.b64decode(next(e["rawData"] for e in trust["certificates"] if e["certificateType"] == "CSCA"))
    )
    dsc = x509.load_der_x509_certificate(
        base64.b64decode(next(e["rawData"] for e in trust["certificates"] if e["certificateType"] == "DSC"))
    )
    dsc.verify_directly_issued_by(csca)


async def _count_everything() -> dict[str, int]:
    counts = {table._meta.tablename: await table.count() for table in TABLES}
    for table in (AuditLog, EventOutbox, MessageOutbox):
        counts[table._meta.tablename] = await table.count()
    return counts


async def test_verifier_shows_only_what_a_checker_needs_and_records_nothing(world, capfd):
    _headers, person, recorded = await world.vaccinated_person()
    text = recorded["certificates"][0]["content"]
    capfd.readouterr()
    before = await _count_everything()

    valid = await world.api.post("/api/vaccination/verify", json={"hc1": text})
    assert valid.status_code == 200
    assert valid.json() == {
        "valid": True,
        "reason": "Valid: signed by a trusted key, unaltered, not expired and not revoked.",
        "name": "Nguyễn Văn An",
        "birth_date": person["birth_date"],
        "summary": f"COVID-19 vaccination, dose 1/2 on {localtime.today()}",
    }
    tampered = text[:40] + ("A" if text[40] != "A" else "B") + text[41:]
    truncated = text[: len(text) - 10]
    for bad in (tampered, truncated, "HC1:", "not a certificate", text + "0"):
        refused = await world.api.post("/api/vaccination/verify", json={"hc1": bad})
        assert refused.status_code == 200
        assert refused.json()["valid"] is False and refused.json()["name"] is None, bad[:30]
    assert (await world.api.post("/api/vaccination/verify", json={"hc1": ""})).status_code == 400
    assert (await world.api.post("/api/vaccination/verify", json={"hc1": "HC1:" + "A" * 9000})).status_code == 400

    page = await world.api.post("/vaccination/verify", data={"hc1": text})
    assert page.status_code == 200
    assert "Hợp lệ / Valid" in page.text and "Nguyễn Văn An" in page.text
    bad_page = await world.api.post("/vaccination/verify", data={"hc1": tampered})
    assert "Không hợp lệ" in bad_page.text and "Nguyễn" not in bad_page.text
    assert (await world.api.get("/vaccination/verify")).status_code == 200

    assert await _count_everything() == before
    logged = capfd.readouterr()
    assert "Nguy" not in logged.out + logged.err and text[4:40] not in logged.out + logged.err


async def test_revocation_is_published_and_refused_by_the_verifier(world):
    headers, _person, recorded = await world.vaccinated_person()
    certificate = recorded["certificates"][0]
    assert (await world.api.get("/api/vaccination/revocations")).json()["hashes"]["UCI"] == []
    citizen = await world.api.post(
        f"/api/vaccination/certificates/{certificate['id']}/revoke", json={"reason": "issued in error"}, headers=headers
    )
    assert citizen.status_code == 403
    revoked = await world.api.post(
        f"/api/vaccination/certificates/{certificate['id']}/revoke",
        json={"reason": "identity data were wrong"},
        headers=world.province_admin,
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] is True
    again = await world.api.post(
        f"/api/vaccination/certificates/{certificate['id']}/revoke",
        json={"reason": "identity data were wrong"},
        headers=world.province_admin,
    )
    assert again.status_code == 409
    published = (await world.api.get("/api/vaccination/revocations")).json()
    expected = base64.b64encode(hashlib.sha256(certificate["identifier"].encode()).digest()[:16]).decode()
    assert published["hashes"]["UCI"] == [expected]
    assert len(published["hashes"]["SIGNATURE"]) == 1
    verdict = (await world.api.post("/api/vaccination/verify", json={"hc1": certificate["content"]})).json()
    assert verdict == {
        "valid": False,
        "reason": "The certificate was revoked by its issuer.",
        "name": None,
        "birth_date": None,
        "summary": None,
    }


async def test_holders_get_their_certificates_and_qr_codes(world):
    headers, person, recorded = await world.vaccinated_person()
    certificate = recorded["certificates"][0]
    mine = await world.api.get(f"/api/vaccination/people/{person['id']}/certificates", headers=headers)
    assert [c["id"] for c in mine.json()] == [certificate["id"]]
    svg = await world.api.get(f"/api/vaccination/certificates/{certificate['id']}/qr", headers=headers)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in svg.content
    png = await world.api.get(f"/api/vaccination/certificates/{certificate['id']}/qr?kind=png", headers=headers)
    assert png.content.startswith(b"\x89PNG")
    # An independent decoder reads the QR code back to the exact certificate text.
    (read,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
    assert read.text == certificate["content"]
    assert (
        await world.api.get(f"/api/vaccination/certificates/{certificate['id']}/qr?kind=gif", headers=headers)
    ).status_code == 400
    stranger, _ = await world.citizen()
    assert (
        await world.api.get(f"/api/vaccination/certificates/{certificate['id']}", headers=stranger)
    ).status_code == 403
    assert (
        await world.api.get(f"/api/vaccination/people/{person['id']}/certificates", headers=stranger)
    ).status_code == 403
    staff = await world.api.get(f"/api/vaccination/certificates/{certificate['id']}", headers=world.province_admin)
    assert staff.status_code == 200
    assert await AuditLog.count().where(AuditLog.action == "vaccination.certificate.read") == 1


async def test_certificates_follow_once_keys_exist(make_platform, tmp_path):
    keys = tmp_path / "later"
    platform = await make_platform(plugin={"vaccination": {"keys_dir": str(keys)}})
    async with http_client(platform) as api:
        world = await build_world(platform, api)
        assert (await api.get("/api/vaccination/trust-list")).status_code == 404
        headers, person, recorded = await world.vaccinated_person()
        assert recorded["certificates"] == []  # the dose is recorded all the same
        assert (await api.post("/api/vaccination/verify", json={"hc1": "HC1:xyz"})).json()["valid"] is False
        from core import dcc

        dcc.KeyStore(keys).init(country="VN", organisation="Ministry of Health of Viet Nam")
        issued = (await api.get(f"/api/vaccination/people/{person['id']}/certificates", headers=headers)).json()
        assert len(issued) == 1 and issued[0]["dose_id"] == recorded["dose"]["id"]
        trust = (await api.get("/api/vaccination/trust-list")).json()
        _independent_verify(issued[0]["content"], trust)


def test_keys_init_command_creates_the_csca_and_signer(tmp_path):
    script = Path(sys.executable).with_name("phongdich")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PHONGDICH_")},
        "PHONGDICH_SECRET_KEY": TEST_SECRET,
        "PHONGDICH_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "PHONGDICH_PLUGIN__VACCINATION__KEYS_DIR": str(tmp_path / "vault"),
    }
    done = subprocess.run(
        [str(script), "keys", "init"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "country signing CA" in done.stdout and "kid " in done.stdout
    vault = tmp_path / "vault"
    assert stat.S_IMODE((vault / "csca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((vault / "dsc.key").stat().st_mode) == 0o600
    dsc = x509.load_pem_x509_certificate((vault / "dsc.crt").read_bytes())
    csca = x509.load_pem_x509_certificate((vault / "csca.crt").read_bytes())
    dsc.verify_directly_issued_by(csca)
    assert csca.subject.rfc4514_string().startswith("CN=Ministry of Health of Viet Nam CSCA")
    again = subprocess.run(
        [str(script), "keys", "init"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 1 and "never overwritten" in again.stderr
    rotated = subprocess.run(
        [str(script), "keys", "rotate-signer"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert rotated.returncode == 0, rotated.stderr
    assert len(list((vault / "retired").glob("*.crt"))) == 1


async def test_staff_of_another_province_cannot_revoke(world):
    _headers, _person, recorded = await world.vaccinated_person()
    elsewhere = await staff_headers(world.platform, ["province_admin"], province="79")
    response = await world.api.post(
        f"/api/vaccination/certificates/{recorded['certificates'][0]['id']}/revoke",
        json={"reason": "not my province at all"},
        headers=elsewhere,
    )
    assert response.status_code == 403


class PlainTextFormat:
    """A stand-in for another format (SMART Health Cards...), added by a plugin through the hook."""

    name = "plain-text"

    def issue(self, request, platform):
        from plugins.vaccination.certificates import IssuedCertificate

        return IssuedCertificate(
            identifier=f"PT-{request.certificate_id}",
            content=f"{request.full_name}|{request.birth_date}|{request.product_code}|{request.dose_number}/{request.series_doses}",
            media_type="text/plain",
        )


class BrokenFormat:
    name = "broken"

    async def issue(self, request, platform):
        raise RuntimeError("this format's service is down")


class FormatPlugin:
    from core import hookimpl as _hookimpl

    @_hookimpl
    def vaccination_certificate_formats(self, platform):
        return [PlainTextFormat(), BrokenFormat()]


class SaigonFormatPlugin:
    """A province plugin's format applies only to doses given in its province."""

    PROVINCE = "79"
    from core import hookimpl as _hookimpl

    @_hookimpl
    def vaccination_certificate_formats(self, platform):
        return [PlainTextFormat()]


async def test_plugins_add_certificate_formats(make_platform, keys_dir):
    platform = await make_platform(
        extra_plugins=[("formats", FormatPlugin())], plugin={"vaccination": {"keys_dir": str(keys_dir)}}
    )
    async with http_client(platform) as api:
        world = await build_world(platform, api)
        _headers, _person, recorded = await world.vaccinated_person()
        by_format = {c["format"]: c for c in recorded["certificates"]}
        assert set(by_format) == {"eu-dcc", "plain-text"}  # the broken one is skipped, the dose stands
        assert by_format["plain-text"]["content"] == "Nguyễn Văn An|1980-05-17|COMIRNATY|1/2"


async def test_a_province_format_applies_only_in_its_province(make_platform, keys_dir):
    platform = await make_platform(
        extra_plugins=[("saigon_formats", SaigonFormatPlugin())], plugin={"vaccination": {"keys_dir": str(keys_dir)}}
    )
    async with http_client(platform) as api:
        world = await build_world(platform, api)  # its site is in Hanoi (01)
        _headers, _person, recorded = await world.vaccinated_person()
        assert [c["format"] for c in recorded["certificates"]] == ["eu-dcc"]

        # A dose given in Saigon carries the province's format too.
        site = {"id": "site-hcm-1", "name": "Trung tâm Y tế Quận 1", "province": "79"}
        assert (await api.post("/api/vaccination/sites", json=site, headers=world.admin)).status_code == 201
        stock = {"product_code": "COMIRNATY", "lot_number": LOT, "doses": 5}
        assert (
            await api.post("/api/vaccination/sites/site-hcm-1/stock", json=stock, headers=world.admin)
        ).status_code == 201
        saigon = await staff_headers(platform, ["vaccinator"], province="79", site="site-hcm-1")
        walk_in = {
            "full_name": "Trương Văn Sài",
            "birth_date": "1990-09-09",
            "sex": "male",
            "id_number": "079090000123",
            "province": "79",
            "priority_group": "general",
        }
        person = (await api.post("/api/vaccination/people", json=walk_in, headers=saigon)).json()["person"]
        dose = await api.post(
            "/api/vaccination/doses",
            json={"lot_number": LOT, "screening": NO_SCREENING, "person_id": person["id"], "product_code": "COMIRNATY"},
            headers=saigon,
        )
        assert dose.status_code == 201, dose.text
        assert sorted(c["format"] for c in dose.json()["certificates"]) == ["eu-dcc", "plain-text"]
