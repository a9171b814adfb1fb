"""Entering, releasing and correcting results.

One path for every way results arrive (one by one, a CSV upload, a FHIR
bundle): ``enter_results`` checks every entry first and stores nothing
when any is wrong, then in one transaction closes pools (Dorfman), releases
results, tells each person by ``send_message``, and reports positives to
their province: an audited case report and the ``testing_result_released``
event, at most once per sample.

On PostgreSQL first results are checked by the statement that stores them
(``_enter_set_based``: one ``UPDATE ... FROM unnest`` feeding the result
rows, the notice queue and the retest orders), and any entry that fails
rolls it all back and sends the whole file through the per-entry checks,
which report each problem with its row.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from core import Conflict, InvalidInput, NotFound, Resource, clock
from plugins.testing import bulk, certificates, notices, pooling
from plugins.testing.catalogue import known_test_types
from plugins.testing.identifiers import parse_label
from plugins.testing.places import lab_of, load_lab
from plugins.testing.samples import PURPOSE, check_sample, load_sample, result_versions, result_view, sample_resource
from plugins.testing.schemas import (
    CaseReportView,
    CorrectionIn,
    PoolCorrected,
    ResultsEntered,
    ResultView,
    RowError,
)
from plugins.testing.tables import CaseReport, Pool, PoolResultVersion, ResultVersion, RetestOrder, Sample

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal

EVENT = "testing_result_released"
OUTCOMES = ("negative", "positive", "invalid")


class ResultEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One result as it arrived: ``row`` says where (upload row, bundle entry), for error reports."""

    row: int
    label: str
    outcome: str
    ct_value: float | None = None
    column: str = "label"
    # The LOINC code the sender gave for the test (FHIR), checked against the sample's test type.
    loinc: str | None = None


class UploadRejected(InvalidInput):
    """Some entries are wrong; nothing was stored. ``errors`` says which and why."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} problem(s) found; nothing was stored. Fix them and upload the file again.")
        self.errors = errors


class _Problem(msgspec.Struct, frozen=True):
    row: int
    column: str | None
    message: str
    status: Literal[400, 404, 409]


class _Release(msgspec.Struct, frozen=True, kw_only=True):
    sample_id: str
    outcome: str
    ct_value: float | None
    source: Literal["individual", "pool", "correction"]
    pool: str | None = None
    # The sample's result version before: above 0 when a pool correction withdrew its earlier result.
    previous: int = 0


# -- entering results -----------------------------------------------------------------------


async def enter_results(
    platform: Platform,
    principal: Principal,
    entries: list[ResultEntry],
    *,
    lab: str | None = None,
    single: bool = False,
) -> ResultsEntered:
    """Store every entry or none. ``single``: answer one entry's problem with its own 400/404/409."""
    lab_row = await _lab_for(platform, principal, lab)
    limit = platform.plugin_config("testing").max_upload_rows
    if len(entries) > limit:
        raise InvalidInput(f"file: {len(entries)} results at once; the limit is {limit} (max_upload_rows)")
    if platform.db.kind == "postgres" and not platform.db.in_transaction():
        # Outside a caller's transaction only: rolling back its own is how it falls back to the careful path.
        entered = await _enter_set_based(platform, principal, entries, lab_row)
        if entered is not None:
            await notices.send_soon(platform, entered.released)
            return entered
    problems, pools, samples = await _check(platform, entries, lab_row["code"])
    if problems:
        if single and len(problems) == 1:
            raise _as_error(problems[0])
        raise UploadRejected([RowError(row=p.row, column=p.column, message=p.message) for p in problems])
    now = clock.now()
    async with platform.db.transaction():
        releases, retests = await _enter_pools(platform, principal, pools, lab=lab_row["code"], now=now)
        releases.extend(
            _Release(
                sample_id=label,
                outcome=entry.outcome,
                ct_value=entry.ct_value,
                source="individual",
                previous=row["result_version"],
            )
            for label, (entry, row) in samples.items()
        )
        # A member's own result closes its retest order.
        retested = [label for label, (_entry, row) in samples.items() if row["status"] == "retest"]
        await bulk.update_ids(
            platform, RetestOrder, {"done_at": now}, retested, only_if="done_at IS NULL", key="sample"
        )
        reported = await _release(platform, principal, releases, lab=lab_row["code"], now=now)
    await notices.send_soon(platform, [r.sample_id for r in releases])
    return ResultsEntered(
        entries=len(entries),
        released=[r.sample_id for r in releases],
        retests=retests,
        reported_positive=reported,
    )


