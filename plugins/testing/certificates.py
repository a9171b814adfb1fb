"""Signed test certificates for negative results, in the EU Digital COVID Certificate format.

The certificate's test entry carries ``tt`` (the test type), ``nm`` (NAAT
test name) or ``ma`` (rapid test device id), ``sc`` (collection time),
``tr`` (not detected), ``tc`` (the testing centre), the country, the issuer
and a UVCI. It is signed with the document signer in ``keys_dir`` through
``core.dcc``; anyone with the published trust list verifies it offline.

Every certificate issued is kept, so that correcting the result it was
issued for revokes it: revoked certificates are published as the DCC
revocation scheme's hashes (the format the vaccination plugin publishes),
and ``verify`` reports them as revoked.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import segno
from litestar.exceptions import ServiceUnavailableException

from core import Conflict, clock, dcc, dcc_store
from plugins.testing.catalogue import known_test_types
from plugins.testing.places import settings_of
from plugins.testing.samples import PURPOSE, sample_resource
from plugins.testing.schemas import RevocationListView, VerificationView
from plugins.testing.tables import CollectionSite, IssuedCertificate, Sample

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal

NOT_DETECTED = "260415000"  # SNOMED CT, the DCC value set for a negative test result


class TestCertificate(msgspec.Struct, kw_only=True):
    """An ``HC1:`` certificate, its QR code, when it expires and which key signed it."""

    __test__ = False  # not a pytest test class

    sample_id: str
    certificate: str
    qr_svg: str
    expires_at: datetime
    kid: str


async def issue(platform: Platform, holder: Principal, sample_id: str) -> TestCertificate:
    """Sign a certificate for the current result of ``sample_id``, which must be negative."""
    row = await _sample(sample_id)
    if row["result"] != "negative":
        raise Conflict("certificate: only a released negative result gets a test certificate")
    test_type = known_test_types(platform).get(row["test_type"])
    if test_type is None:
        raise Conflict(f"certificate: test type {row['test_type']!r} is no longer known")
    settings = settings_of(platform)
    collected = clock.as_utc(row["collected_at"])
    entry: dict[str, Any] = {
        "tt": test_type.dcc_type,
        "sc": collected.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tr": NOT_DETECTED,
        "tc": row["site_name"][:80],
        "co": settings.country,
        "is": settings.issuer,
        "ci": dcc.uvci(settings.country, f"T{row['id'][2:]}/{row['result_version']}"),
    }
    if test_type.method == "naat":
        entry["nm"] = (test_type.dcc_name or test_type.name_en)[:80]
    elif test_type.dcc_device:
        entry["ma"] = test_type.dcc_device
    else:
        raise Conflict(
            f"certificate: no EU device id (ma) is known for {test_type.code} tests, so no certificate can be issued"
        )
    try:
        signer = _keystore(platform).signer()
    except dcc.KeysMissing as exc:
        raise ServiceUnavailableException("Certificate signing keys are not set up yet (phongdich keys init).") from exc
    now = clock.now()
    expires = min(collected + timedelta(hours=settings.certificate_hours), signer.certificate.not_valid_after_utc)
    if expires <= now:
        raise Conflict(f"certificate: the sample was taken more than {settings.certificate_hours} hours ago")
    family, _, given = row["full_name"].partition(" ")
    certificate = dcc.hcert(dcc.person_name(family, given), row["date_of_birth"].isoformat(), kind="t", entry=entry)
    text = dcc.encode(certificate, signer=signer, issuer=settings.country, issued_at=now, expires_at=expires)
    kid = base64.b64encode(signer.kid).decode()
    async with platform.db.transaction():
        # The sample is locked and checked again: a correction either waits for this certificate (and
        # revokes it) or has committed already (and this one is refused), never slips in between.
        query = Sample.select(Sample.result, Sample.result_version).where(Sample.id == row["id"])
        current = await (query.lock_rows() if platform.db.kind == "postgres" else query).first()
        if current is None or (current["result"], current["result_version"]) != ("negative", row["result_version"]):
            raise Conflict("certificate: the result was corrected just now; ask for the certificate again")
        await IssuedCertificate.insert(
            IssuedCertificate(
                id=uuid.uuid4(),
                identifier=entry["ci"],
                sample=row["id"],
                result_version=row["result_version"],
                subject_id=row["subject_id"],
                province=row["province"],
                kid=kid,
                content=text,
                issued_at=now,
                expires_at=expires,
            )
        )
        await platform.audit.record(holder, "testing.certificate.issue", sample_resource(row), purpose=PURPOSE)
    return TestCertificate(
        sample_id=row["id"],
        certificate=text,
        qr_svg=str(segno.make(text, error="q").svg_inline(scale=3, border=4)),
        expires_at=expires,
        kid=kid,
    )


async def revoke_for_samples(
    platform: Platform, principal: Principal, rows: list[dict[str, Any]], *, reason: str, now: datetime
) -> int:
    """Revoke every live certificate of these samples (their result was corrected); returns how many.

    Call in the correction's transaction, after the samples were updated. Audited per sample.
    """
    if not rows:
        return 0
    revoked = (
        await IssuedCertificate.update({IssuedCertificate.revoked_at: now, IssuedCertificate.revocation_reason: reason})
        .where(IssuedCertificate.sample.is_in([row["id"] for row in rows]) & IssuedCertificate.revoked_at.is_null())
        .returning(IssuedCertificate.sample)
    )
    samples = {row["sample"] for row in revoked}
    if samples:
        await platform.audit.record(
            principal,
            "testing.certificate.revoke",
            [sample_resource(row) for row in rows if row["id"] in samples],
            purpose=PURPOSE,
            detail=reason,
        )
    return len(revoked)


async def revocation_list(platform: Platform) -> RevocationListView:
    """The revoked certificates that have not expired yet, as the DCC revocation scheme's three hashes."""
    return RevocationListView(
        country=settings_of(platform).country,
        generated_at=clock.now(),
        hashes=await dcc_store.revocation_hashes(IssuedCertificate, IssuedCertificate.expires_at > clock.now()),
    )


