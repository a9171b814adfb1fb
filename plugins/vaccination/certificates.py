"""Vaccination certificates: issued after each dose in every registered format (the EU Digital
COVID Certificate here; other plugins add formats through ``vaccination_certificate_formats``),
revoked one by one, published trust and revocation lists, and offline-style verification.

Verification reads the trust list and the revocation list and nothing else:
it writes no row, no audit record and no log line about the holder.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import io
import uuid
from collections.abc import Awaitable, Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec
import segno
import structlog

from core import Conflict, InvalidInput, NotFound, Resource, clock, dcc, dcc_store
from plugins.vaccination.schemas import (
    CertificateView,
    RevocationListView,
    TrustEntryView,
    TrustListView,
    VerificationView,
)
from plugins.vaccination.tables import Certificate, Dose

if TYPE_CHECKING:
    from core import Principal
    from core.platform import Platform

log = structlog.get_logger("vaccination.certificates")

PURPOSE = "vaccination.records"
EU_DCC = "eu-dcc"


class CertificateRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a format needs to issue a certificate for one dose."""

    certificate_id: uuid.UUID
    dose_id: uuid.UUID
    full_name: str
    family_name: str
    given_name: str
    birth_date: date
    dose_number: int
    series_doses: int
    dose_type: str
    product_code: str
    product_name: str
    dcc_vp: str
    dcc_mp: str
    dcc_ma: str
    administered_on: date
    province: str
    site: str
    country: str
    issuer: str


class IssuedCertificate(msgspec.Struct, frozen=True, kw_only=True):
    """What a format hands back: a unique identifier, the content and its media type."""

    identifier: str
    content: str
    media_type: str
    kid: str = ""
    expires_at: datetime | None = None


@runtime_checkable
class CertificateFormat(Protocol):
    """A certificate format contributed through ``vaccination_certificate_formats``."""

    name: str

    def issue(
        self, request: CertificateRequest, platform: Platform
    ) -> IssuedCertificate | Awaitable[IssuedCertificate]: ...


class EuDigitalCovidCertificate:
    """The EU DCC: ``HC1:`` text signed with the document signer key in the key folder."""

    name = EU_DCC

    def issue(self, request: CertificateRequest, platform: Platform) -> IssuedCertificate:
        signer = keystore(platform).signer()
        identifier = dcc.uvci(request.country, request.certificate_id.hex.upper())
        entry = {
            "vp": request.dcc_vp,
            "mp": request.dcc_mp,
            "ma": request.dcc_ma,
            "dn": request.dose_number,
            "sd": request.series_doses,
            "dt": request.administered_on.isoformat(),
            "co": request.country,
            "is": request.issuer,
            "ci": identifier,
        }
        health_certificate = dcc.hcert(
            dcc.person_name(request.family_name, request.given_name),
            request.birth_date.isoformat(),
            kind="v",
            entry=entry,
        )
        issued_at = clock.now()
        validity = timedelta(days=platform.plugin_config("vaccination").certificate_validity_days)
        # A certificate never outlives the key that signed it: verifiers would refuse it.
        expires_at = min(issued_at + validity, signer.certificate.not_valid_after_utc)
        text = dcc.encode(
            health_certificate, signer=signer, issuer=request.country, issued_at=issued_at, expires_at=expires_at
        )
        return IssuedCertificate(
            identifier=identifier,
            content=text,
            media_type="text/plain; profile=eu-dcc",
            kid=base64.b64encode(signer.kid).decode(),
            expires_at=expires_at,
        )


def keystore(platform: Platform) -> dcc.KeyStore:
    """The key folder named by the settings; loaded keys are cached until a file changes."""
    return dcc.key_store(platform.plugin_config("vaccination").keys_dir)


# -- issuing and revoking ------------------------------------------------------------------------


