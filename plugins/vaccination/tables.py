"""The vaccination plugin's tables.

Composite uniqueness (a lot number per product, stock per lot and site, one
active booking per person...) is kept with a single unique "key" column
built from the parts, so that the same constraint holds on SQLite and
PostgreSQL and Piccolo's automatic migrations can express it. Where a row
must be unique only while it is active, the key is NULL otherwise (both
databases allow many NULLs in a unique column).

``province`` and ``site`` are copied onto the rows that lists filter by, and
``subject_id`` (the account that manages the person) onto every personal
record, so that scope filters run in SQL without joins.
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    UUID,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class Product(Table, tablename="vaccination_product"):
    """A vaccine product, with the codes the EU certificate value sets use."""

    code = Varchar(length=32, primary_key=True)
    name = Varchar(length=120)
    manufacturer = Varchar(length=120)
    dcc_vp = Varchar(length=32)  # vaccine or prophylaxis (SNOMED CT or ATC)
    dcc_mp = Varchar(length=64)  # medicinal product
    dcc_ma = Varchar(length=80)  # marketing authorisation holder or manufacturer
    created_at = Timestamptz()


class ProductRule(Table, tablename="vaccination_product_rule"):
    """A product's schedule from a date on; a booking keeps the rule it was made under."""

    id = UUID(primary_key=True)
    key = Varchar(length=48, unique=True)  # product:effective_from
    product = ForeignKey(references=Product, index=True)
    effective_from = Date()
    primary_doses = Integer()
    min_interval_days = Integer()
    max_interval_days = Integer(null=True, default=None)
    min_age_years = Integer()
    max_age_years = Integer(null=True, default=None)
    booster_doses = Integer(default=0)
    booster_min_interval_days = Integer(null=True, default=None)
    created_by = Varchar(length=80)
    created_at = Timestamptz()


class Site(Table, tablename="vaccination_site"):
    """A vaccination site; its id is what a vaccinator's account is scoped to."""

    id = Varchar(length=64, primary_key=True)
    name = Varchar(length=200)
    province = Varchar(length=2, index=True)
    address = Varchar(length=300, default="")
    active = Boolean(default=True)
    created_at = Timestamptz()


class Lot(Table, tablename="vaccination_lot"):
    id = UUID(primary_key=True)
    key = Varchar(length=100, unique=True)  # product:number
    number = Varchar(length=64, index=True)
    product = ForeignKey(references=Product, index=True)
    expires_on = Date()
    doses_per_vial = Integer()
    created_at = Timestamptz()


class LotStock(Table, tablename="vaccination_lot_stock"):
    """Doses of one lot received at one site, and how many were used."""

    id = UUID(primary_key=True)
    key = Varchar(length=110, unique=True)  # lot id:site id
    lot = ForeignKey(references=Lot, index=True)
    site = ForeignKey(references=Site, index=True)
    province = Varchar(length=2, index=True)
    received = Integer(default=0)
    used = Integer(default=0)
    updated_at = Timestamptz()


class SiteSession(Table, tablename="vaccination_session"):
    """A vaccination session at a site: a day, opening hours, a product and a capacity."""

    id = UUID(primary_key=True)
    site = ForeignKey(references=Site, index=True)
    province = Varchar(length=2, index=True)
    day = Date(index=True)
    starts_at = Varchar(length=5)
    ends_at = Varchar(length=5)
    product = ForeignKey(references=Product)
    capacity = Integer()
    booked = Integer(default=0)
    status = Varchar(length=10, default="open")  # open | closed
    created_at = Timestamptz()


class PriorityOpening(Table, tablename="vaccination_priority_opening"):
    """A priority group that may book now, nationwide (province NULL) or in one province."""

    id = UUID(primary_key=True)
    key = Varchar(length=60, unique=True)  # province or "*":group code
    province = Varchar(length=2, null=True, default=None, index=True)
    group_code = Varchar(length=40)
    opened_by = Varchar(length=80)
    opened_at = Timestamptz()


class Person(Table, tablename="vaccination_person"):
    """A person to vaccinate, with a summary of their doses kept current for figures and reminders."""

    id = UUID(primary_key=True)
    subject_id = Varchar(length=64, index=True)  # the managing citizen account, or person:<id>
    account_holder = Boolean(default=False)
    full_name = Varchar(length=200)
    name_key = Varchar(length=200, index=True)  # normalised name for duplicate detection
    birth_date = Date()
    birth_year = Integer(index=True)
    sex = Varchar(length=10)
    id_number = Varchar(length=20, unique=True)
    phone = Varchar(length=16, null=True, default=None)
    province = Varchar(length=2, index=True)
    priority_group = Varchar(length=40, index=True)
    channel = Varchar(length=10)  # self | dependant | bulk | walk_in
    registered_by = Varchar(length=80)
    duplicate_status = Varchar(length=10, default="none", index=True)  # none | probable | distinct | merged
    duplicate_of = UUID(null=True, default=None)
    doses_received = Integer(default=0)
    primary_complete = Boolean(default=False)
    boosters = Integer(default=0)
    last_dose_on = Date(null=True, default=None)
    last_product = Varchar(length=32, null=True, default=None)
    next_due_on = Date(null=True, default=None, index=True)
    overdue_on = Date(null=True, default=None)
    created_at = Timestamptz()


