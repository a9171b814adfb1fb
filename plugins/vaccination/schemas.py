"""Request and response bodies of the vaccination API: msgspec Structs with their constraints.

Constraints live here so that bad input is refused with a 400 naming the
field before any handler runs; domain modules check what needs the database.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from core.fields import Phone, ProvinceCode, SiteId, pattern

ProductCode = Annotated[
    str,
    msgspec.Meta(
        pattern=pattern(
            r"^[A-Z0-9][A-Z0-9_-]{1,31}$", "2 to 32 capital letters, digits, _ and -, a letter or digit first"
        )
    ),
]
LotNumber = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=pattern(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$", "letters, digits and _ . / -, a letter or digit first"),
    ),
]
ClockTime = Annotated[
    str, msgspec.Meta(pattern=pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", "a time of day, HH:MM (00:00 to 23:59)"))
]
GroupCode = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=40,
        pattern=pattern(
            r"^([0-9]{2}\.)?[a-z][a-z0-9_]*$",
            "lower-case letters, digits and _, a letter first; a province's own group has its code and a dot "
            "in front (79.market_traders)",
        ),
    ),
]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
DccCode = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=80,
        pattern=pattern(r"^[A-Za-z0-9][A-Za-z0-9/_.-]*$", "letters, digits and / _ . -, a letter or digit first"),
    ),
]
FullName = Annotated[str, msgspec.Meta(min_length=2, max_length=200)]
IdNumber = Annotated[
    str,
    msgspec.Meta(
        min_length=6, max_length=24, pattern=pattern(r"^[A-Za-z0-9 .-]+$", "letters, digits, spaces, dots and - only")
    ),
]
BookingCode = Annotated[
    str,
    msgspec.Meta(
        min_length=6, max_length=16, pattern=pattern(r"^[A-Za-z0-9 -]+$", "letters, digits, spaces and - only")
    ),
]
Reason = Annotated[str, msgspec.Meta(min_length=10, max_length=1000)]
Justification = Annotated[str, msgspec.Meta(max_length=1000)]
Screening = Annotated[dict[str, bool], msgspec.Meta(max_length=30)]
Sex = Literal["female", "male", "other"]
Days = Annotated[int, msgspec.Meta(ge=0, le=3650)]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies refuse fields they do not know, so typos are a 400, not silently ignored."""


# -- registry ----------------------------------------------------------------------------


class RuleBody(Body, kw_only=True):
    effective_from: date
    primary_doses: Annotated[int, msgspec.Meta(ge=1, le=5)]
    min_interval_days: Annotated[int, msgspec.Meta(ge=0, le=730)]
    max_interval_days: Annotated[int, msgspec.Meta(ge=1, le=1460)] | None = None
    min_age_years: Annotated[int, msgspec.Meta(ge=0, le=120)]
    max_age_years: Annotated[int, msgspec.Meta(ge=0, le=150)] | None = None
    booster_doses: Annotated[int, msgspec.Meta(ge=0, le=5)] = 0
    booster_min_interval_days: Annotated[int, msgspec.Meta(ge=0, le=3650)] | None = None


class ProductBody(Body, kw_only=True):
    code: ProductCode
    name: Label
    manufacturer: Label
    dcc_vp: DccCode
    dcc_mp: DccCode
    dcc_ma: DccCode
    rule: RuleBody


class RuleView(msgspec.Struct, kw_only=True):
    id: UUID
    product: str
    effective_from: date
    primary_doses: int
    min_interval_days: int
    max_interval_days: int | None
    min_age_years: int
    max_age_years: int | None
    booster_doses: int
    booster_min_interval_days: int | None


class ProductView(msgspec.Struct, kw_only=True):
    code: str
    name: str
    manufacturer: str
    dcc_vp: str
    dcc_mp: str
    dcc_ma: str
    rules: list[RuleView]


class LotBody(Body, kw_only=True):
    number: LotNumber
    product_code: ProductCode
    expires_on: date
    doses_per_vial: Annotated[int, msgspec.Meta(ge=1, le=50)]


class LotView(msgspec.Struct, kw_only=True):
    id: UUID
    number: str
    product: str
    expires_on: date
    doses_per_vial: int


class SiteBody(Body, kw_only=True):
    id: SiteId
    name: Label
    province: ProvinceCode
    address: Annotated[str, msgspec.Meta(max_length=300)] = ""