async def verify(platform: Platform, text: str) -> VerificationView:
    """Check an ``HC1:`` test certificate: signature, dates and revocation; shows name and birth date only.

    Like the vaccination plugin's, it stores nothing and logs nothing about the holder.
    """
    verdict = await dcc_store.verify(
        platform.db,
        IssuedCertificate,
        _keystore(platform),
        text,
        kind="t",
        accept=_negative,
        revoked_reason="The certificate was revoked by its issuer: the result was corrected.",
        summary=lambda entry: f"COVID-19 test, not detected, sampled {entry.get('sc')} at {entry.get('tc')}",
    )
    return verdict.as_view(VerificationView)


def trust_list(platform: Platform) -> dcc.TrustList:
    """The keys that verify testing's certificates (the same folder the vaccination plugin publishes)."""
    return _keystore(platform).trust_list()


async def _sample(sample_id: str) -> dict[str, Any]:
    row = (
        await Sample.select(
            *Sample.all_columns(exclude=[Sample.result_code_hash, Sample.lookup_otp_hash]),
            Sample.person.full_name.as_alias("full_name"),
            Sample.person.date_of_birth.as_alias("date_of_birth"),
        )
        .where(Sample.id == sample_id)
        .first()
    )
    if row is None:
        raise Conflict(f"certificate: no sample {sample_id}")
    site = await CollectionSite.select(CollectionSite.name).where(CollectionSite.code == row["site"]).first()
    return {**row, "site_name": site["name"] if site else row["site"]}


def _negative(entry: dict[str, Any]) -> None:
    if entry.get("tr") != NOT_DETECTED:
        raise dcc.InvalidCertificate("payload", "not a negative test certificate")


def _keystore(platform: Platform) -> dcc.KeyStore:
    return dcc.key_store(settings_of(platform).keys_dir)