class Booking(Table, tablename="vaccination_booking"):
    id = UUID(primary_key=True)
    code = Varchar(length=12, unique=True)
    person = ForeignKey(references=Person, index=True)
    subject_id = Varchar(length=64, index=True)
    session = ForeignKey(references=SiteSession, index=True)
    site = Varchar(length=64, index=True)
    province = Varchar(length=2, index=True)
    product = ForeignKey(references=Product)
    rule = ForeignKey(references=ProductRule)
    dose_number = Integer()
    dose_type = Varchar(length=10)  # primary | booster
    status = Varchar(length=12, default="booked", index=True)  # booked | checked_in | done | cancelled
    active_person = Varchar(length=36, null=True, default=None, unique=True)
    screening = JSON(default="{}")
    mixing_justification = Text(default="")
    created_by = Varchar(length=80)
    created_at = Timestamptz()
    checked_in_at = Timestamptz(null=True, default=None)
    cancelled_at = Timestamptz(null=True, default=None)


class WaitlistEntry(Table, tablename="vaccination_waitlist"):
    """Someone waiting for a place in a full session; places are given in priority order."""

    id = UUID(primary_key=True)
    active_key = Varchar(length=80, null=True, default=None, unique=True)  # session:person while waiting
    session = ForeignKey(references=SiteSession, index=True)
    person = ForeignKey(references=Person, index=True)
    subject_id = Varchar(length=64, index=True)
    rank = Integer()
    status = Varchar(length=10, default="waiting", index=True)  # waiting | booked | skipped | cancelled
    screening = JSON(default="{}")
    mixing_justification = Text(default="")
    booking = ForeignKey(references=Booking, null=True, default=None)
    created_by = Varchar(length=80)
    created_at = Timestamptz()


class Dose(Table, tablename="vaccination_dose"):
    """A dose as currently recorded; earlier versions live in ``DoseRevision``."""

    id = UUID(primary_key=True)
    person = ForeignKey(references=Person, index=True)
    subject_id = Varchar(length=64, index=True)
    booking = ForeignKey(references=Booking, null=True, default=None)
    product = ForeignKey(references=Product, index=True)
    lot = ForeignKey(references=Lot)
    site = ForeignKey(references=Site, index=True)
    province = Varchar(length=2, index=True)
    dose_number = Integer()
    dose_type = Varchar(length=10)
    administered_at = Timestamptz()
    administered_on = Date(index=True)  # local (Vietnam) date, for daily figures
    vaccinator = Varchar(length=80)
    mixing_justification = Text(default="")
    screening = JSON(default="{}")
    version = Integer(default=1)
    created_at = Timestamptz()


class DoseRevision(Table, tablename="vaccination_dose_revision"):
    """A replaced version of a dose, kept for staff, with who corrected it and why."""

    id = UUID(primary_key=True)
    dose = ForeignKey(references=Dose, index=True)
    version = Integer()
    snapshot = JSON()
    reason = Text()
    corrected_by = Varchar(length=80)
    corrected_at = Timestamptz()


class AefiReport(Table, tablename="vaccination_aefi"):
    """An adverse event following immunisation, classified serious by the WHO criteria."""

    id = UUID(primary_key=True)
    dose = ForeignKey(references=Dose, index=True)
    person = ForeignKey(references=Person, index=True)
    subject_id = Varchar(length=64, index=True)
    province = Varchar(length=2, index=True)
    site = Varchar(length=64, index=True)
    reporter_kind = Varchar(length=10)  # staff | citizen
    reported_by = Varchar(length=80)
    onset_on = Date()
    symptoms = Text()
    died = Boolean(default=False)
    life_threatening = Boolean(default=False)
    hospitalised = Boolean(default=False)
    disability = Boolean(default=False)
    serious = Boolean(default=False, index=True)
    created_at = Timestamptz()


class Certificate(Table, tablename="vaccination_certificate"):
    """A certificate issued for one version of one dose, in one format."""

    id = UUID(primary_key=True)
    identifier = Varchar(length=120, unique=True)  # the UVCI for EU certificates
    format = Varchar(length=40)
    person = ForeignKey(references=Person, index=True)
    subject_id = Varchar(length=64, index=True)
    dose = ForeignKey(references=Dose, index=True)
    dose_version = Integer()
    province = Varchar(length=2, index=True)
    kid = Varchar(length=32, default="")
    media_type = Varchar(length=80)
    content = Text()
    issued_at = Timestamptz()
    expires_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None, index=True)
    revocation_reason = Text(default="")


class Reminder(Table, tablename="vaccination_reminder"):
    """A reminder sent, so that each (person, dose, kind) is reminded once."""

    id = UUID(primary_key=True)
    key = Varchar(length=60, unique=True)  # person:dose number:due|overdue
    person = ForeignKey(references=Person, index=True)
    dose_number = Integer()
    kind = Varchar(length=10)
    sent_at = Timestamptz()


TABLES: tuple[type[Table], ...] = (
    Product,
    ProductRule,
    Site,
    Lot,
    LotStock,
    SiteSession,
    PriorityOpening,
    Person,
    Booking,
    WaitlistEntry,
    Dose,
    DoseRevision,
    AefiReport,
    Certificate,
    Reminder,
)
