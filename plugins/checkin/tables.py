"""The checkin plugin's tables: venues and their codes, visits and declarations, tracing cases.

Visit and declaration times are UTC Unix seconds (``BigInt``): tracing adds
and compares times in SQL, and integers make that the same SQL on SQLite and
PostgreSQL; on PostgreSQL they are also the keys of the daily partitions
(see ``piccolo_migrations`` and ``retention.py``).
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class Venue(Table, tablename="checkin_venue"):
    """A public place that displays a check-in code; ``site`` is the operator's site."""

    id = UUID(primary_key=True)
    name = Varchar(length=200)
    address = Varchar(length=300)
    province = Varchar(length=2, index=True)
    district = Varchar(length=10)
    ward = Varchar(length=10)
    venue_type = Varchar(length=40)
    capacity = Integer()
    default_stay_minutes = Integer()
    opening_hours_per_day = Integer(default=12)
    contact_phone = Varchar(length=16)
    site = Varchar(length=64, index=True)
    active = Boolean(default=True)
    created_by = Varchar(length=80)
    created_at = Timestamptz()


class SubLocation(Table, tablename="checkin_sub_location"):
    """A room, table, floor or shift of a venue, with its own code for narrower tracing."""

    id = UUID(primary_key=True)
    venue = ForeignKey(references=Venue, index=True)
    name = Varchar(length=120)
    kind = Varchar(length=20)
    capacity = Integer(null=True, default=None)


class VenueCode(Table, tablename="checkin_venue_code"):
    """One issued QR code of a venue or sub-location; rotating or revoking it retires it."""

    id = UUID(primary_key=True)
    venue = ForeignKey(references=Venue, index=True)
    sub_location = ForeignKey(references=SubLocation, null=True, default=None)
    version = Integer()
    issued_at = Timestamptz()
    issued_by = Varchar(length=80)
    revoked_at = Timestamptz(null=True, default=None)
    revoked_by = Varchar(length=80, null=True, default=None)


class Visit(Table, tablename="checkin_visit"):
    """One person's stay at a venue. ``left_at`` is planned (default stay) until they check out."""

    id = UUID(primary_key=True)
    venue_id = UUID()
    sub_location_id = UUID(null=True, default=None)
    province = Varchar(length=2)
    site = Varchar(length=64)
    subject_id = Varchar(length=64)
    phone = Varchar(length=16, null=True, default=None)
    id_number = Varchar(length=12, null=True, default=None)
    full_name = Varchar(length=100)
    arrived_at = BigInt()
    left_at = BigInt()
    checked_out = Boolean(default=False)
    method = Varchar(length=10)  # scan | personal | proxy
    recorded_by = Varchar(length=80)


class Declaration(Table, tablename="checkin_declaration"):
    """The health declaration made with a visit, against a questionnaire version."""

    id = UUID(primary_key=True)
    visit_id = UUID()
    subject_id = Varchar(length=64)
    province = Varchar(length=2)
    venue_id = UUID()
    questionnaire_version = Varchar(length=40)
    answers = JSON()
    risk_flags = JSON()
    risky = Boolean(default=False)
    declared_at = BigInt()
    proxy_by = Varchar(length=80, null=True, default=None)


class IdempotencyKey(Table, tablename="checkin_idempotency"):
    """A client's idempotency key (hashed with who sent it) and the visit it created."""

    key = Varchar(length=64, primary_key=True)
    visit_id = UUID()
    arrived_at = BigInt()
    created_at = BigInt(index=True)


class TracingCase(Table, tablename="checkin_case"):
    """An F0 and the infectious window in which their visits are traced."""

    id = UUID(primary_key=True)
    province = Varchar(length=2, index=True)
    subject_id = Varchar(length=64, null=True, default=None)
    phone = Varchar(length=16, null=True, default=None)
    id_number = Varchar(length=12, null=True, default=None)
    sample_id = Varchar(length=64, null=True, default=None, unique=True)
    source = Varchar(length=10)  # manual | testing
    symptom_onset = Timestamptz(null=True, default=None)
    sampled_at = Timestamptz(null=True, default=None)
    window_start = BigInt()
    window_end = BigInt()
    opened_by = Varchar(length=80)
    opened_at = Timestamptz()
    note = Varchar(length=500, default="")
    f1_count = Integer(default=0)
    f2_count = Integer(default=0)
    traced_at = Timestamptz(null=True, default=None)


class Contact(Table, tablename="checkin_contact"):
    """An F1 or F2 of a case, at their closest degree, with the exposure that put them there."""

    id = UUID(primary_key=True)
    case_id = ForeignKey(references=TracingCase, index=True)
    degree = Integer()
    subject_id = Varchar(length=64)
    phone = Varchar(length=16, null=True, default=None)
    id_number = Varchar(length=12, null=True, default=None)
    full_name = Varchar(length=100)
    via_subject_id = Varchar(length=64, null=True, default=None)
    venue_id = UUID()
    venue_name = Varchar(length=200)
    sub_location_id = UUID(null=True, default=None)
    province = Varchar(length=2, index=True)
    # The contact was met in another province than the case's: that province is told.
    referral = Boolean(default=False)
    exposure_start = BigInt()
    exposure_end = BigInt()
    overlap_minutes = Integer()
    exposures = Integer(default=1)
    risk_score = Float()
    notified_at = Timestamptz(null=True, default=None)


class Zone(Table, tablename="checkin_zone"):
    """A place and time window to close or disinfect because a case was there."""

    id = UUID(primary_key=True)
    case_id = ForeignKey(references=TracingCase, index=True)
    venue_id = UUID()
    venue_name = Varchar(length=200)
    sub_location_id = UUID(null=True, default=None)
    province = Varchar(length=2)
    starts_at = BigInt()
    ends_at = BigInt()


TABLES: tuple[type[Table], ...] = (
    Venue,
    SubLocation,
    VenueCode,
    Visit,
    Declaration,
    IdempotencyKey,
    TracingCase,
    Contact,
    Zone,
)
