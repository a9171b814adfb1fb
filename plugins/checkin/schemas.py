"""Request and response bodies of the checkin API, with the constraints that reject bad input.

Names and free text may not start with a character that a spreadsheet
would run as a formula (``= + - @``, tab, carriage return): they are refused
with a 400 naming the field, and exports neutralise them again anyway.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from core.fields import SAFE_TEXT, Phone, ProvinceCode, SiteId, pattern

PersonName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=SAFE_TEXT)]
VenueName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=SAFE_TEXT)]
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=300, pattern=SAFE_TEXT)]
_NOTE = pattern(
    r"^(|" + SAFE_TEXT[1:-1] + r")$",
    "may be empty; if not, must not start with = + - @ or a space (a spreadsheet would run it as a formula) "
    "and must not contain control characters",
)
Note = Annotated[str, msgspec.Meta(max_length=500, pattern=_NOTE)]
DistrictCode = Annotated[str, msgspec.Meta(pattern=pattern(r"^[0-9]{3}$", "a district code: three digits"))]
WardCode = Annotated[str, msgspec.Meta(pattern=pattern(r"^[0-9]{5}$", "a ward code: five digits"))]
TypeCode = Annotated[
    str,
    msgspec.Meta(
        pattern=pattern(r"^[a-z][a-z0-9_]{1,39}$", "2 to 40 lower-case letters, digits and _, a letter first")
    ),
]
# Citizen identity card: 12 digits (CCCD) or the older 9 (CMND).
IdNumber = Annotated[
    str, msgspec.Meta(pattern=pattern(r"^([0-9]{9}|[0-9]{12})$", "an identity card number: 12 digits, or 9 (CMND)"))
]
Token = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
StayMinutes = Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)]
# Times sent by clients must say their time zone; a bare 08:30 is ambiguous.
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]

_CODE = pattern(r"^[a-z0-9_.]+$", "lower-case letters, digits, _ and . only")
QuestionId = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=_CODE)]
ChoiceCode = Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=_CODE)]
AnswerText = Annotated[str, msgspec.Meta(max_length=500)]
Answer = bool | AnswerText | Annotated[list[ChoiceCode], msgspec.Meta(max_length=30)]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies refuse fields they do not know, so typos are not silently dropped."""


# -- venues ---------------------------------------------------------------------------


class SubLocationBody(Body):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=SAFE_TEXT)]
    kind: Literal["room", "table", "floor", "shift", "area", "vehicle"] = "room"
    capacity: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None


class VenueBody(Body):
    name: VenueName
    address: Address
    province: ProvinceCode
    district: DistrictCode
    ward: WardCode
    venue_type: TypeCode
    capacity: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    contact_phone: Phone
    default_stay_minutes: Annotated[int, msgspec.Meta(ge=5, le=24 * 60)] = 60
    opening_hours_per_day: Annotated[int, msgspec.Meta(ge=1, le=24)] = 12
    site: SiteId | None = None
    sub_locations: Annotated[list[SubLocationBody], msgspec.Meta(max_length=500)] = msgspec.field(default_factory=list)


class RotateBody(Body):
    sub_location_id: UUID | None = None


class PosterBatchBody(Body):
    venue_ids: Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=200)]
    format: Literal["svg", "png", "pdf"] = "pdf"


class SubLocationView(msgspec.Struct):
    id: str
    name: str
    kind: str
    capacity: int | None


class CodeView(msgspec.Struct):
    id: str
    sub_location_id: str | None
    sub_location_name: str | None
    version: int
    issued_at: datetime
    token: str
    url: str


class VenueView(msgspec.Struct):
    id: str
    name: str
    address: str
    province: str
    district: str
    ward: str
    venue_type: str
    capacity: int
    default_stay_minutes: int
    opening_hours_per_day: int
    contact_phone: str
    site: str
    active: bool
    sub_locations: list[SubLocationView]
    codes: list[CodeView]


class VenueTypeView(msgspec.Struct):
    code: str
    label_vi: str
    label_en: str
    risk_weight: float


# -- check-ins --------------------------------------------------------------------------


class DeclarationBody(Body):
    questionnaire_version: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    answers: Annotated[dict[QuestionId, Answer], msgspec.Meta(max_length=100)]