async def _enter_pools(
    platform: Platform,
    principal: Principal,
    pools: dict[str, tuple[ResultEntry, dict[str, Any]]],
    *,
    lab: str,
    now: datetime,
) -> tuple[list[_Release], list[str]]:
    """Close checked pools (Dorfman): the negatives their members take, and the members sent for retesting."""
    if not pools:
        return [], []
    pool_outcomes = {label: entry.outcome for label, (entry, _row) in pools.items()}
    await pooling.close_pools(
        platform,
        {label: (entry.outcome, entry.ct_value) for label, (entry, _row) in pools.items()},
        lab=lab,
        by=principal.id,
        now=now,
    )
    members = await pooling.members_of(platform, list(pools))
    labs = {label: (row["lab"], row["lab_province"]) for label, (_entry, row) in pools.items()}
    retests = await pooling.order_retests(platform, pool_outcomes, members, labs, now=now)
    releases = [
        _Release(sample_id=member, outcome="negative", ct_value=None, source="pool", pool=pool_id)
        for pool_id, outcome in pool_outcomes.items()
        for member in pooling.dorfman(outcome, members[pool_id]).negative
    ]
    return releases, retests


# -- the set-based path (PostgreSQL) ----------------------------------------------------------


class _Recheck(Exception):
    """Some sample did not pass the set-based checks: roll back and check every entry one by one."""


async def _enter_set_based(
    platform: Platform, principal: Principal, entries: list[ResultEntry], lab_row: dict[str, Any]
) -> ResultsEntered | None:
    """``enter_results`` for first results on PostgreSQL: the samples checked and stored by one statement.

    The checks of ``_problem_with`` (and of the Ct value's and LOINC code's
    test type) are the conditions of the statement that stores the samples'
    results (``_STORE_FIRST_RESULTS``), so the 100,000 samples of a big upload
    are neither read into Python nor sent twice. If any sample fails them
    (or is not a first result: a retest after a withdrawn result), the
    transaction rolls back and this returns None, and the caller checks every
    entry one by one, which reports each problem with its row. Pools are read
    and checked first, as on the careful path.
    """
    problems, parsed = _parse_entries(entries)
    if problems or len(parsed) >= _ROWS_PER_PREFIX:
        return None
    lab = lab_row["code"]
    types = known_test_types(platform)
    pool_labels = [label for _entry, kind, label in parsed if kind == "pool"]
    pool_rows = await _fetch(platform, Pool, pool_labels)
    pools: dict[str, tuple[ResultEntry, dict[str, Any]]] = {}
    ids: list[str] = []
    outcomes: list[str] = []
    cts: list[float | None] = []
    allowed: list[str | None] = []
    allowed_for: dict[tuple[bool, str | None], str | None] = {}
    for entry, kind, label in parsed:
        if kind == "pool":
            row = pool_rows.get(label)
            if row is None or _entry_problem(entry, kind, label, row, lab, types) is not None:
                return None
            pools[label] = (entry, row)
            continue
        ids.append(label)
        outcomes.append(entry.outcome)
        cts.append(entry.ct_value)
        if entry.ct_value is None and entry.loinc is None:
            allowed.append(None)
            continue
        key = (entry.ct_value is not None, entry.loinc)
        if key not in allowed_for:
            allowed_for[key] = ",".join(
                code
                for code, test_type in types.items()
                if (entry.ct_value is None or test_type.method == "naat")
                and (entry.loinc is None or test_type.loinc == entry.loinc)
            )
        allowed.append(allowed_for[key])
    now = clock.now()
    try:
        async with platform.db.transaction():
            connection = bulk.connection_of(platform)
            # The stored rows pass through a few CTEs; this keeps them in memory rather than temporary files.
            await connection.execute("SET LOCAL work_mem = '64MB'")
            releases, retests = await _enter_pools(platform, principal, pools, lab=lab, now=now)
            await _release(platform, principal, releases, lab=lab, now=now)
            reported: list[str] = []
            if ids:
                # A big release queues its notices as one batch; a small one is told at once, so one by one.
                sql = _STORE_FIRST_RESULTS.replace(
                    "{queue}", _QUEUE_EACH if len(releases) + len(ids) <= notices.INLINE else _QUEUE_BATCH
                )
                stored = await connection.fetchrow(
                    sql, ids, outcomes, cts, allowed, now, lab, principal.id, _result_ids(now)
                )
                if stored["stored"] != len(ids):
                    raise _Recheck
                positives = list(stored["positive"])
                if positives:
                    info = await _release_info(platform, positives)
                    result_ids = dict(zip(positives, stored["positive_ids"], strict=True))
                    reported = await _report_positives(
                        platform, principal, [info[sample_id] for sample_id in positives], result_ids, now=now
                    )
    except _Recheck:
        return None
    return ResultsEntered(
        entries=len(entries),
        released=[*(r.sample_id for r in releases), *ids],
        retests=retests,
        reported_positive=reported,
    )