class SiteView(msgspec.Struct, kw_only=True):
    id: str
    name: str
    province: str
    address: str


class StockBody(Body, kw_only=True):
    """What a site received of a lot: ``doses``, or whole ``vials`` (counted as vials x the lot's doses per vial)."""

    product_code: ProductCode
    lot_number: LotNumber
    doses: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    vials: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None


class StockView(msgspec.Struct, kw_only=True):
    site: str
    product: str
    lot_number: str
    expires_on: date
    received: int
    used: int
    available: int
    expired: bool
    doses_per_vial: int
    vials_available: int  # whole vials' worth of the doses left: the unopened vials when drawn vial by vial


class SessionBody(Body, kw_only=True):
    day: date
    starts_at: ClockTime
    ends_at: ClockTime
    product_code: ProductCode
    capacity: Annotated[int, msgspec.Meta(ge=1, le=100_000)]


class SessionView(msgspec.Struct, kw_only=True):
    id: UUID
    site: str
    site_name: str
    province: str
    day: date
    starts_at: str
    ends_at: str
    product: str
    capacity: int
    booked: int
    places_left: int
    status: str


class PriorityGroupView(msgspec.Struct, kw_only=True):
    code: str
    name_vi: str
    name_en: str
    rank: int
    open: bool
    scope: str  # "national" or the province code


class OpeningBody(Body, kw_only=True):
    """Which priority groups may book now: nationwide (``province`` omitted) or in one province."""

    province: ProvinceCode | None = None
    groups: Annotated[list[GroupCode], msgspec.Meta(max_length=100)]


# -- people -------------------------------------------------------------------------------


class PersonBody(Body, kw_only=True):
    full_name: FullName
    birth_date: date
    sex: Sex
    id_number: IdNumber
    province: ProvinceCode
    priority_group: GroupCode
    phone: Phone | None = None
    # For a citizen: "self" registers the account holder, "dependant" someone they look after.
    relationship: Literal["self", "dependant"] = "self"


class PersonView(msgspec.Struct, kw_only=True):
    id: UUID
    full_name: str
    birth_date: date
    sex: str
    id_number: str
    phone: str | None
    province: str
    priority_group: str
    channel: str
    account_holder: bool
    duplicate_status: str
    duplicate_of: UUID | None
    doses_received: int
    primary_complete: bool
    boosters: int
    last_dose_on: date | None
    next_due_on: date | None


class RegistrationView(msgspec.Struct, kw_only=True):
    person: PersonView
    # "created", "existing" (same ID number, same account) or "probable_duplicate" (flagged for staff)
    outcome: str
    detail: str


class BulkRowResult(msgspec.Struct, kw_only=True):
    row: int
    outcome: str  # created | existing | probable_duplicate
    person_id: UUID


class BulkRowError(msgspec.Struct, kw_only=True):
    row: int
    field: str
    message: str


class BulkResult(msgspec.Struct, kw_only=True):
    stored: bool
    rows: int
    created: int
    existing: int
    probable_duplicates: int
    results: list[BulkRowResult]
    errors: list[BulkRowError]


class DuplicateView(msgspec.Struct, kw_only=True):
    person: PersonView
    probable_duplicate_of: PersonView


class ResolveBody(Body, kw_only=True):
    decision: Literal["merge", "distinct"]


# -- booking ------------------------------------------------------------------------------


class ScreeningQuestion(msgspec.Struct, kw_only=True):
    id: str
    text_vi: str
    text_en: str
    # What a "yes" means: "contraindicated" (no dose), "defer" (not today) or "precaution" (dose, observed longer).
    if_yes: str


class BookingBody(Body, kw_only=True):
    person_id: UUID
    session_id: UUID
    screening: Screening
    mixing_justification: Justification = ""
    join_waitlist: bool = False


class BookingView(msgspec.Struct, kw_only=True):
    id: UUID
    code: str
    person_id: UUID
    session_id: UUID
    site: str
    province: str
    day: date
    starts_at: str
    product: str
    dose_number: int
    dose_type: str
    status: str
    created_at: datetime


class WaitlistView(msgspec.Struct, kw_only=True):
    id: UUID
    session_id: UUID
    person_id: UUID
    rank: int
    status: str


class BookingOutcome(msgspec.Struct, kw_only=True):
    """Either a booking, or (session full and the person asked to wait) a waitlist place."""

    booking: BookingView | None = None
    waitlist: WaitlistView | None = None
    detail: str