async def issue_for_dose(platform: Platform, dose_id: Any) -> list[CertificateView]:
    """Issue the dose's current version in every format; call inside the recording transaction.

    A format that fails (keys not yet created, a plugin's bug) is logged and
    skipped: the dose stays recorded, and the certificate is issued when the
    person next asks for their certificates. Two statements for a new dose:
    one read of everything a certificate says, and one insert of them all.
    Both are raw SQL (prepared once per connection on PostgreSQL): this runs
    for every dose recorded, and building them with Piccolo cost the process
    more than the signature did.
    """
    db = platform.db
    dose_uuid = _as_uuid(dose_id)
    rows = await db.fetch(ISSUE_READ, dose_uuid)
    assert rows, "a certificate is issued for a stored dose"
    dose = rows[0]
    live: set[str] = set()
    if dose["live_certificates"]:
        live = {row["format"] for row in await db.fetch(_LIVE_FORMATS, dose_uuid, dose["version"])}
    stored, issued = await certify(platform, dose_uuid, dose, skip=live)
    if stored:
        await db.fetch(_insert_certificates(len(stored)), *(value for row in stored for value in row))
    return issued


# The columns of a certificate row as ``certify`` hands them over; never revoked when issued.
STORED_COLUMNS = (
    "id",
    "identifier",
    "format",
    "person",
    "subject_id",
    "dose",
    "dose_version",
    "province",
    "kid",
    "media_type",
    "content",
    "issued_at",
    "expires_at",
)


async def certify(
    platform: Platform, dose_id: uuid.UUID, dose: Mapping[str, Any], *, skip: set[str]
) -> tuple[list[tuple[Any, ...]], list[CertificateView]]:
    """Sign ``dose`` (a row of ``ISSUE_READ``) in every format but ``skip``: the rows to store, in
    ``STORED_COLUMNS`` order, and what the caller is answered. Writes nothing."""
    from plugins.vaccination.eligibility import series_doses
    from plugins.vaccination.people import split_name

    if dose["primary_doses"] is None:
        raise InvalidInput(f"product_code: {dose['product_code']} has no rule in force on {dose['administered_on']}")
    version = dose["version"]
    settings = platform.plugin_config("vaccination")
    family, given = split_name(dose["full_name"])
    person_id = _as_uuid(dose["person"])
    stored: list[tuple[Any, ...]] = []
    issued: list[CertificateView] = []
    for fmt in await formats(platform, dose["province"]):
        if fmt.name in skip:
            continue
        certificate_id = uuid.uuid4()
        request = CertificateRequest(
            certificate_id=certificate_id,
            dose_id=dose_id,
            full_name=dose["full_name"],
            family_name=family,
            given_name=given,
            birth_date=_as_date(dose["birth_date"]),
            dose_number=dose["dose_number"],
            series_doses=series_doses(dose["dose_number"], dose["primary_doses"]),
            dose_type=dose["dose_type"],
            product_code=dose["product_code"],
            product_name=dose["product_name"],
            dcc_vp=dose["dcc_vp"],
            dcc_mp=dose["dcc_mp"],
            dcc_ma=dose["dcc_ma"],
            administered_on=_as_date(dose["administered_on"]),
            province=dose["province"],
            site=dose["site"],
            country=settings.country,
            issuer=settings.issuer,
        )
        try:
            outcome = fmt.issue(request, platform)
            result = await outcome if inspect.isawaitable(outcome) else outcome
        except Exception as exc:
            log.warning(
                "certificate.not_issued", format=fmt.name, dose=str(dose_id), error=f"{type(exc).__name__}: {exc}"
            )
            continue
        if not isinstance(result, IssuedCertificate):
            log.error("certificate.bad_format_result", format=fmt.name, got=type(result).__name__)
            continue
        now = clock.now()
        stored.append(
            (
                certificate_id,
                result.identifier,
                fmt.name,
                person_id,
                dose["subject_id"],
                dose_id,
                version,
                dose["province"],
                result.kid,
                result.media_type,
                result.content,
                now,
                result.expires_at,
            )
        )
        issued.append(
            CertificateView(
                id=certificate_id,
                format=fmt.name,
                identifier=result.identifier,
                dose_id=dose_id,
                dose_version=version,
                media_type=result.media_type,
                content=result.content,
                issued_at=now,
                expires_at=result.expires_at,
                revoked=False,
                revocation_reason="",
            )
        )
    return stored, issued