# Version 1 of each sample's result, with every check of ``_problem_with`` (and the test type's, through
# ``allowed``: the test types a Ct value or LOINC code allows, NULL when any) in the WHERE clause: the
# sample exists, was received by this lab, has no result yet, and is not waiting in a pool. Its notice is
# queued (``{queue}``), and the retest order it answers is done. Returns how many were stored, and the positives.
_STORE_FIRST_RESULTS = """
WITH entry AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::float8[], $4::text[]) AS e(id, outcome, ct, allowed)
), sample AS (
    UPDATE testing_sample s
    SET status = 'resulted', result = entry.outcome, result_version = 1, first_result_at = $5, result_at = $5
    FROM entry
    WHERE s.id = entry.id
        AND s.received_at IS NOT NULL
        AND s.lab = $6
        AND s.status <> 'resulted'
        AND s.result_version = 0
        AND (s.pool IS NULL OR s.status = 'retest')
        AND (entry.allowed IS NULL OR s.test_type = ANY(string_to_array(entry.allowed, ',')))
    RETURNING s.id, entry.outcome, entry.ct, s.retest_ordered_at
), result AS (
    INSERT INTO testing_result (id, sample, version, outcome, ct_value, source, pool, lab, entered_by,
                                released_at, current, reason)
    -- In label order: neighbouring entries of the (sample, version) index, and of the samples' key that
    -- the foreign-key checks read, are written and read together (about 10% faster than file order).
    -- The ids: this statement's prefix ($8, see _result_ids) and the row's number, in 6 hex digits.
    SELECT ($8 || lpad(to_hex(row_number() OVER (ORDER BY id)), 6, '0'))::uuid,
        id, 1, outcome, ct, 'individual', NULL, $6, $7, $5, TRUE, '' FROM sample ORDER BY id
    RETURNING id, sample, outcome
), untold AS (
    {queue}
), retest AS (
    UPDATE testing_retest_order SET done_at = $5
    WHERE sample = ANY(ARRAY(SELECT id FROM sample WHERE retest_ordered_at IS NOT NULL)) AND done_at IS NULL
)
SELECT count(*) AS stored,
    coalesce(array_agg(sample ORDER BY sample) FILTER (WHERE outcome = 'positive'), '{}') AS positive,
    coalesce(array_agg(id ORDER BY sample) FILTER (WHERE outcome = 'positive'), '{}') AS positive_ids
FROM result
"""

_ROWS_PER_PREFIX = 1 << 24


def _result_ids(now: datetime) -> str:
    """The first 26 hex digits of the result ids one statement numbers (the last 6 count its rows).

    UUIDs of version 7 (RFC 9562): the time in milliseconds, then 50 random
    bits, then the row's number. Ids made together sort together, so the
    primary key index takes a whole upload at its right edge instead of at
    100,000 random places (and no random UUID is drawn per row): about 13%
    off the statement. Two statements share ids only if they run in the same
    millisecond and draw the same 50 bits.
    """
    millis = int(now.timestamp() * 1000)
    value = (millis << 80) | (0x7 << 76) | (secrets.randbits(12) << 64) | (0b10 << 62) | (secrets.randbits(38) << 24)
    return f"{value:032x}"[:26]


# The notice queue (``plugins/testing/notices.py``): one row per sample, or the samples in one batch row.
_QUEUE_EACH = (
    "INSERT INTO testing_untold (sample, queued_at, claimed_until, attempts, last_error) "
    "SELECT id, $5, NULL, 0, '' FROM sample"
)
_QUEUE_BATCH = (
    "INSERT INTO testing_untold_batch (samples, queued_at) SELECT string_agg(id, ','), $5 FROM sample "
    "HAVING count(*) > 0"
)


async def find_problems(
    platform: Platform, principal: Principal, entries: list[ResultEntry], *, lab: str | None = None
) -> list[RowError]:
    """What ``enter_results`` would reject in ``entries``, without storing anything."""
    lab_row = await _lab_for(platform, principal, lab)
    problems, _pools, _samples = await _check(platform, entries, lab_row["code"])
    return [RowError(row=p.row, column=p.column, message=p.message) for p in problems]