# -- at the site --------------------------------------------------------------------------


class CheckinBody(Body, kw_only=True):
    """The booking code as typed, or the signed QR code as scanned."""

    code: BookingCode | None = None
    qr: Annotated[str, msgspec.Meta(min_length=10, max_length=500)] | None = None


class DoseView(msgspec.Struct, kw_only=True):
    id: UUID
    person_id: UUID
    product: str
    lot_number: str
    site: str
    province: str
    dose_number: int
    dose_type: str
    administered_at: datetime
    administered_on: date
    vaccinator: str
    version: int


class CheckinView(msgspec.Struct, kw_only=True):
    booking: BookingView
    person: PersonView
    doses: list[DoseView]
    screening_questions: list[ScreeningQuestion]


class DoseBody(Body, kw_only=True):
    """Record a dose: for a booking (``booking_code``), or a walk-in (``person_id`` and ``product_code``)."""

    lot_number: LotNumber
    screening: Screening
    booking_code: BookingCode | None = None
    person_id: UUID | None = None
    product_code: ProductCode | None = None
    site_id: SiteId | None = None
    mixing_justification: Justification = ""


class DoseRecorded(msgspec.Struct, kw_only=True):
    dose: DoseView
    certificates: list[CertificateView]
    precautions: list[str]


class CorrectionBody(Body, kw_only=True):
    reason: Reason
    lot_number: LotNumber | None = None
    product_code: ProductCode | None = None
    administered_at: datetime | None = None


class DoseRevisionView(msgspec.Struct, kw_only=True):
    version: int
    snapshot: dict[str, object]
    reason: str
    corrected_by: str
    corrected_at: datetime


class DoseHistoryView(msgspec.Struct, kw_only=True):
    current: DoseView
    revisions: list[DoseRevisionView]


class AefiBody(Body, kw_only=True):
    dose_id: UUID
    onset_on: date
    symptoms: Annotated[str, msgspec.Meta(min_length=3, max_length=2000)]
    died: bool = False
    life_threatening: bool = False
    hospitalised: bool = False
    disability: bool = False


class AefiView(msgspec.Struct, kw_only=True):
    id: UUID
    dose_id: UUID
    person_id: UUID
    province: str
    site: str
    reporter_kind: str
    onset_on: date
    symptoms: str
    serious: bool
    criteria: list[str]
    created_at: datetime


# -- certificates -------------------------------------------------------------------------


class CertificateView(msgspec.Struct, kw_only=True):
    id: UUID
    format: str
    identifier: str
    dose_id: UUID
    dose_version: int
    media_type: str
    content: str
    issued_at: datetime
    expires_at: datetime | None
    revoked: bool
    revocation_reason: str


class RevokeBody(Body, kw_only=True):
    reason: Reason


class TrustEntryView(msgspec.Struct, kw_only=True):
    kid: str
    country: str
    certificateType: str  # camelCase: the EU gateway's field names
    rawData: str
    thumbprint: str
    notAfter: datetime


class TrustListView(msgspec.Struct, kw_only=True):
    country: str
    certificates: list[TrustEntryView]


class RevocationListView(msgspec.Struct, kw_only=True):
    country: str
    generated_at: datetime
    # hash type ("UCI", "COUNTRYCODEUCI", "SIGNATURE") -> Base64 of the first 128 bits of SHA-256
    hashes: dict[str, list[str]]


class VerifyBody(Body, kw_only=True):
    hc1: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


class VerificationView(msgspec.Struct, kw_only=True):
    """What a checker needs, and nothing more."""

    valid: bool
    reason: str
    name: str | None = None
    birth_date: str | None = None
    summary: str | None = None


# -- figures ------------------------------------------------------------------------------


class CountRow(msgspec.Struct, kw_only=True):
    key: str
    doses: int


class CoverageRow(msgspec.Struct, kw_only=True):
    key: str
    registered: int
    at_least_one_dose: int
    primary_complete: int
    boosted: int


class StockRow(msgspec.Struct, kw_only=True):
    province: str
    product: str
    received: int
    used: int
    available: int
    expired_unused: int


class CountFigures(msgspec.Struct, kw_only=True):
    by: str
    rows: list[CountRow]
    total: int


class CoverageFigures(msgspec.Struct, kw_only=True):
    by: str
    rows: list[CoverageRow]


class StockFigures(msgspec.Struct, kw_only=True):
    rows: list[StockRow]
