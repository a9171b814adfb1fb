"""The testing plugin's tables: sites, labs, labels, people, samples, pools, results and reports.

Where a row belongs (``province``, ``site``, ``lab``) and whose it is
(``subject_id``) are columns of the row itself, so list queries are
filtered in SQL by the principal's scope without joins.
"""

from __future__ import annotations

from piccolo.columns import (
    UUID,
    BigSerial,
    Boolean,
    Date,
    DoublePrecision,
    ForeignKey,
    Integer,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class CollectionSite(Table, tablename="testing_site"):
    """A place where samples are collected; ``code`` is what staff accounts name as their site."""

    code = Varchar(length=64, primary_key=True)
    name = Varchar(length=200)
    province = Varchar(length=2, index=True)
    pool_size_max = Integer(default=10)
    active = Boolean(default=True)
    created_at = Timestamptz()


class Lab(Table, tablename="testing_lab"):
    """A laboratory; ``code`` is what lab technicians' accounts and lab system keys name as their lab."""

    code = Varchar(length=64, primary_key=True)
    name = Varchar(length=200)
    province = Varchar(length=2, index=True)
    active = Boolean(default=True)
    created_at = Timestamptz()


class LabelStock(Table, tablename="testing_label"):
    """Pre-printed tube labels issued to a site; each can be used once."""

    id = Varchar(length=32, primary_key=True)
    kind = Varchar(length=10)  # sample | pool
    site = Varchar(length=64, index=True)
    province = Varchar(length=2)
    issued_by = Varchar(length=80)
    issued_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)


class Person(Table, tablename="testing_person"):
    """The person a sample was taken from: a signed-in citizen, or a walk-in."""

    id = UUID(primary_key=True)
    # Whose data this is in the audit trail: the citizen's id when known, else this row's id.
    subject_id = Varchar(length=64, index=True)
    citizen_id = Varchar(length=64, null=True, default=None, index=True)
    full_name = Varchar(length=200)
    date_of_birth = Date()
    phone = Varchar(length=16, index=True)
    id_number = Varchar(length=20, null=True, default=None, index=True)
    created_at = Timestamptz()


class PreRegistration(Table, tablename="testing_registration"):
    """A citizen's registration before collection; the site scans its code to take the person's data."""

    id = UUID(primary_key=True)
    code_hash = Varchar(length=64, unique=True)
    person = ForeignKey(references=Person)
    created_by = Varchar(length=80)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)


class Pool(Table, tablename="testing_pool"):
    """Up to ``max_size`` samples of one site in one tube, tested as one sample."""

    id = Varchar(length=32, primary_key=True)
    test_type = Varchar(length=40)
    site = Varchar(length=64, index=True)
    province = Varchar(length=2, index=True)
    max_size = Integer()
    size = Integer(default=0)
    created_by = Varchar(length=80)
    created_at = Timestamptz()
    lab = Varchar(length=64, null=True, default=None, index=True)
    lab_province = Varchar(length=2, null=True, default=None)
    received_at = Timestamptz(null=True, default=None)
    # open -> at_lab -> negative | positive | invalid
    status = Varchar(length=10, default="open", index=True)
    outcome_at = Timestamptz(null=True, default=None)
    ct_value = DoublePrecision(null=True, default=None)
    entered_by = Varchar(length=80, null=True, default=None)
    # 0 while waiting for a result; each correction adds one (the versions are in ``testing_pool_result``).
    result_version = Integer(default=0)


class Sample(Table, tablename="testing_sample"):
    """One tube from one person. ``status`` and ``result`` are the current state, for listing."""

    id = Varchar(length=32, primary_key=True)
    person = ForeignKey(references=Person, index=True, on_delete=OnDelete.restrict)
    subject_id = Varchar(length=64, index=True)
    test_type = Varchar(length=40)
    site = Varchar(length=64, index=True)
    province = Varchar(length=2, index=True)
    collected_by = Varchar(length=80)
    collected_at = Timestamptz(index=True)
    symptom_onset = Date(null=True, default=None)
    pool = ForeignKey(references=Pool, null=True, default=None, index=True, on_delete=OnDelete.restrict)
    pooled_at = Timestamptz(null=True, default=None)
    lab = Varchar(length=64, null=True, default=None, index=True)
    lab_province = Varchar(length=2, null=True, default=None)
    received_at = Timestamptz(null=True, default=None)
    retest_ordered_at = Timestamptz(null=True, default=None)
    retest_reason = Varchar(length=20, null=True, default=None)  # pool_positive | pool_invalid
    # collected -> pooled -> at_lab -> retest -> resulted
    status = Varchar(length=10, default="collected")
    result = Varchar(length=10, null=True, default=None)  # negative | positive | invalid
    result_version = Integer(default=0)
    first_result_at = Timestamptz(null=True, default=None)
    result_at = Timestamptz(null=True, default=None)
    # The person has been told up to this version (a later one is told as a correction).
    notified_version = Integer(default=0)
    result_code_hash = Varchar(length=64, null=True, default=None, unique=True)
    lookup_failures = Integer(default=0)
    lookup_otp_hash = Varchar(length=64, null=True, default=None)
    lookup_otp_expires_at = Timestamptz(null=True, default=None)