async def _lab_for(platform: Platform, principal: Principal, lab: str | None) -> dict[str, Any]:
    lab_row = await load_lab(lab_of(principal, lab))
    await platform.access.check(
        principal, "testing.result.enter", Resource(kind="lab", province=lab_row["province"], lab=lab_row["code"])
    )
    return lab_row


async def _check(
    platform: Platform, entries: list[ResultEntry], lab: str
) -> tuple[
    list[_Problem], dict[str, tuple[ResultEntry, dict[str, Any]]], dict[str, tuple[ResultEntry, dict[str, Any]]]
]:
    """Every problem with the entries, and the pools and samples to store when there are none."""
    problems, parsed = _parse_entries(entries)
    pool_rows = await _fetch(platform, Pool, [label for _entry, kind, label in parsed if kind == "pool"])
    sample_rows = await _fetch(platform, Sample, [label for _entry, kind, label in parsed if kind == "sample"])
    types = known_test_types(platform)
    pools: dict[str, tuple[ResultEntry, dict[str, Any]]] = {}
    samples: dict[str, tuple[ResultEntry, dict[str, Any]]] = {}
    for entry, kind, label in parsed:
        row = (pool_rows if kind == "pool" else sample_rows).get(label)
        problem = _entry_problem(entry, kind, label, row, lab, types)
        if problem is not None:
            problems.append(problem)
        elif kind == "pool" and row is not None:
            pools[label] = (entry, row)
        elif row is not None:
            samples[label] = (entry, row)
    return problems, pools, samples


def _parse_entries(entries: list[ResultEntry]) -> tuple[list[_Problem], list[tuple[ResultEntry, str, str]]]:
    """The checks that need no stored state: label, outcome, each label once; and (entry, kind, label)."""
    problems: list[_Problem] = []
    parsed: list[tuple[ResultEntry, str, str]] = []
    first_row: dict[str, int] = {}
    for entry in entries:
        try:
            kind, label = parse_label(entry.label, entry.column)
        except InvalidInput as exc:
            problems.append(_Problem(entry.row, entry.column, str(exc), 400))
            continue
        if entry.outcome not in OUTCOMES:
            message = f"outcome: {entry.outcome!r} is not one of {', '.join(OUTCOMES)}"
            problems.append(_Problem(entry.row, "outcome", message, 400))
            continue
        if label in first_row:
            message = f"{entry.column}: {label} is already on row {first_row[label]}"
            problems.append(_Problem(entry.row, entry.column, message, 400))
            continue
        first_row[label] = entry.row
        parsed.append((entry, kind, label))
    return problems, parsed


def _entry_problem(
    entry: ResultEntry, kind: str, label: str, row: dict[str, Any] | None, lab: str, types: dict[str, Any]
) -> _Problem | None:
    """What is wrong with one entry given its pool's or sample's stored state, or None."""
    problem = _problem_with(entry, kind, label, row, lab)
    test_type = types.get(row["test_type"]) if row is not None else None
    if problem is None and test_type is not None and entry.ct_value is not None and test_type.method != "naat":
        message = f"ct_value: {label} is a {test_type.code} test, which has no Ct value"
        problem = _Problem(entry.row, "ct_value", message, 400)
    if problem is None and test_type is not None and entry.loinc is not None and entry.loinc != test_type.loinc:
        message = (
            f"code: {label} is a {test_type.code} sample (LOINC {test_type.loinc}), "
            f"but the result is for LOINC {entry.loinc}"
        )
        problem = _Problem(entry.row, "code", message, 400)
    return problem


def _problem_with(entry: ResultEntry, kind: str, label: str, row: dict[str, Any] | None, lab: str) -> _Problem | None:
    column = entry.column
    what = "pool" if kind == "pool" else "sample"
    if row is None:
        return _Problem(entry.row, column, f"{column}: no {what} {label}", 404)
    if row["received_at"] is None:
        return _Problem(entry.row, column, f"{column}: {what} {label} has not been received by a lab", 409)
    if row["lab"] != lab:
        return _Problem(entry.row, column, f"{column}: {what} {label} was received by lab {row['lab']}, not {lab}", 409)
    if kind == "pool":
        if row["status"] != "at_lab":
            return _Problem(entry.row, column, f"{column}: pool {label} already has a result ({row['status']})", 409)
        return None
    if row["status"] == "resulted":
        return _Problem(
            entry.row,
            column,
            f"{column}: sample {label} already has a result ({row['result']}); send a correction to change it",
            409,
        )
    if row["pool"] is not None and row["status"] != "retest":
        return _Problem(
            entry.row,
            column,
            f"{column}: sample {label} is in pool {row['pool']}; enter the pool's result (members are retested "
            "only when the pool is positive or invalid)",
            409,
        )
    return None


