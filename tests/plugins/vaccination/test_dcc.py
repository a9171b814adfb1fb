"""core.dcc: keys, encoding, verification and refusal of damaged or foreign certificates."""

from __future__ import annotations

import hashlib
import stat
from datetime import UTC, datetime, timedelta

import base45
import pytest
from cryptography.hazmat.primitives import serialization

from core import dcc

NOW = datetime(2021, 9, 1, 8, 0, tzinfo=UTC)


def _certificate() -> dict:
    return dcc.hcert(
        dcc.person_name("Nguyễn", "Văn Đức"),
        "1980-05-17",
        kind="v",
        entry={
            "vp": "J07BX03",
            "mp": "EU/1/21/1529",
            "ma": "ORG-100001699",
            "dn": 1,
            "sd": 2,
            "dt": "2021-08-31",
            "co": "VN",
            "is": "Ministry of Health of Viet Nam",
            "ci": dcc.uvci("VN", "0123ABCD"),
        },
    )


@pytest.fixture
def store(tmp_path):
    keys = dcc.KeyStore(tmp_path / "keys")
    keys.init(country="VN", organisation="Ministry of Health of Viet Nam", now=NOW - timedelta(days=1))
    return keys


def _issue(store, *, issued=NOW, expires=NOW + timedelta(days=365)) -> str:
    return dcc.encode(_certificate(), signer=store.signer(), issuer="VN", issued_at=issued, expires_at=expires)


