"""Citizens get their results online: a result code plus a second factor, or their signed-in phone.

The result code from the receipt is checked with a second factor: the
date of birth, or a one-time code sent to the phone on record. A mistyped
code, an expired code, a locked code and a wrong second factor all get the
same answer, so an attacker learns nothing about which codes exist. Each
code allows ``lookup_attempt_limit`` wrong factors in its lifetime, then
locks (the site can issue a new receipt); every client address has a rate
budget. A family sharing one phone signs in with it and sees each member's
results, each named.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from core import InvalidInput, Message, NotFound, Principal, clock
from core.tables import Citizen
from plugins.testing import certificates
from plugins.testing.catalogue import known_test_types
from plugins.testing.certificates import TestCertificate
from plugins.testing.identifiers import code_digest, normalize_code
from plugins.testing.places import settings_of
from plugins.testing.samples import PURPOSE, RESULT_CODE, result_versions, sample_resource, timeline
from plugins.testing.schemas import CitizenResult, LookupIn, LookupOtpIn, LookupOtpSent
from plugins.testing.tables import Sample

if TYPE_CHECKING:
    from core.platform import Platform

HOUR = 3600
NO_MATCH = (
    "Không tìm thấy kết quả cho mã này với ngày sinh hoặc mã xác thực đã nhập, hoặc mã đã hết hạn hay bị khóa. "
    "Kiểm tra lại phiếu hẹn, hoặc xin phiếu mới ở điểm lấy mẫu. / "
    "No result matches this code with that date of birth or one-time code, or the code has expired or is locked. "
    "Check your receipt, or ask the collection site for a new one."
)
OTP_SENT = (
    "Nếu mã tra cứu đúng, mã xác thực đã được gửi tới số điện thoại đã đăng ký. / "
    "If the result code is valid, a one-time code was sent to the phone on record."
)
CITIZEN_STATUS = {
    "collected": "collected",
    "pooled": "in_pool",
    "at_lab": "at_lab",
    "retest": "retesting",
    "resulted": "result",
}


async def lookup(platform: Platform, client: str, data: LookupIn) -> CitizenResult:
    """The result for a code and its second factor; one answer (404, ``NO_MATCH``) for every failure."""
    settings = settings_of(platform)
    await platform.limiter.enforce(
        f"testing:lookup:{client}",
        limit=settings.lookup_per_client_per_hour,
        window=HOUR,
        what="result lookups from this address",
    )
    if (data.date_of_birth is None) == (data.otp is None):
        raise InvalidInput("date_of_birth: give either the date of birth or the one-time code (otp)")
    code = normalize_code(data.code)
    digest = code_digest(platform.settings.secret_key, RESULT_CODE, code) if code is not None else None
    if platform.db.kind == "postgres" and data.date_of_birth is not None:
        row, rows = await _lookup_by_birth(platform, digest or "", data.date_of_birth, settings)
        right = row is not None
    else:
        row, right, rows = await _lookup_in_transaction(platform, digest or "", data, settings)
    # Raised after the commit: the failed attempt must stay counted.
    if row is None or not right:
        raise NotFound(NO_MATCH)
    holder = Principal(id=f"result-code:{row['id']}", kind="citizen", subject_id=row["subject_id"])
    await platform.audit.record(holder, "testing.result.lookup", sample_resource(row), purpose=PURPOSE)
    versions = [
        {"version": r["version"], "released_at": r["released_at"], "outcome": r["outcome"]}
        for r in rows
        if r["version"] is not None
    ]
    return citizen_result(platform, row, versions)


async def _lookup_by_birth(
    platform: Platform, digest: str, born: date, settings: Any
) -> tuple[dict[str, Any] | None, list[Any]]:
    """PostgreSQL, date of birth: the code's row and versions if the date is right, in one round trip.

    ``testing_lookup_by_birth`` (a migration) does under the code's lock what
    ``_lookup_in_transaction`` does: it judges the date (a date compares as one
    integer, so in constant time) and counts a wrong one. It runs once, before
    any row is returned; the rows are read as of the statement's start, which
    changes nothing that was judged.
    """
    since = clock.now() - timedelta(days=settings.result_retention_days)
    rows = await platform.db.fetch(_LOOKUP_BY_BIRTH, digest, digest, born, settings.lookup_attempt_limit, since)
    if not rows or _expired(platform, rows[0]):
        return None, []
    return rows[0], rows


async def _lookup_in_transaction(
    platform: Platform, digest: str, data: LookupIn, settings: Any
) -> tuple[dict[str, Any] | None, bool, list[Any]]:
    """The code's row, whether the factor given is right, and its versions; a wrong factor is counted."""
    # The code is locked while its factor is checked, so parallel guesses queue up and each wrong
    # one is counted before the next is judged: the limit holds however fast they come. A right
    # answer writes nothing (an advisory lock, not a row lock, so its commit waits for no disk);
    # only a wrong one (or a used one-time code) does. SQLite's write transaction is the lock there.
    async with platform.db.transaction():
        if platform.db.kind == "postgres":
            await platform.db.fetch(_LOCK_CODE, LOOKUP_LOCK_CLASS, digest)
        rows = await platform.db.fetch(_LOOKUP, digest)
        row = rows[0] if rows else None
        right = False
        if row is not None and not _expired(platform, row) and row["lookup_failures"] < settings.lookup_attempt_limit:
            if data.date_of_birth is not None:
                right = _same(str(row["date_of_birth"]), data.date_of_birth.isoformat())
            else:
                right = _otp_matches(platform, row, data.otp or "")
            if not right:
                await platform.db.fetch(_COUNT_FAILURE, row["id"])
            elif data.otp is not None:
                # A one-time code is used up.
                await platform.db.fetch(_USE_OTP, row["id"])
    return row, right, rows