# -- releasing -------------------------------------------------------------------------------


async def _release(
    platform: Platform, principal: Principal, releases: list[_Release], *, lab: str, now: datetime
) -> list[str]:
    """Results: store each sample's next version, update the samples, queue the notices, report positives.

    Nearly every release is a first result (version 1), stored set-wise; a
    sample whose earlier result a pool correction withdrew gets its next one.
    Returns the samples reported positive to their province.
    """
    if not releases:
        return []
    first = [r for r in releases if r.previous == 0]
    result_ids = await _release_again(platform, principal, [r for r in releases if r.previous > 0], lab=lab, now=now)
    # The samples first: updating rows that the results' foreign-key checks have just locked costs 3x more.
    for outcome in OUTCOMES:
        ids = [r.sample_id for r in first if r.outcome == outcome]
        changes = {
            "status": "resulted",
            "result": outcome,
            "result_version": 1,
            "first_result_at": now,
            "result_at": now,
        }
        updated = await bulk.update_ids(platform, Sample, changes, ids, only_if="result_version = 0")
        if updated != len(ids):
            raise Conflict("label: some of these samples got a result from another request at the same time")
    rows = [(r.sample_id, 1, r.outcome, r.ct_value, r.source, r.pool, lab, principal.id, now, True, "") for r in first]
    if platform.db.kind == "postgres":
        # PostgreSQL numbers the versions itself (gen_random_uuid()): faster than 100,000 uuid4() calls.
        await bulk.insert(platform, ResultVersion, RESULT_COLUMNS[1:], rows)
    else:
        await bulk.insert(platform, ResultVersion, RESULT_COLUMNS, [(uuid.uuid4(), *row) for row in rows])
    await notices.queue_first(platform, [r.sample_id for r in first], now=now)
    positives = [r.sample_id for r in releases if r.outcome == "positive"]
    if not positives:
        return []
    info = await _release_info(platform, positives)
    found = await bulk.select_in(
        platform,
        "SELECT id, sample FROM testing_result WHERE version = 1 AND {in}",
        "sample",
        [r.sample_id for r in first if r.outcome == "positive"],
    )
    result_ids |= {row["sample"]: row["id"] for row in found}
    return await _report_positives(platform, principal, list(info.values()), result_ids, now=now)


async def _release_again(
    platform: Platform, principal: Principal, releases: list[_Release], *, lab: str, now: datetime
) -> dict[str, uuid.UUID]:
    """The next version for samples whose earlier result a pool correction withdrew (a pool's few members)."""
    result_ids: dict[str, uuid.UUID] = {}
    for release in releases:
        moved = (
            await Sample.update(
                {
                    Sample.status: "resulted",
                    Sample.result: release.outcome,
                    Sample.result_version: release.previous + 1,
                    Sample.result_at: now,
                }
            )
            .where((Sample.id == release.sample_id) & (Sample.result_version == release.previous))
            .returning(Sample.id)
        )
        if not moved:
            raise Conflict("label: some of these samples got a result from another request at the same time")
        result_ids[release.sample_id] = uuid.uuid4()
        await ResultVersion.insert(
            ResultVersion(
                id=result_ids[release.sample_id],
                sample=release.sample_id,
                version=release.previous + 1,
                outcome=release.outcome,
                ct_value=release.ct_value,
                source=release.source,
                pool=release.pool,
                lab=lab,
                entered_by=principal.id,
                released_at=now,
                current=True,
                reason="",
            )
        )
        await notices.queue_again(release.sample_id, now=now)
    return result_ids


RESULT_COLUMNS = (
    "id",
    "sample",
    "version",
    "outcome",
    "ct_value",
    "source",
    "pool",
    "lab",
    "entered_by",
    "released_at",
    "current",
    "reason",
)


async def _release_info(platform: Platform, sample_ids: list[str]) -> dict[str, Any]:
    """What messages and reports need about each sample and its person."""
    rows = await bulk.select_in(platform, _RELEASE_INFO, "s.id", sample_ids)
    return {row["id"]: row for row in rows}


_RELEASE_INFO = (
    "SELECT s.id, s.province, s.site, s.lab, s.subject_id, s.test_type, s.collected_at, s.symptom_onset, "
    "p.full_name, p.phone, p.citizen_id FROM testing_sample s JOIN testing_person p ON p.id = s.person WHERE {in}"
)