@functools.cache
def _insert_certificates(count: int) -> str:
    row = "(" + ", ".join(["{}"] * len(STORED_COLUMNS)) + ", NULL, '')"
    return (
        f"INSERT INTO vaccination_certificate ({', '.join(STORED_COLUMNS)}, revoked_at, revocation_reason) "  # noqa: S608
        f"VALUES {', '.join([row] * count)}"
    )


_LIVE_FORMATS = """
SELECT format FROM vaccination_certificate WHERE dose = {} AND dose_version = {} AND revoked_at IS NULL
"""

# The dose, its person and product, and the primary series of the rule it was given under (its
# booking's rule, or for a walk-in the rule in force that day), in one round trip.
ISSUE_READ = """
SELECT d.person, d.subject_id, d.province, d.site, d.dose_number, d.dose_type, d.version, d.administered_on,
       p.full_name, p.birth_date,
       pr.code AS product_code, pr.name AS product_name, pr.dcc_vp, pr.dcc_mp, pr.dcc_ma,
       COALESCE(
           (SELECT r.primary_doses FROM vaccination_booking b
              JOIN vaccination_product_rule r ON r.id = b.rule WHERE b.id = d.booking),
           (SELECT r.primary_doses FROM vaccination_product_rule r
             WHERE r.product = d.product AND r.effective_from <= d.administered_on
             ORDER BY r.effective_from DESC LIMIT 1)
       ) AS primary_doses,
       (SELECT COUNT(*) FROM vaccination_certificate c
         WHERE c.dose = d.id AND c.dose_version = d.version AND c.revoked_at IS NULL) AS live_certificates
  FROM vaccination_dose d
  JOIN vaccination_person p ON p.id = d.person
  JOIN vaccination_product pr ON pr.code = d.product
 WHERE d.id = {}
"""


def _as_uuid(value: Any) -> uuid.UUID:
    # Raw queries hand UUIDs back as text on SQLite.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


async def formats(platform: Platform, province: str | None) -> list[CertificateFormat]:
    contributed = await platform.hooks.collect("vaccination_certificate_formats", province=province, platform=platform)
    found: dict[str, CertificateFormat] = {}
    for fmt in (f for batch in contributed for f in batch):
        if not isinstance(fmt, CertificateFormat) or fmt.name in found:
            log.error("certificate.format_ignored", format=getattr(fmt, "name", repr(fmt)))
            continue
        found[fmt.name] = fmt
    return list(found.values())


async def revoke_for_dose(dose_id: Any, reason: str) -> None:
    await Certificate.update({Certificate.revoked_at: clock.now(), Certificate.revocation_reason: reason}).where(
        (Certificate.dose == dose_id) & Certificate.revoked_at.is_null()
    )


async def revoke(platform: Platform, principal: Principal, certificate_id: Any, reason: str) -> CertificateView:
    row = await _row(certificate_id)
    await platform.access.check(principal, "vaccination.certificate.revoke", _resource(row))
    done = await (
        Certificate.update({Certificate.revoked_at: clock.now(), Certificate.revocation_reason: reason})
        .where((Certificate.id == certificate_id) & Certificate.revoked_at.is_null())
        .returning(Certificate.id)
    )
    if not done:
        raise Conflict("certificate_id: the certificate is already revoked")
    await platform.audit.record(
        principal, "vaccination.certificate.revoke", _resource(row), purpose=PURPOSE, detail=reason
    )
    return _view(await _row(certificate_id))


