"""Request and response bodies of the testing API: msgspec Structs with constraints.

Bad input is rejected with a 400 naming the field before a handler runs;
what the constraints cannot say (a label that was never issued, a sample
already in a pool) the domain modules answer with 404 or 409.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from core import fields
from core.fields import Phone, SixDigits, pattern

ProvinceCode = Annotated[fields.ProvinceCode, msgspec.Meta(examples=["01"])]
# The same shape as the site and lab ids on staff accounts and API keys.
PlaceCode = Annotated[fields.SiteId, msgspec.Meta(examples=["clinic-hn-1"])]
PlaceName = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=200,
        pattern=pattern(
            r"^[^\x00-\x1f\x7f=+@-]",
            "must not start with = + - @ (a spreadsheet would run it as a formula) or a control character",
        ),
    ),
]
TypeCode = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=40,
        pattern=pattern(r"^[a-z0-9][a-z0-9-]*$", "lower-case letters, digits and -, a letter or digit first"),
    ),
]
PoolSize = Annotated[int, msgspec.Meta(ge=1, le=50)]
LabelText = Annotated[str, msgspec.Meta(min_length=3, max_length=64, examples=["S-0V8R3M2K9QW4E7T1Y6U5I0P3A2"])]
# Names: no control characters, and no leading character a spreadsheet would run as a formula.
PersonName = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=200,
        pattern=pattern(
            r"^[^\x00-\x1f\x7f=+@\-\s][^\x00-\x1f\x7f]*$",
            "must not start with = + - @ or a space (a spreadsheet would run it as a formula) "
            "and must not contain control characters",
        ),
    ),
]
IdNumber = Annotated[
    str,
    msgspec.Meta(
        pattern=pattern(r"^[A-Za-z0-9]{6,20}$", "6 to 20 letters and digits"),
        description="CCCD, CMND or passport number",
    ),
]
Outcome = Literal["negative", "positive", "invalid"]
CtValue = Annotated[float, msgspec.Meta(ge=0, le=60, description="RT-PCR cycle threshold")]
CodeText = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
OtpCode = SixDigits
Reason = Annotated[
    str,
    msgspec.Meta(
        min_length=5,
        max_length=500,
        pattern=pattern(
            r"^[^\x00-\x08\x0b-\x1f\x7f]*$", "must not contain control characters other than tabs and line breaks"
        ),
    ),
]
Labels = Annotated[list[LabelText], msgspec.Meta(min_length=1, max_length=1000)]


# -- sites, labs, test types, labels --------------------------------------------------


class SiteIn(msgspec.Struct, forbid_unknown_fields=True):
    code: PlaceCode
    name: PlaceName
    province: ProvinceCode
    pool_size_max: PoolSize | None = None


class SitePatch(msgspec.Struct, forbid_unknown_fields=True):
    name: PlaceName | None = None
    pool_size_max: PoolSize | None = None
    active: bool | None = None


class SiteView(msgspec.Struct, kw_only=True):
    code: str
    name: str
    province: str
    pool_size_max: int
    active: bool


class LabIn(msgspec.Struct, forbid_unknown_fields=True):
    code: PlaceCode
    name: PlaceName
    province: ProvinceCode


class LabView(msgspec.Struct, kw_only=True):
    code: str
    name: str
    province: str
    active: bool


class LabelsIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["sample", "pool"]
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    site: PlaceCode | None = None


class LabelsIssued(msgspec.Struct, kw_only=True):
    site: str
    kind: str
    labels: list[str]


# -- people and samples ---------------------------------------------------------------


class PersonIn(msgspec.Struct, forbid_unknown_fields=True):
    """A walk-in: name, date of birth and phone; the ID number when they have one (children do not)."""

    full_name: PersonName
    date_of_birth: date
    phone: Phone
    id_number: IdNumber | None = None


class RegistrationIn(msgspec.Struct, forbid_unknown_fields=True):
    """A citizen registers themselves, or a family member, before going to a collection site."""

    full_name: PersonName
    date_of_birth: date
    id_number: IdNumber | None = None
    # A family member's own phone; without it results go to the signed-in citizen's phone.
    phone: Phone | None = None
    for_self: bool = True


class RegistrationIssued(msgspec.Struct, kw_only=True):
    code: str
    expires_at: datetime
    full_name: str
    qr_svg: str


class SampleIn(msgspec.Struct, forbid_unknown_fields=True):
    """A sample taken now: who from (walk-in data, or a citizen's registration code) and where."""

    test_type: TypeCode = "rt-pcr"
    site: PlaceCode | None = None
    label: LabelText | None = None
    person: PersonIn | None = None
    registration_code: CodeText | None = None
    collected_at: datetime | None = None
    symptom_onset: date | None = None


class SampleReceipt(msgspec.Struct, kw_only=True):
    """What the person takes home. ``result_code`` is shown here once and stored only as a digest."""

    sample_id: str
    test_type: str
    site: str
    collected_at: datetime
    full_name: str
    result_code: str
    lookup_url: str
    receipt_svg: str


class PersonView(msgspec.Struct, kw_only=True):
    full_name: str
    date_of_birth: date
    phone: str
    id_number: str | None


class ResultView(msgspec.Struct, kw_only=True):
    version: int
    outcome: str
    ct_value: float | None
    source: str
    pool: str | None
    lab: str
    entered_by: str
    released_at: datetime
    current: bool
    reason: str


class TimelineStep(msgspec.Struct, kw_only=True):
    """One step of where a sample is: collected, in_pool, at_lab, retesting, result, corrected."""

    step: str
    at: datetime
    label_vi: str
    label_en: str
    outcome: str | None = None


class SampleView(msgspec.Struct, kw_only=True):
    id: str
    test_type: str
    site: str
    province: str
    status: str
    collected_at: datetime
    collected_by: str
    symptom_onset: date | None
    pool: str | None
    lab: str | None
    received_at: datetime | None
    result: str | None
    result_version: int
    result_at: datetime | None
    person: PersonView
    results: list[ResultView]
    timeline: list[TimelineStep]


class SampleSummary(msgspec.Struct, kw_only=True):
    id: str
    test_type: str
    site: str
    lab: str | None
    pool: str | None
    status: str
    result: str | None
    collected_at: datetime
    result_at: datetime | None
    full_name: str


class ReceiptReissued(msgspec.Struct, kw_only=True):
    sample_id: str
    result_code: str
    lookup_url: str
    receipt_svg: str


# -- pools ----------------------------------------------------------------------------------


class PoolIn(msgspec.Struct, forbid_unknown_fields=True):
    samples: Labels
    test_type: TypeCode = "rt-pcr"
    site: PlaceCode | None = None
    label: LabelText | None = None


class PoolAdd(msgspec.Struct, forbid_unknown_fields=True):
    samples: Labels


class PoolView(msgspec.Struct, kw_only=True):
    id: str
    test_type: str
    site: str
    province: str
    max_size: int
    size: int
    status: str
    created_at: datetime
    lab: str | None
    received_at: datetime | None
    outcome_at: datetime | None
    ct_value: float | None
    members: list[str]
    result_version: int
    # Every version of the pool's own result, oldest first (staff only: a correction keeps the old one).
    results: list[PoolResultView]


class PoolResultView(msgspec.Struct, kw_only=True):
    version: int
    outcome: str
    ct_value: float | None
    lab: str
    entered_by: str
    released_at: datetime
    current: bool
    reason: str


class PoolCorrected(msgspec.Struct, kw_only=True):
    """What a pool correction did to the members (Dorfman again): each list names samples."""

    pool: PoolView
    # The pool's negative withdrawn (kept for staff): they are retested.
    withdrawn: list[str]
    # Still waiting for their own result: they take the pool's negative; their retests are cancelled.
    released: list[str]
    cancelled_retests: list[str]
    # Retest orders made or reopened.
    retests: list[str]
    # Members with a result of their own, which stands.
    kept: list[str]
    revoked_certificates: int


# -- lab ------------------------------------------------------------------------------------


class ReceiveIn(msgspec.Struct, forbid_unknown_fields=True):
    labels: Labels
    lab: PlaceCode | None = None  # default: the principal's own lab


class Received(msgspec.Struct, kw_only=True):
    label: str
    kind: str
    samples: int
    received_at: datetime


class ResultIn(msgspec.Struct, forbid_unknown_fields=True):
    label: LabelText
    outcome: Outcome
    ct_value: CtValue | None = None
    lab: PlaceCode | None = None  # default: the principal's own lab


class ResultsEntered(msgspec.Struct, kw_only=True):
    """What a result entry did: results released to people, and pool members sent for retesting."""

    entries: int
    released: list[str]
    retests: list[str]
    reported_positive: list[str]


class CorrectionIn(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Outcome
    reason: Reason
    ct_value: CtValue | None = None


class RetestView(msgspec.Struct, kw_only=True):
    sample_id: str
    pool: str
    lab: str
    reason: str
    ordered_at: datetime


class RevocationListView(msgspec.Struct, kw_only=True):
    """Revoked test certificates in the DCC revocation scheme (the vaccination plugin's format)."""

    country: str
    generated_at: datetime
    # hash type ("UCI", "COUNTRYCODEUCI", "SIGNATURE") -> Base64 of the first 128 bits of SHA-256
    hashes: dict[str, list[str]]


class VerifyIn(msgspec.Struct, forbid_unknown_fields=True):
    hc1: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


class VerificationView(msgspec.Struct, kw_only=True):
    """What a checker needs, and nothing more."""

    valid: bool
    reason: str
    revoked: bool = False
    name: str | None = None
    birth_date: str | None = None
    summary: str | None = None


class RowError(msgspec.Struct, kw_only=True):
    """One problem in an upload: its row (1 is the first data row; 0 the file itself) and column."""

    row: int
    column: str | None
    message: str


class CaseReportView(msgspec.Struct, kw_only=True):
    sample_id: str
    province: str
    site: str
    full_name: str
    phone: str
    date_of_birth: date
    collected_at: datetime
    symptom_onset: date | None
    reported_at: datetime
    event_id: str


# -- citizens ---------------------------------------------------------------------------


class LookupIn(msgspec.Struct, forbid_unknown_fields=True):
    """A result code from the receipt, with the date of birth or a one-time code sent to the phone."""

    code: CodeText
    date_of_birth: date | None = None
    otp: OtpCode | None = None


class LookupOtpIn(msgspec.Struct, forbid_unknown_fields=True):
    code: CodeText


class LookupOtpSent(msgspec.Struct, kw_only=True):
    detail: str


class CitizenResult(msgspec.Struct, kw_only=True):
    """A result as its person sees it: named, so a family sharing a phone can tell whose it is."""

    sample_id: str
    full_name: str
    test_type: str
    test_name_vi: str
    test_name_en: str
    collected_at: datetime
    status: str
    result: str | None
    result_at: datetime | None
    corrected: bool
    retrievable_until: datetime | None
    timeline: list[TimelineStep]


# -- monitoring --------------------------------------------------------------------------


class Percentiles(msgspec.Struct, kw_only=True):
    """Hours between two steps over ``count`` samples."""

    count: int
    p50: float | None
    p90: float | None
    p95: float | None
    max: float | None


class TurnaroundGroup(msgspec.Struct, kw_only=True):
    key: str
    samples: int
    collection_to_receipt: Percentiles
    receipt_to_result: Percentiles
    collection_to_result: Percentiles


class TurnaroundView(msgspec.Struct, kw_only=True):
    group_by: str
    since: datetime
    until: datetime
    groups: list[TurnaroundGroup]


class OverdueSample(msgspec.Struct, kw_only=True):
    sample_id: str
    test_type: str
    site: str
    province: str
    lab: str | None
    pool: str | None
    status: str
    collected_at: datetime
    hours_since_collection: float