async def _report_positives(
    platform: Platform,
    principal: Principal,
    rows: list[dict[str, Any]],
    result_ids: dict[str, uuid.UUID],
    *,
    now: datetime,
) -> list[str]:
    """Report each positive to its province once (a case report and the event), audited."""
    known = {
        row["sample"]
        for row in await bulk.select_in(
            platform, "SELECT sample FROM testing_case_report WHERE {in}", "sample", [row["id"] for row in rows]
        )
    }
    # Reported before: a sample opens one case, however often it turns positive.
    reported = [row for row in rows if row["id"] not in known]
    event_ids = await platform.events.publish_many(EVENT, [(event_payload(row), row["province"]) for row in reported])
    reports = [
        (row["id"], result_ids[row["id"]], row["subject_id"], row["province"], event_id, now, principal.id)
        for row, event_id in zip(reported, event_ids, strict=True)
    ]
    # The unique sample makes a concurrent second report fail, and with it its whole release.
    await bulk.insert(platform, CaseReport, CASE_REPORT_COLUMNS, reports)
    if reported:
        await platform.audit.record(
            principal,
            "testing.case.report",
            [
                Resource(
                    kind="sample",
                    id=row["id"],
                    province=row["province"],
                    site=row["site"],
                    subject_id=row["subject_id"],
                )
                for row in reported
            ],
            purpose=PURPOSE,
            detail="positive result reported to the province health authority",
        )
    return [row["id"] for row in reported]


CASE_REPORT_COLUMNS = ("sample", "result", "subject_id", "province", "event_id", "reported_at", "reported_by")


def event_payload(row: dict[str, Any]) -> dict[str, Any]:
    """The ``testing_result_released`` payload, as documented in ``plugins/testing/hookspecs.py``."""
    onset = row["symptom_onset"]
    return {
        "sample_id": row["id"],
        "subject_id": row["citizen_id"],
        "phone": row["phone"],
        "province": row["province"],
        "result": "positive",
        "collected_at": clock.as_utc(row["collected_at"]).isoformat(),
        "symptom_onset": onset.isoformat() if onset is not None else None,
    }


# -- corrections ------------------------------------------------------------------------------


async def correct_result(
    platform: Platform, principal: Principal, sample_id: str, data: CorrectionIn
) -> list[ResultView]:
    """Amend a released result with a reason; the old version stays for staff; the person is told again."""
    row = await load_sample(sample_id)
    if row["result"] is None:
        raise Conflict(f"sample_id: {row['id']} has no released result to correct")
    await check_sample(platform, principal, "testing.result.correct", row)
    test_type = known_test_types(platform).get(row["test_type"])
    if data.ct_value is not None and test_type is not None and test_type.method != "naat":
        raise InvalidInput(f"ct_value: {row['id']} is a {test_type.code} test, which has no Ct value")
    now = clock.now()
    version = row["result_version"]
    result_id = uuid.uuid4()
    async with platform.db.transaction():
        moved = (
            await Sample.update(
                {Sample.result: data.outcome, Sample.result_version: version + 1, Sample.result_at: now}
            )
            .where((Sample.id == row["id"]) & (Sample.result_version == version))
            .returning(Sample.id)
        )
        if not moved:
            raise Conflict(f"sample_id: {row['id']} was corrected by someone else just now; reload and try again")
        await ResultVersion.update({ResultVersion.current: False, ResultVersion.superseded_at: now}).where(
            (ResultVersion.sample == row["id"]) & (ResultVersion.current == True)  # noqa: E712
        )
        await ResultVersion.insert(
            ResultVersion(
                id=result_id,
                sample=row["id"],
                version=version + 1,
                outcome=data.outcome,
                ct_value=data.ct_value,
                source="correction",
                lab=row["lab"] or "",
                entered_by=principal.id,
                released_at=now,
                current=True,
                reason=data.reason.strip(),
            )
        )
        await notices.queue_again(row["id"], now=now)
        await certificates.revoke_for_samples(
            platform, principal, [row], reason=f"result version {version} corrected", now=now
        )
        info = await _release_info(platform, [row["id"]])
        if data.outcome == "positive":
            await _report_positives(platform, principal, [info[row["id"]]], {row["id"]: result_id}, now=now)
        await platform.audit.record(
            principal,
            "testing.result.correct",
            sample_resource(row),
            purpose=PURPOSE,
            detail=f"result version {version} -> {version + 1}",
        )
    await notices.send_soon(platform, [row["id"]])
    versions = await result_versions([row["id"]])
    return [result_view(v) for v in versions[row["id"]]]