class CheckinBody(Body):
    """A person checks in by scanning a venue's code."""

    code: Token
    full_name: PersonName
    declaration: DeclarationBody
    arrived_at: AwareTime | None = None
    stay_minutes: StayMinutes | None = None


class ScanBody(Body):
    """Venue staff scan a person's personal code with a device key."""

    personal_code: Token
    venue_id: UUID
    sub_location_id: UUID | None = None
    full_name: PersonName | None = None
    declaration: DeclarationBody | None = None
    arrived_at: AwareTime | None = None
    stay_minutes: StayMinutes | None = None


class ProxyBody(Body):
    """Staff declare for a person without a phone app, by phone number or identity card number."""

    venue_id: UUID
    full_name: PersonName
    declaration: DeclarationBody
    sub_location_id: UUID | None = None
    phone: Phone | None = None
    id_number: IdNumber | None = None
    arrived_at: AwareTime | None = None
    stay_minutes: StayMinutes | None = None


class CheckoutBody(Body):
    left_at: AwareTime | None = None


class VisitView(msgspec.Struct, kw_only=True):
    id: str
    venue_id: str
    venue_name: str
    sub_location_id: str | None
    sub_location_name: str | None
    arrived_at: datetime
    left_at: datetime
    status: Literal["present", "checked_out", "auto_checked_out"]
    method: str
    repeat: bool = False
    risky: bool = False
    risk_flags: list[str] = msgspec.field(default_factory=list)


class PersonalCodeView(msgspec.Struct):
    token: str
    expires_at: datetime
    svg: str


class PlaceView(msgspec.Struct):
    """What the app shows after scanning a venue code, before the person declares."""

    venue_id: str
    venue_name: str
    venue_type: str
    province: str
    sub_location_id: str | None
    sub_location_name: str | None
    default_stay_minutes: int


# -- tracing ------------------------------------------------------------------------------


class CaseBody(Body):
    """An epidemiologist opens a case for an F0 known by citizen id, phone or identity card."""

    province: ProvinceCode
    subject_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:.-]+$")] | None = None
    phone: Phone | None = None
    id_number: IdNumber | None = None
    symptom_onset: date | None = None
    sampled_at: AwareTime | None = None
    isolated_at: AwareTime | None = None
    note: Note = ""


class ZoneView(msgspec.Struct):
    venue_id: str
    venue_name: str
    sub_location_id: str | None
    province: str
    starts_at: datetime
    ends_at: datetime


class CaseView(msgspec.Struct, kw_only=True):
    id: str
    province: str
    source: str
    sample_id: str | None
    subject_id: str | None
    phone: str | None
    window_start: datetime
    window_end: datetime
    opened_at: datetime
    opened_by: str
    note: str
    f1_count: int
    f2_count: int
    traced_at: datetime | None
    zones: list[ZoneView] = msgspec.field(default_factory=list)


class ContactView(msgspec.Struct, kw_only=True):
    id: str
    case_id: str
    degree: int
    subject_id: str
    full_name: str
    phone: str | None
    id_number: str | None
    via_subject_id: str | None
    venue_id: str
    venue_name: str
    sub_location_id: str | None
    province: str
    referral: bool
    exposure_start: datetime
    exposure_end: datetime
    overlap_minutes: int
    exposures: int
    risk_score: float
    notified_at: datetime | None


class NotifyResult(msgspec.Struct):
    notified: int
    already_notified: int
    unreachable: int


class FlagView(msgspec.Struct, kw_only=True):
    declaration_id: str
    visit_id: str
    venue_id: str
    province: str
    subject_id: str
    full_name: str
    phone: str | None
    declared_at: datetime
    risk_flags: list[str]


# -- figures and retention ----------------------------------------------------------------


class HourlyCount(msgspec.Struct):
    hour: datetime
    checkins: int


class DailyCount(msgspec.Struct):
    day: date
    province: str
    checkins: int
    venues: int


class CapacityRow(msgspec.Struct, kw_only=True):
    venue_id: str
    venue_name: str
    province: str
    capacity: int
    suggested_visitors: int
    checkins: int
    coverage: float
    peak_present: int


class PurgeResult(msgspec.Struct, kw_only=True):
    cutoff: datetime
    visits: int
    declarations: int
    idempotency_keys: int
    partitions_dropped: int