# The citizen's lookup runs on every request of the result page: one statement fetches the sample,
# its person and its result versions (one row per version), by the code's digest (a unique index).
_SELECT_CODE = (
    "SELECT s.id, s.subject_id, s.test_type, s.site, s.province, s.lab, s.status, s.result, s.result_version, "
    "s.collected_at, s.pooled_at, s.received_at, s.retest_ordered_at, s.retest_reason, s.result_at, "
    "s.lookup_failures, s.lookup_otp_hash, s.lookup_otp_expires_at, p.full_name, p.date_of_birth, "
    "r.version, r.released_at, r.outcome "
    "FROM testing_sample s JOIN testing_person p ON p.id = s.person "
    "LEFT JOIN testing_result r ON r.sample = s.id "
    "WHERE s.result_code_hash = {} "
)
_LOOKUP = _SELECT_CODE + "ORDER BY r.version"
# The judgment is an uncorrelated subquery: PostgreSQL runs it once per statement, before rows come out.
_LOOKUP_BY_BIRTH = _SELECT_CODE + "AND (SELECT testing_lookup_by_birth({}, {}, {}, {})) ORDER BY r.version"
# The code's own lock: a class of its own (two-key advisory locks), then the digest's hash.
LOOKUP_LOCK_CLASS = 0x7465  # "te"
_LOCK_CODE = "SELECT pg_advisory_xact_lock({}, hashtext({}))"
_COUNT_FAILURE = "UPDATE testing_sample SET lookup_failures = lookup_failures + 1 WHERE id = {}"
_USE_OTP = "UPDATE testing_sample SET lookup_otp_hash = NULL, lookup_otp_expires_at = NULL WHERE id = {}"


def _same(stored: str, given: str) -> bool:
    """Compare a second factor in constant time, so response times do not tell how much of it was right."""
    return hmac.compare_digest(stored.encode(), given.encode())


async def send_lookup_otp(platform: Platform, client: str, data: LookupOtpIn) -> LookupOtpSent:
    """Send a one-time code to the phone of the person behind a result code; the same answer either way."""
    settings = settings_of(platform)
    await platform.limiter.enforce(
        f"testing:lookup:{client}",
        limit=settings.lookup_per_client_per_hour,
        window=HOUR,
        what="result lookups from this address",
    )
    row = await _sample_for_code(platform, data.code)
    if row is None or _expired(platform, row) or row["lookup_failures"] >= settings.lookup_attempt_limit:
        return LookupOtpSent(detail=OTP_SENT)
    budget = await platform.limiter.hit(
        f"testing:lookup-otp:{row['id']}", limit=settings.lookup_otp_per_code_per_hour, window=HOUR
    )
    if not budget.allowed:
        return LookupOtpSent(detail=OTP_SENT)
    otp = f"{secrets.randbelow(10**6):06d}"
    minutes = settings.lookup_otp_ttl_minutes
    async with platform.db.transaction():
        await Sample.update(
            {
                Sample.lookup_otp_hash: _otp_digest(platform, row["id"], otp),
                Sample.lookup_otp_expires_at: clock.now() + timedelta(minutes=minutes),
            }
        ).where(Sample.id == row["id"])
        await platform.messages.send(
            Message(
                channel="sms",
                recipient=row["phone"],
                kind="testing.lookup_otp",
                body_vi=f"Ma xac thuc tra cuu ket qua xet nghiem: {otp}. Het han sau {minutes} phut. "
                "Khong chia se ma nay.",
                body_en=f"Your test result lookup code is {otp}. It expires in {minutes} minutes. Do not share it.",
                province=row["province"],
            )
        )
    return LookupOtpSent(detail=OTP_SENT)


async def phone_results(platform: Platform, principal: Principal) -> list[CitizenResult]:
    """Every result of the people registered with the signed-in citizen's phone (a family's phone)."""
    rows = await _phone_rows(platform, principal)
    if not rows:
        return []
    await platform.audit.record(
        principal, "testing.result.read_own", [sample_resource(row) for row in rows], purpose=PURPOSE
    )
    versions = await result_versions([row["id"] for row in rows])
    return [citizen_result(platform, row, versions.get(row["id"], [])) for row in rows]