async def correct_pool(platform: Platform, principal: Principal, pool_label: str, data: CorrectionIn) -> PoolCorrected:
    """Amend a released pool result with a reason, and apply Dorfman's rule to its members again.

    Negative to positive or invalid: members holding the pool's negative lose
    it (the version stays for staff) and are retested, as when a pool first
    comes back positive. Positive or invalid to negative: members still
    waiting for their own result take the pool's negative and their retests
    are cancelled. A member with a result of its own keeps it. Everyone whose
    result changed is told again, certificates of withdrawn results are
    revoked, and all of it is one transaction.
    """
    pool = await pooling.load_pool(pool_label)
    if pool["result_version"] == 0:
        raise Conflict(f"pool_id: {pool['id']} has no released result to correct")
    await pooling.check_pool(platform, principal, "testing.result.correct", pool)
    test_type = known_test_types(platform).get(pool["test_type"])
    if data.ct_value is not None and test_type is not None and test_type.method != "naat":
        raise InvalidInput(f"ct_value: {pool['id']} is a {test_type.code} pool, which has no Ct value")
    now = clock.now()
    version, before, after = pool["result_version"], pool["status"], data.outcome
    reason = data.reason.strip()
    withdrawn: list[str] = []
    released: list[str] = []
    kept: list[str] = []
    revoked = 0
    async with platform.db.transaction():
        moved = (
            await Pool.update(
                {
                    Pool.status: after,
                    Pool.ct_value: data.ct_value,
                    Pool.outcome_at: now,
                    Pool.result_version: version + 1,
                }
            )
            .where((Pool.id == pool["id"]) & (Pool.result_version == version))
            .returning(Pool.id)
        )
        if not moved:
            raise Conflict(f"pool_id: {pool['id']} was corrected by someone else just now; reload and try again")
        await PoolResultVersion.update({PoolResultVersion.current: False, PoolResultVersion.superseded_at: now}).where(
            (PoolResultVersion.pool == pool["id"]) & (PoolResultVersion.current == True)  # noqa: E712
        )
        await PoolResultVersion.insert(
            PoolResultVersion(
                id=uuid.uuid4(),
                pool=pool["id"],
                version=version + 1,
                outcome=after,
                ct_value=data.ct_value,
                lab=pool["lab"] or "",
                entered_by=principal.id,
                released_at=now,
                current=True,
                reason=reason,
            )
        )
        members = await _members(pool["id"])
        for member in members:
            derived = member["source"] == "pool" and member["from_pool"] == pool["id"]
            if member["result"] is not None and not derived:
                kept.append(member["id"])
        if before == "negative" and after != "negative":
            withdrawn = await _withdraw([m for m in members if m["id"] not in kept], f"pool_{after}", now=now)
            await pooling.reorder_retests(pool, withdrawn, f"pool_{after}", now=now)
        elif before != "negative" and after == "negative":
            waiting = [m for m in members if m["status"] == "retest"]
            releases = [
                _Release(
                    sample_id=m["id"],
                    outcome="negative",
                    ct_value=None,
                    source="pool",
                    pool=pool["id"],
                    previous=m["result_version"],
                )
                for m in waiting
            ]
            released = [r.sample_id for r in releases]
            await pooling.cancel_retests(released, now=now)
            await _release(platform, principal, releases, lab=pool["lab"] or "", now=now)
        elif before != after:
            await pooling.change_retest_reason(pool["id"], f"pool_{after}")
        changed = [m for m in members if m["id"] in {*withdrawn, *released}]
        revoked = await certificates.revoke_for_samples(
            platform, principal, changed, reason=f"pool {pool['id']} result corrected", now=now
        )
        await platform.audit.record(
            principal,
            "testing.pool.correct",
            pooling.pool_resource(pool),
            purpose=PURPOSE,
            detail=f"pool result version {version} -> {version + 1}: {before} -> {after}",
        )
        if changed:
            await platform.audit.record(
                principal,
                "testing.result.correct",
                [sample_resource(m) for m in changed],
                purpose=PURPOSE,
                detail=f"pool {pool['id']} corrected {before} -> {after}: result derived again",
            )
    await notices.send_soon(platform, [*withdrawn, *released])
    return PoolCorrected(
        pool=await pooling.pool_view(platform, principal, pool["id"]),
        withdrawn=withdrawn,
        released=released,
        cancelled_retests=released,
        retests=withdrawn,
        kept=kept,
        revoked_certificates=revoked,
    )