class ResultVersion(Table, tablename="testing_result"):
    """Every version of a sample's result; corrections add a version and keep the old one."""

    id = UUID(primary_key=True)
    sample = ForeignKey(references=Sample)  # indexed with version: unique (sample, version)
    version = Integer()
    outcome = Varchar(length=10)
    ct_value = DoublePrecision(null=True, default=None)
    source = Varchar(length=10)  # individual | pool
    pool = Varchar(length=32, null=True, default=None)
    lab = Varchar(length=64)
    entered_by = Varchar(length=80)
    released_at = Timestamptz()
    current = Boolean(default=True)
    superseded_at = Timestamptz(null=True, default=None)
    reason = Text(default="")


class PoolResultVersion(Table, tablename="testing_pool_result"):
    """Every version of a pool's own result; a correction adds a version and keeps the old one."""

    id = UUID(primary_key=True)
    pool = ForeignKey(references=Pool)  # indexed with version: unique (pool, version)
    version = Integer()
    outcome = Varchar(length=10)
    ct_value = DoublePrecision(null=True, default=None)
    lab = Varchar(length=64)
    entered_by = Varchar(length=80)
    released_at = Timestamptz()
    current = Boolean(default=True)
    superseded_at = Timestamptz(null=True, default=None)
    reason = Text(default="")


class UntoldResult(Table, tablename="testing_untold"):
    """A sample whose person has a released result to be told; the row goes once they are told.

    A queue of its own, so that releasing a result changes no indexed column
    of ``testing_sample`` (PostgreSQL can then update the row in place).
    """

    sample = Varchar(length=32, primary_key=True)
    queued_at = Timestamptz()
    claimed_until = Timestamptz(null=True, default=None)
    attempts = Integer(default=0)
    last_error = Text(default="")


class UntoldBatch(Table, tablename="testing_untold_batch"):
    """The samples of one big release (an upload), queued in one row; the notice job spreads them.

    Writing 100,000 queue rows took a tenth of a big upload's time; the job
    moves a batch into ``testing_untold`` (one row per sample) before telling
    it, in one transaction, so every sample is still told exactly as if
    queued one by one.
    """

    id = BigSerial(primary_key=True)
    samples = Text()  # sample ids, comma-separated
    queued_at = Timestamptz()


class RetestOrder(Table, tablename="testing_retest_order"):
    """A pool member that must be tested on its own because its pool was positive or invalid."""

    id = UUID(primary_key=True)
    sample = ForeignKey(references=Sample, unique=True)
    pool = Varchar(length=32, index=True)
    lab = Varchar(length=64, index=True)
    province = Varchar(length=2)  # the lab's
    reason = Varchar(length=20)  # pool_positive | pool_invalid
    ordered_at = Timestamptz()
    done_at = Timestamptz(null=True, default=None)
    # Set with ``done_at`` when a corrected pool result makes the retest needless.
    cancelled_at = Timestamptz(null=True, default=None)


class CaseReport(Table, tablename="testing_case_report"):
    """A positive result reported to its province's health authority; one per sample."""

    id = BigSerial(primary_key=True)
    sample = ForeignKey(references=Sample, unique=True)
    result = UUID()
    subject_id = Varchar(length=64, index=True)
    province = Varchar(length=2, index=True)
    event_id = Varchar(length=64)
    reported_at = Timestamptz()
    reported_by = Varchar(length=80)


class IssuedCertificate(Table, tablename="testing_certificate"):
    """A signed negative test certificate, kept so that it can be revoked when its result is corrected.

    ``identifier`` (the UVCI) names one version of one sample's result, so
    certificates issued twice for it share it; each has its own signature.
    """

    id = UUID(primary_key=True)
    identifier = Varchar(length=120, index=True)
    sample = ForeignKey(references=Sample, index=True)
    result_version = Integer()
    subject_id = Varchar(length=64)
    province = Varchar(length=2)
    kid = Varchar(length=32, default="")
    content = Text()
    issued_at = Timestamptz()
    expires_at = Timestamptz(index=True)
    revoked_at = Timestamptz(null=True, default=None, index=True)
    revocation_reason = Text(default="")


TESTING_TABLES: tuple[type[Table], ...] = (
    CollectionSite,
    Lab,
    LabelStock,
    Person,
    PreRegistration,
    Pool,
    Sample,
    ResultVersion,
    PoolResultVersion,
    UntoldResult,
    UntoldBatch,
    RetestOrder,
    CaseReport,
    IssuedCertificate,
)