async def _phone_rows(platform: Platform, principal: Principal, sample_id: str | None = None) -> list[dict[str, Any]]:
    if principal.subject_id is None:
        raise InvalidInput("principal: only a signed-in citizen has results")
    citizen = await Citizen.select(Citizen.phone).where(Citizen.id == principal.subject_id).first()
    if citizen is None:
        return []
    query = _lookup_query().where(
        (Sample.person.phone == citizen["phone"]) | (Sample.person.citizen_id == principal.subject_id)
    )
    if sample_id is not None:
        query = query.where(Sample.id == sample_id)
    rows = await query.order_by(Sample.collected_at, ascending=False).limit(200)
    return [dict(row) for row in rows if not _expired(platform, row)]


def citizen_result(platform: Platform, row: dict[str, Any], versions: list[dict[str, Any]]) -> CitizenResult:
    test_type = known_test_types(platform).get(row["test_type"])
    result_at = clock.as_utc(row["result_at"]) if row["result_at"] is not None else None
    return CitizenResult(
        sample_id=row["id"],
        full_name=row["full_name"],
        test_type=row["test_type"],
        test_name_vi=test_type.name_vi if test_type else row["test_type"],
        test_name_en=test_type.name_en if test_type else row["test_type"],
        collected_at=clock.as_utc(row["collected_at"]),
        status=CITIZEN_STATUS.get(row["status"], row["status"]),
        result=row["result"],
        result_at=result_at,
        corrected=row["result_version"] > 1,
        retrievable_until=_expiry(platform, result_at),
        timeline=timeline(row, versions),
    )


async def _sample_for_code(platform: Platform, raw_code: str) -> dict[str, Any] | None:
    code = normalize_code(raw_code)
    if code is None:
        return None
    digest = code_digest(platform.settings.secret_key, RESULT_CODE, code)
    query = _lookup_query().where(Sample.result_code_hash == digest)
    row = await query.first()
    return dict(row) if row is not None else None


def _lookup_query() -> Any:
    return Sample.select(
        *Sample.all_columns(exclude=[Sample.result_code_hash]),
        Sample.person.full_name.as_alias("full_name"),
        Sample.person.date_of_birth.as_alias("date_of_birth"),
        Sample.person.phone.as_alias("phone"),
    )


def _expired(platform: Platform, row: dict[str, Any]) -> bool:
    if row["result_at"] is None:
        return False  # no result yet: the person may follow the sample until it has one
    until = _expiry(platform, clock.as_utc(row["result_at"]))
    return until is not None and until <= clock.now()


def _expiry(platform: Platform, result_at: datetime | None) -> datetime | None:
    if result_at is None:
        return None
    return result_at + timedelta(days=settings_of(platform).result_retention_days)


def _otp_matches(platform: Platform, row: dict[str, Any], otp: str) -> bool:
    stored = row["lookup_otp_hash"]
    expires = row["lookup_otp_expires_at"]
    if stored is None or expires is None or clock.as_utc(expires) <= clock.now():
        return False
    return hmac.compare_digest(stored, _otp_digest(platform, row["id"], otp))


def _otp_digest(platform: Platform, sample_id: str, otp: str) -> str:
    key = platform.settings.secret_key.encode()
    return hmac.new(key, f"testing:lookup-otp:{sample_id}:{otp}".encode(), hashlib.sha256).hexdigest()


async def expire_result_codes(platform: Platform) -> str:
    """Job: forget the result codes of results older than the retention period (they cannot be used)."""
    cutoff = clock.now() - timedelta(days=settings_of(platform).result_retention_days)
    expired = (
        await Sample.update({Sample.result_code_hash: None, Sample.lookup_otp_hash: None})
        .where(Sample.result_code_hash.is_not_null() & (Sample.result_at <= cutoff))
        .returning(Sample.id)
    )
    return f"expired {len(expired)} result code(s)"


async def certificate_by_code(platform: Platform, client: str, data: LookupIn) -> TestCertificate:
    """A negative test certificate for whoever holds the result code and its second factor."""
    found = await lookup(platform, client, data)
    holder = Principal(id=f"result-code:{found.sample_id}", kind="citizen")
    return await certificates.issue(platform, holder, found.sample_id)


async def phone_certificate(platform: Platform, principal: Principal, sample_id: str) -> TestCertificate:
    """A negative test certificate for a result the signed-in citizen's phone may see."""
    wanted = sample_id.strip().upper()
    if not await _phone_rows(platform, principal, wanted):
        raise NotFound(f"sample_id: no result of yours with sample {sample_id[:40]}")
    return await certificates.issue(platform, principal, wanted)