async def _members(pool_id: str) -> list[dict[str, Any]]:
    """Each member's state and where its current result came from (``source``, ``from_pool``)."""
    rows = await Sample.select(
        Sample.id,
        Sample.province,
        Sample.site,
        Sample.lab,
        Sample.subject_id,
        Sample.status,
        Sample.result,
        Sample.result_version,
    ).where(Sample.pool == pool_id)
    current = {
        row["sample"]: row
        for row in await ResultVersion.select(ResultVersion.sample, ResultVersion.source, ResultVersion.pool).where(
            ResultVersion.sample.is_in([row["id"] for row in rows] or [""]) & (ResultVersion.current == True)  # noqa: E712
        )
    }
    return [
        {
            **row,
            "source": current[row["id"]]["source"] if row["id"] in current else None,
            "from_pool": current[row["id"]]["pool"] if row["id"] in current else None,
        }
        for row in sorted(rows, key=lambda row: row["id"])
    ]


async def _withdraw(members: list[dict[str, Any]], reason: str, *, now: datetime) -> list[str]:
    """Take the pool's negative back from these members: it stays as a superseded version; they await a retest."""
    withdrawn: list[str] = []
    for member in members:
        if member["result"] is None:
            continue  # already waiting for its own result
        moved = (
            await Sample.update(
                {
                    Sample.status: "retest",
                    Sample.result: None,
                    Sample.result_at: None,
                    Sample.retest_ordered_at: now,
                    Sample.retest_reason: reason,
                }
            )
            .where((Sample.id == member["id"]) & (Sample.result_version == member["result_version"]))
            .returning(Sample.id)
        )
        if not moved:
            raise Conflict(f"pool_id: member {member['id']} was corrected by someone else just now; try again")
        withdrawn.append(member["id"])
    if withdrawn:
        await ResultVersion.update({ResultVersion.current: False, ResultVersion.superseded_at: now}).where(
            ResultVersion.sample.is_in(withdrawn) & (ResultVersion.current == True)  # noqa: E712
        )
        for sample_id in withdrawn:
            await notices.queue_again(sample_id, now=now)
    return withdrawn


# -- case reports ------------------------------------------------------------------------------


async def case_reports(
    platform: Platform, principal: Principal, *, since: datetime | None = None, limit: int = 500
) -> list[CaseReportView]:
    """Positives reported to the provinces the principal may see (audited: names and phones)."""
    scope = await platform.access.scope(principal, "testing.report.list")
    query = CaseReport.select(
        CaseReport.sample,
        CaseReport.province,
        CaseReport.subject_id,
        CaseReport.reported_at,
        CaseReport.event_id,
        CaseReport.sample.site.as_alias("site"),
        CaseReport.sample.collected_at.as_alias("collected_at"),
        CaseReport.sample.symptom_onset.as_alias("symptom_onset"),
        CaseReport.sample.person.full_name.as_alias("full_name"),
        CaseReport.sample.person.phone.as_alias("phone"),
        CaseReport.sample.person.date_of_birth.as_alias("date_of_birth"),
    )
    where = scope.where(province=CaseReport.province, subject=CaseReport.subject_id)
    if where is not None:
        query = query.where(where)
    if since is not None:
        query = query.where(CaseReport.reported_at >= since)
    rows = await query.order_by(CaseReport.id, ascending=False).limit(limit)
    if rows:
        await platform.audit.record(
            principal,
            "testing.report.list",
            [
                Resource(kind="case_report", id=row["sample"], province=row["province"], subject_id=row["subject_id"])
                for row in rows
            ],
            purpose=PURPOSE,
        )
    return [
        CaseReportView(
            sample_id=row["sample"],
            province=row["province"],
            site=row["site"],
            full_name=row["full_name"],
            phone=row["phone"],
            date_of_birth=row["date_of_birth"],
            collected_at=clock.as_utc(row["collected_at"]),
            symptom_onset=row["symptom_onset"],
            reported_at=clock.as_utc(row["reported_at"]),
            event_id=row["event_id"],
        )
        for row in rows
    ]


# -- helpers ------------------------------------------------------------------------------------


async def _fetch(platform: Platform, table: type[Pool] | type[Sample], labels: list[str]) -> dict[str, Any]:
    """The state ``_check`` needs of each labelled pool or sample."""
    columns = ["id", "status", "lab", "received_at", "test_type"]
    if table is Pool:
        columns += ["lab_province"]
    if table is Sample:
        columns += ["pool", "result", "result_version"]
    if not labels:
        return {}
    selected = ", ".join(f'"{column}"' for column in columns)
    sql = f'SELECT {selected} FROM "{table._meta.tablename}" WHERE {{in}}'  # noqa: S608
    return {row["id"]: row for row in await bulk.select_in(platform, sql, '"id"', labels)}


def _as_error(problem: _Problem) -> Exception:
    if problem.status == 404:
        return NotFound(problem.message)
    if problem.status == 409:
        return Conflict(problem.message)
    return InvalidInput(problem.message)
