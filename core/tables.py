"""The core's own tables: identity, consent, audit, outboxes, rate limits, jobs."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    UUID,
    BigInt,
    BigSerial,
    Boolean,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class AdminUnit(Table, tablename="admin_unit"):
    """Administrative units (provinces) loaded from a data file, not code."""

    code = Varchar(length=10, unique=True, index=True)
    name = Varchar(length=120)
    name_en = Varchar(length=120)
    level = Varchar(length=20, default="province")
    parent_code = Varchar(length=10, null=True, default=None)


class StaffAccount(Table, tablename="staff_account"):
    id = UUID(primary_key=True)
    username = Varchar(length=64, unique=True, index=True)
    password_hash = Text()
    display_name = Varchar(length=200)
    roles = JSON(default="[]")
    province = Varchar(length=2, null=True, default=None)
    site = Varchar(length=64, null=True, default=None)
    lab = Varchar(length=64, null=True, default=None)
    active = Boolean(default=True)
    created_at = Timestamptz()


class Citizen(Table, tablename="citizen"):
    """A person who signed in with their phone number."""

    id = UUID(primary_key=True)
    phone = Varchar(length=16, unique=True, index=True)
    created_at = Timestamptz()


class AccessToken(Table, tablename="access_token"):
    """Bearer tokens for staff and citizens; only a SHA-256 of the token is stored."""

    id = UUID(primary_key=True)
    token_hash = Varchar(length=64, unique=True, index=True)
    account_kind = Varchar(length=10)  # staff | citizen
    account_id = UUID(index=True)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)


class ApiKey(Table, tablename="api_key"):
    """Keys for devices (venue scanners) and services (lab systems)."""

    id = UUID(primary_key=True)
    key_hash = Varchar(length=64, unique=True, index=True)
    prefix = Varchar(length=16)
    name = Varchar(length=200)
    kind = Varchar(length=10, default="device")  # device | service
    roles = JSON(default="[]")
    province = Varchar(length=2, null=True, default=None)
    site = Varchar(length=64, null=True, default=None)
    lab = Varchar(length=64, null=True, default=None)
    created_by = Varchar(length=80)
    created_at = Timestamptz()
    expires_at = Timestamptz(null=True, default=None)
    revoked_at = Timestamptz(null=True, default=None)


class OtpChallenge(Table, tablename="otp_challenge"):
    id = UUID(primary_key=True)
    phone = Varchar(length=16, index=True)
    code_hash = Varchar(length=64)
    created_at = Timestamptz()
    expires_at = Timestamptz()
    attempts = Integer(default=0)
    consumed_at = Timestamptz(null=True, default=None)


class RateBucket(Table, tablename="rate_bucket"):
    """Fixed-window counters, used when no Redis is configured."""

    bucket = Varchar(length=255, primary_key=True)
    hits = Integer(default=0)
    expires_at = BigInt(index=True)


class ConsentRecord(Table, tablename="consent_record"):
    """One grant or withdrawal. The latest record per subject and purpose decides."""

    id = BigSerial(primary_key=True)
    subject_id = Varchar(length=64, index=True)
    purpose = Varchar(length=80)
    purpose_version = Integer()
    granted = Boolean()
    recorded_at = Timestamptz()
    recorded_by = Varchar(length=80)


class AuditLog(Table, tablename="audit_log"):
    """Append-only, hash-chained record of every access to personal data."""

    id = BigSerial(primary_key=True)
    at = Timestamptz()
    actor_id = Varchar(length=80)
    actor_kind = Varchar(length=10)
    action = Varchar(length=120)
    subject_id = Varchar(length=64, null=True, default=None, index=True)
    resource_kind = Varchar(length=60)
    resource_id = Varchar(length=120, null=True, default=None)
    purpose = Varchar(length=80)
    province = Varchar(length=2, null=True, default=None)
    request_id = Varchar(length=64, null=True, default=None)
    detail = Text(default="")
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64, unique=True)


class AuditHead(Table, tablename="audit_head"):
    """The newest link of the audit chain, so that removing the newest rows is detected too."""

    id = Integer(primary_key=True)
    last_id = BigInt()
    last_hash = Varchar(length=64)


class MessageOutbox(Table, tablename="message_outbox"):
    """Messages written by the default channel: durable, readable by the CLI and tests."""

    id = UUID(primary_key=True)
    channel = Varchar(length=10)  # sms | email | app
    recipient = Varchar(length=200, index=True)
    kind = Varchar(length=80)
    body_vi = Text()
    body_en = Text()
    province = Varchar(length=2, null=True, default=None)
    created_at = Timestamptz()
    status = Varchar(length=10, default="queued")


class EventOutbox(Table, tablename="event_outbox"):
    """Domain events, written in the same transaction as the fact they announce."""

    id = UUID(primary_key=True)
    event = Varchar(length=120, index=True)
    payload = JSON()
    province = Varchar(length=2, null=True, default=None)
    created_at = Timestamptz()


class EventDelivery(Table, tablename="event_delivery"):
    """One handler's delivery of one event: retried with backoff until it succeeds."""

    id = UUID(primary_key=True)
    event = ForeignKey(references=EventOutbox, index=True)
    plugin = Varchar(length=120)
    status = Varchar(length=10, default="pending", index=True)  # pending | delivered | dead
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz()
    claimed_until = Timestamptz(null=True, default=None)
    delivered_at = Timestamptz(null=True, default=None)
    last_error = Text(default="")


class JobLease(Table, tablename="job_lease"):
    """Which worker runs a scheduled job, and when it last ran."""

    name = Varchar(length=120, primary_key=True)
    leased_until = Timestamptz()
    holder = Varchar(length=80)
    last_run_at = Timestamptz(null=True, default=None)
    last_status = Text(default="")


class ProvincePluginState(Table, tablename="province_plugin_state"):
    """A province's decision to switch one of its plugins on or off."""

    plugin = Varchar(length=120, primary_key=True)
    province = Varchar(length=2)
    enabled = Boolean(default=True)
    changed_by = Varchar(length=80)
    changed_at = Timestamptz()


CORE_TABLES: tuple[type[Table], ...] = (
    AdminUnit,
    StaffAccount,
    Citizen,
    AccessToken,
    ApiKey,
    OtpChallenge,
    RateBucket,
    ConsentRecord,
    AuditLog,
    AuditHead,
    MessageOutbox,
    EventOutbox,
    EventDelivery,
    JobLease,
    ProvincePluginState,
)
