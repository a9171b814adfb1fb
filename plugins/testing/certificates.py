"""Signed test certificates for negative results, in the EU Digital COVID Certificate format.

The certificate's test entry carries ``tt`` (the test type), ``nm`` (NAAT
test name) or ``ma`` (rapid test device id), ``sc`` (collection time),
``tr`` (not detected), ``tc`` (the testing centre), the country, the issuer
and a UVCI. It is signed with the document signer in ``keys_dir`` through
``core.dcc``; anyone with the published trust list verifies it offline.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import segno
from litestar.exceptions import ServiceUnavailableException

from core import Conflict, clock, dcc
from plugins.testing.catalogue import known_test_types
from plugins.testing.places import settings_of
from plugins.testing.samples import PURPOSE, sample_resource
from plugins.testing.tables import CollectionSite, Sample

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


_stores: dict[Path, dcc.KeyStore] = {}


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
    await platform.audit.record(holder, "testing.certificate.issue", sample_resource(row), purpose=PURPOSE)
    return TestCertificate(
        sample_id=row["id"],
        certificate=text,
        qr_svg=str(segno.make(text, error="q").svg_inline(scale=3, border=4)),
        expires_at=expires,
        kid=base64.b64encode(signer.kid).decode(),
    )


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


def _keystore(platform: Platform) -> dcc.KeyStore:
    path = Path(settings_of(platform).keys_dir).resolve()
    store = _stores.get(path)
    if store is None:
        store = _stores[path] = dcc.KeyStore(path)
    return store