def test_keys_init_writes_a_csca_and_a_signer_with_private_keys_0600(store):
    folder = store.directory
    assert sorted(p.name for p in folder.iterdir()) == ["csca.crt", "csca.key", "dsc.crt", "dsc.key"]
    for name in ("csca.key", "dsc.key"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    signer = store.signer()
    der = signer.certificate.public_bytes(serialization.Encoding.DER)
    assert signer.kid == hashlib.sha256(der).digest()[:8]
    trust = store.trust_list()
    assert trust.country == "VN"
    assert list(trust.signers) == [signer.kid]
    assert [e.kind for e in trust.entries()] == ["CSCA", "DSC"]
    with pytest.raises(FileExistsError):
        store.init(country="VN", organisation="again")


def test_round_trip_and_name_transliteration(store):
    text = _issue(store)
    assert text.startswith("HC1:")
    decoded = dcc.verify(text, store.trust_list(), now=NOW)
    certificate = decoded.hcert
    assert certificate["nam"] == {"fn": "Nguyễn", "fnt": "NGUYEN", "gn": "Văn Đức", "gnt": "VAN<DUC"}
    assert certificate["v"][0]["tg"] == dcc.DISEASE_COVID19
    assert decoded.issuer == "VN"
    assert decoded.expires_at == NOW + timedelta(days=365)
    assert dcc.transliterate("Trần Thị  Thu-Hà") == "TRAN<THI<THU<HA"


def test_uvci_check_character_validates_with_luhn_mod_n():
    identifier = dcc.uvci("VN", "7F3A9C21B")
    body, check = identifier.split("#")
    assert body == "URN:UVCI:01:VN:7F3A9C21B"
    # Validation runs the other way: over body + check, doubling from the second-rightmost, the sum is 0 mod N.
    n = len(dcc.UVCI_CHARSET)
    total = 0
    for position, char in enumerate(reversed(body + check)):
        addend = dcc.UVCI_CHARSET.index(char) * (2 if position % 2 else 1)
        total += addend // n + addend % n
    assert total % n == 0
    assert dcc.uvci_is_well_formed(identifier)
    assert not dcc.uvci_is_well_formed(body + "#" + ("A" if check != "A" else "B"))


def test_tampered_truncated_and_foreign_certificates_are_refused(store, tmp_path):
    text = _issue(store)
    trust = store.trust_list()
    raw = base45.b45decode(text[4:])

    import zlib

    import cbor2

    message = cbor2.loads(zlib.decompress(raw))
    protected, unprotected, payload, signature = message.value
    claims = cbor2.loads(payload)
    claims[-260][1]["dob"] = "1990-01-01"
    forged = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, cbor2.dumps(claims), signature]))
    forged_text = "HC1:" + base45.b45encode(zlib.compress(forged)).decode()
    with pytest.raises(dcc.InvalidCertificate) as altered:
        dcc.verify(forged_text, trust, now=NOW)
    assert altered.value.reason == "signature"

    for broken, reason in [
        (text[: len(text) // 2], {"zlib", "base45"}),
        (text[:-3], {"zlib", "base45"}),
        ("HC2:" + text[4:], {"prefix"}),
        ("HC1:" + "%%%%", {"base45"}),
        ("HC1:" + base45.b45encode(zlib.compress(b"not cbor at all")).decode(), {"cose"}),
    ]:
        with pytest.raises(dcc.InvalidCertificate) as refused:
            dcc.verify(broken, trust, now=NOW)
        assert refused.value.reason in reason, (broken[:20], refused.value.reason)

    other = dcc.KeyStore(tmp_path / "other")
    other.init(country="VN", organisation="Impostor", now=NOW - timedelta(days=1))
    foreign = _issue(other)
    with pytest.raises(dcc.InvalidCertificate) as unknown:
        dcc.verify(foreign, trust, now=NOW)
    assert unknown.value.reason == "kid_unknown"

    expired = _issue(store, issued=NOW - timedelta(hours=2), expires=NOW - timedelta(hours=1))
    with pytest.raises(dcc.InvalidCertificate) as late:
        dcc.verify(expired, trust, now=NOW)
    assert late.value.reason == "expired"


def test_rotated_signers_stay_trusted(store):
    before = _issue(store)
    old_kid = store.signer().kid
    store.rotate_signer(now=NOW)
    new_kid = store.signer().kid
    assert new_kid != old_kid
    trust = store.trust_list()
    assert set(trust.signers) == {old_kid, new_kid}
    assert dcc.verify(before, trust, now=NOW).kid == old_kid
    assert dcc.verify(_issue(store), trust, now=NOW).kid == new_kid
    assert stat.S_IMODE((store.directory / "dsc.key").stat().st_mode) == 0o600


def test_missing_keys_say_how_to_create_them(tmp_path):
    with pytest.raises(dcc.KeysMissing, match="phongdich keys init"):
        dcc.KeyStore(tmp_path / "none").signer()


def test_revocation_hashes_follow_the_dcc_scheme(store):
    decoded = dcc.decode(_issue(store))
    hashes = dcc.revocation_hashes(decoded)
    identifier = decoded.hcert["v"][0]["ci"]
    import base64

    assert hashes["UCI"] == base64.b64encode(hashlib.sha256(identifier.encode()).digest()[:16]).decode()
    assert (
        hashes["COUNTRYCODEUCI"]
        == base64.b64encode(hashlib.sha256(("VN" + identifier).encode()).digest()[:16]).decode()
    )
    assert hashes["SIGNATURE"] == base64.b64encode(hashlib.sha256(decoded.signature[:32]).digest()[:16]).decode()


def test_base45_matches_the_reference_encoder(store):
    import os

    samples = [b"", b"\x00", b"\xff\xff", b"\xff\xff\xff", b"ietf!", *(os.urandom(n) for n in range(1, 80))]
    compressed = base45.b45decode(_issue(store)[4:])
    for data in [*samples, compressed]:
        assert dcc.b45encode(data) == base45.b45encode(data).decode()
        assert base45.b45decode(dcc.b45encode(data)) == data


def test_a_signer_rotated_by_another_process_is_picked_up(store):
    worker = dcc.KeyStore(store.directory)  # another worker's view of the same folder
    old_kid = worker.signer().kid
    store.rotate_signer(now=NOW)
    new_kid = store.signer().kid
    assert worker.signer().kid == new_kid != old_kid
    assert set(worker.trust_list().signers) == {old_kid, new_kid}
    # A retired certificate taken out of the folder is no longer trusted...
    for path in (store.directory / "retired").glob("*.crt"):
        path.unlink()
    assert set(worker.trust_list().signers) == {new_kid}
    # ... and without its key the folder signs nothing.
    (store.directory / "dsc.key").unlink()
    with pytest.raises(dcc.KeysMissing):
        worker.signer()


def test_one_key_store_per_folder(tmp_path, monkeypatch):
    folder = tmp_path / "keys"
    shared = dcc.key_store(folder)
    assert dcc.key_store(str(folder)) is shared
    assert dcc.key_store(f"{folder}/") is shared
    monkeypatch.chdir(tmp_path)
    assert dcc.key_store("keys") is shared
    monkeypatch.chdir(tmp_path.parent)
    assert dcc.key_store("keys") is not shared  # a relative folder follows the working directory
