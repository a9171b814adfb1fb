"""core.dcc_store: the revocation list and the verifier that the plugins issuing EU DCCs share,
against a table of issued certificates made here (on SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import msgspec
import pytest
from piccolo.columns import Text, Timestamptz, Varchar
from piccolo.table import Table

from core import clock, dcc, dcc_store


class StoredCertificate(Table, tablename="dcc_store_test_certificate"):
    identifier = Varchar(length=120, index=True)
    content = Text()
    revoked_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz()


class _CheckerView(msgspec.Struct, kw_only=True):
    valid: bool
    name: str | None = None
    summary: str | None = None


@pytest.fixture
def keys(tmp_path):
    store = dcc.KeyStore(tmp_path / "keys")
    store.init(country="VN", organisation="Ministry of Health of Viet Nam")
    return store


@pytest.fixture
async def platform(start_platform):
    platform = await start_platform()
    StoredCertificate._meta.db = platform.db.engine
    await StoredCertificate.create_table()
    return platform


def _issue(keys, kind="v", identifier="URN:UVCI:01:VN:ABC#1", **entry):
    entry = {"co": "VN", "is": "Ministry of Health", "ci": identifier, **entry}
    certificate = dcc.hcert(dcc.person_name("Nguyễn", "Văn An"), "1980-05-17", kind=kind, entry=entry)
    now = clock.now()
    return dcc.encode(
        certificate, signer=keys.signer(), issuer="VN", issued_at=now, expires_at=now + timedelta(days=30)
    )


async def _verify(platform, keys, text, **options):
    options = {"kind": "v", "revoked_reason": "Revoked.", "summary": lambda entry: f"dose {entry.get('dn')}", **options}
    return await dcc_store.verify(platform.db, StoredCertificate, keys, text, **options)


async def test_a_valid_certificate_shows_name_birth_date_and_its_entry(platform, keys):
    text = _issue(keys, dn=1, sd=2)
    await StoredCertificate.insert(
        StoredCertificate(identifier="URN:UVCI:01:VN:ABC#1", content=text, expires_at=clock.now() + timedelta(days=1))
    )
    verdict = await _verify(platform, keys, text)
    assert verdict.valid and not verdict.revoked
    assert verdict.reason == dcc_store.VALID
    assert (verdict.name, verdict.birth_date) == ("Nguyễn Văn An", "1980-05-17")
    assert (verdict.entry["ci"], verdict.entry["dn"], verdict.entry["sd"]) == ("URN:UVCI:01:VN:ABC#1", 1, 2)
    assert verdict.summary == "dose 1"
    # A plugin's response takes the fields it has, and no more.
    assert verdict.as_view(_CheckerView) == _CheckerView(valid=True, name="Nguyễn Văn An", summary="dose 1")


async def test_revoked_certificates_are_refused_and_published(platform, keys):
    now = clock.now()
    revoked, live, old = _issue(keys, identifier="A#1"), _issue(keys, identifier="B#2"), _issue(keys, identifier="C#3")
    await StoredCertificate.insert(
        StoredCertificate(identifier="A#1", content=revoked, revoked_at=now, expires_at=now + timedelta(days=1)),
        StoredCertificate(identifier="B#2", content=live, expires_at=now + timedelta(days=1)),
        StoredCertificate(identifier="C#3", content=old, revoked_at=now, expires_at=now - timedelta(days=1)),
        StoredCertificate(identifier="D#4", content="HC1:damaged", revoked_at=now, expires_at=now + timedelta(days=1)),
    )
    verdict = await _verify(platform, keys, revoked, revoked_reason="The issuer revoked it.")
    assert (verdict.valid, verdict.revoked, verdict.reason) == (False, True, "The issuer revoked it.")
    assert verdict.name is None and verdict.birth_date is None and verdict.summary is None
    assert (await _verify(platform, keys, live)).valid

    def hashes_of(*texts):
        found = [dcc.revocation_hashes(dcc.decode(text)) for text in texts]
        return {kind: sorted(h[kind] for h in found) for kind in dcc_store.REVOCATION_HASH_TYPES}

    # The damaged row is left out; a condition narrows the list (here: not yet expired).
    assert await dcc_store.revocation_hashes(StoredCertificate) == hashes_of(revoked, old)
    assert await dcc_store.revocation_hashes(StoredCertificate, StoredCertificate.expires_at > now) == hashes_of(
        revoked
    )
    uci = base64.b64encode(hashlib.sha256(b"A#1").digest()[:16]).decode()
    assert hashes_of(revoked)["UCI"] == [uci]


async def test_refusals_say_why_and_touch_nothing(platform, keys, tmp_path):
    empty = dcc.KeyStore(tmp_path / "none")
    assert await _verify(platform, empty, _issue(keys)) == dcc_store.Verdict(
        valid=False, reason=dcc_store.NO_TRUST_LIST
    )
    test = _issue(keys, kind="t", tr="260415000")
    wrong_kind = await _verify(platform, keys, test)
    assert (wrong_kind.valid, wrong_kind.reason) == (False, "not a vaccination certificate")

    def positive_only(entry):
        if entry.get("tr") != "260373001":
            raise dcc.InvalidCertificate("payload", "not a positive test")

    refused = await _verify(platform, keys, test, kind="t", accept=positive_only)
    assert (refused.valid, refused.reason) == (False, "not a positive test")
    assert (await _verify(platform, keys, test, kind="t")).valid
    text = _issue(keys)
    tampered = text[:40] + ("A" if text[40] != "A" else "B") + text[41:]
    assert not (await _verify(platform, keys, tampered)).valid
    assert await StoredCertificate.count() == 0