async def list_for_person(
    platform: Platform, principal: Principal, person_id: Any, *, include_revoked: bool
) -> list[CertificateView]:
    """A person's certificates, issuing any that a dose still lacks (keys created after the dose)."""
    from plugins.vaccination import people

    person = await people.get_person(platform, principal, person_id, action="vaccination.certificate.read")
    doses = await Dose.select(Dose.id, Dose.version).where(Dose.person == person["id"])
    for dose in doses:
        has = await Certificate.exists().where(
            (Certificate.dose == dose["id"])
            & (Certificate.dose_version == dose["version"])
            & Certificate.revoked_at.is_null()
        )
        if not has:
            async with platform.db.transaction():
                await issue_for_dose(platform, dose["id"])
    query = Certificate.select().where(Certificate.person == person["id"])
    if not include_revoked:
        query = query.where(Certificate.revoked_at.is_null())
    rows = await query.order_by(Certificate.issued_at)
    return [_view(row) for row in rows]


async def get_certificate(platform: Platform, principal: Principal, certificate_id: Any) -> CertificateView:
    row = await _row(certificate_id)
    await platform.access.check(principal, "vaccination.certificate.read", _resource(row))
    if row["subject_id"] != principal.subject_id:
        await platform.audit.record(principal, "vaccination.certificate.read", _resource(row), purpose=PURPOSE)
    return _view(row)


def qr_code(content: str, kind: str) -> bytes:
    """The certificate as a QR code (SVG or PNG); error correction Q, as the eHN guidelines advise."""
    qr = segno.make(content, error="q", boost_error=False)
    buffer = io.BytesIO()
    if kind == "svg":
        qr.save(buffer, kind="svg", scale=4, border=4, xmldecl=False)
    else:
        qr.save(buffer, kind="png", scale=4, border=4)
    return buffer.getvalue()


# -- trust, revocation, verification ----------------------------------------------------------------


def trust_list(platform: Platform) -> TrustListView:
    trust = keystore(platform).trust_list()
    return TrustListView(
        country=trust.country,
        certificates=[
            TrustEntryView(
                kid=base64.b64encode(entry.kid).decode(),
                country=trust.country,
                certificateType=entry.kind,
                rawData=base64.b64encode(entry.der).decode(),
                thumbprint=hashlib.sha256(entry.der).hexdigest(),
                notAfter=entry.certificate.not_valid_after_utc,
            )
            for entry in trust.entries()
        ],
    )


async def revocation_list(platform: Platform) -> RevocationListView:
    return RevocationListView(
        country=platform.plugin_config("vaccination").country,
        generated_at=clock.now(),
        hashes=await dcc_store.revocation_hashes(Certificate, Certificate.format == EU_DCC),
    )


async def verify(platform: Platform, text: str) -> VerificationView:
    """Check an ``HC1:`` certificate; shows validity, name and date of birth only; stores nothing."""
    verdict = await dcc_store.verify(
        platform.db,
        Certificate,
        keystore(platform),
        text,
        kind="v",
        revoked_reason="The certificate was revoked by its issuer.",
        summary=lambda entry: f"COVID-19 vaccination, dose {entry.get('dn')}/{entry.get('sd')} on {entry.get('dt')}",
    )
    return verdict.as_view(VerificationView)


# -- helpers ----------------------------------------------------------------------------------------


async def _row(certificate_id: Any) -> dict[str, Any]:
    row = await Certificate.select().where(Certificate.id == certificate_id).first()
    if row is None:
        raise NotFound("certificate_id: no such certificate")
    return row


def _resource(row: dict[str, Any]) -> Resource:
    return Resource(
        kind="vaccination_certificate", id=str(row["id"]), province=row["province"], subject_id=row["subject_id"]
    )


def _view(row: dict[str, Any]) -> CertificateView:
    return CertificateView(
        id=row["id"],
        format=row["format"],
        identifier=row["identifier"],
        dose_id=row["dose"],
        dose_version=row["dose_version"],
        media_type=row["media_type"],
        content=row["content"],
        issued_at=clock.as_utc(row["issued_at"]),
        expires_at=clock.as_utc(row["expires_at"]) if row["expires_at"] else None,
        revoked=row["revoked_at"] is not None,
        revocation_reason=row["revocation_reason"],
    )
