"""Check-ins, three ways: a person scans a venue's code; staff scan a person's personal code;
staff declare on behalf of a person without a phone (proxy). Then check-out.

All three go through ``record_visit``: it checks the times, replays a
request whose idempotency key it has seen, applies the per-identity rate
limit, and then, in one transaction (shared with other check-ins through the
core's group commit), either finds the same visit (a second scan at the same
venue within ``same_visit_minutes``) or stores the visit and its
declaration. Everything is validated before anything is written, so a
refused check-in leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import segno
from litestar.exceptions import PermissionDeniedException

from core import Principal, Resource, clock
from core.audit import audit_entries
from core.batching import BatchWriter
from core.coalesce import Coalescer
from core.errors import Conflict, InvalidInput, NotFound
from core.identity import normalize_phone
from core.ids import canonical_uuid, new_uuid
from core.observability import log_context
from core.ratelimit import RateResult, too_many
from core.signing import Signer
from core.tables import Citizen
from plugins.checkin.declarations import Assessment, assess, questionnaire_for
from plugins.checkin.schemas import (
    CheckinBody,
    PersonalCodeView,
    ProxyBody,
    ScanBody,
    VisitView,
)
from plugins.checkin.settings import CheckinSettings
from plugins.checkin.tables import Declaration, IdempotencyKey, SubLocation, Venue, Visit
from plugins.checkin.venues import Place, known_place, resolve_code

if TYPE_CHECKING:
    from core.platform import Platform

PERSONAL_CONTEXT = "checkin.personal"
HOUR = 3600
# Namespaces the PostgreSQL advisory locks that serialise one person's check-ins.
SUBJECT_LOCK_CLASS = 0x636B


class Person(msgspec.Struct, frozen=True, kw_only=True):
    """Who checks in: a citizen id (or a pseudonym for an identity card), and contact details."""

    subject_id: str
    full_name: str
    phone: str | None = None
    id_number: str | None = None


class _KeyTaken(Exception):
    """A concurrent request with the same idempotency key stored its visit first."""


def settings_of(platform: Platform) -> CheckinSettings:
    config: CheckinSettings = platform.plugin_config("checkin")
    return config


# -- the three ways in ----------------------------------------------------------------------


async def check_in_with_venue_code(
    platform: Platform, principal: Principal, body: CheckinBody, idempotency_key: str | None
) -> VisitView:
    """A signed-in person scanned a venue's poster."""
    if principal.subject_id is None:
        raise PermissionDeniedException("Only a signed-in person can check themselves in.")
    place = await resolve_code(platform, body.code)
    assessment = assess(await questionnaire_for(platform, place.venue), body.declaration)
    # The phone comes from the person's account, looked up with the rest of the batch.
    person = Person(subject_id=principal.subject_id, full_name=body.full_name)
    return await record_visit(
        platform,
        principal,
        place,
        person,
        assessment,
        arrived_at=body.arrived_at,
        stay_minutes=body.stay_minutes,
        method="scan",
        idempotency_key=idempotency_key,
        phone_from_account=True,
    )


async def check_in_with_personal_code(
    platform: Platform, principal: Principal, body: ScanBody, idempotency_key: str | None
) -> VisitView:
    """Venue staff scanned the personal code a person shows on their phone."""
    place = await known_place(platform, body.venue_id, body.sub_location_id)
    await _check_place(platform, principal, "checkin.scan.personal", place)
    claims = personal_signer(platform).verify(body.personal_code, field="personal_code")
    subject_id = str(claims.get("s", ""))
    phone = await _account_phone(platform, subject_id)
    if phone is None:
        raise NotFound("personal_code: this person's account no longer exists")
    assessment = None
    if body.declaration is not None:
        assessment = assess(await questionnaire_for(platform, place.venue), body.declaration)
    person = Person(subject_id=subject_id, full_name=body.full_name or "", phone=phone)
    return await record_visit(
        platform,
        principal,
        place,
        person,
        assessment,
        arrived_at=body.arrived_at,
        stay_minutes=body.stay_minutes,
        method="personal",
        idempotency_key=idempotency_key,
    )


async def declare_by_proxy(
    platform: Platform, principal: Principal, body: ProxyBody, idempotency_key: str | None
) -> VisitView:
    """Staff declared for a person without a phone app; audited as a proxy declaration."""
    if body.phone is None and body.id_number is None:
        raise InvalidInput("phone: give the person's phone number or their id_number")
    place = await known_place(platform, body.venue_id, body.sub_location_id)
    await _check_place(platform, principal, "checkin.visit.proxy", place)
    assessment = assess(await questionnaire_for(platform, place.venue), body.declaration)
    phone = normalize_phone(body.phone) if body.phone is not None else None
    if phone is not None:
        subject_id = str(await platform.identity.citizen_for(phone))
    else:
        assert body.id_number is not None
        subject_id = id_card_subject(platform, body.id_number)
    person = Person(subject_id=subject_id, full_name=body.full_name, phone=phone, id_number=body.id_number)
    return await record_visit(
        platform,
        principal,
        place,
        person,
        assessment,
        arrived_at=body.arrived_at,
        stay_minutes=body.stay_minutes,
        method="proxy",
        idempotency_key=idempotency_key,
    )


# -- the shared pipeline --------------------------------------------------------------------


async def record_visit(
    platform: Platform,
    principal: Principal,
    place: Place,
    person: Person,
    assessment: Assessment | None,
    *,
    arrived_at: datetime | None,
    stay_minutes: int | None,
    method: str,
    idempotency_key: str | None,
    phone_from_account: bool = False,
) -> VisitView:
    """Store a check-in (or find the same visit), once per idempotency key, all or nothing."""
    config = settings_of(platform)
    now = clock.now()
    arrived = arrival_time(config, arrived_at, now)
    stay = stay_minutes or place.venue.default_stay_minutes
    if stay > config.max_stay_minutes:
        raise InvalidInput(f"stay_minutes: at most {config.max_stay_minutes} minutes")
    key = _idempotency_digest(principal, idempotency_key) if idempotency_key else None
    if key is not None:
        replayed = await _replay(key, now)
        if replayed is not None:
            return replayed
    write = _Write(
        principal=principal,
        place=place,
        person=person,
        phone_from_account=phone_from_account,
        assessment=assessment,
        arrived=arrived,
        stay=stay,
        method=method,
        key=key,
        # Only audited check-ins (not a person's own scan) name their request; see _audit_entries.
        request_id=None if method == "scan" else log_context().get("request_id"),
        limits=_rate_limits(config, principal, person),
    )
    try:
        # Acknowledged only once the batch holding this write has committed.
        # On PostgreSQL the writer is called with no transaction around it: it makes its own (see _store_batch).
        visit_id, visit_arrived, repeat = await platform.group_commit.submit_to(
            _writer_for(platform), write, own_transaction=platform.db.kind == "postgres"
        )
    except _KeyTaken:
        replayed = await _replay(key or "", now)
        if replayed is None:
            raise Conflict("Idempotency-Key: a request with this key is still being processed; retry") from None
        return replayed
    flags = list(assessment.risk_flags) if assessment else []
    if repeat:
        view = await visit_view(visit_id, now, arrived_at=visit_arrived)
        if view is None:
            raise NotFound("visit: not found after storing it")
        return msgspec.structs.replace(view, repeat=True, risky=bool(flags), risk_flags=flags)
    # Just stored from what is in hand: reading it back would cost two queries per check-in.
    left = visit_arrived + stay * 60
    return VisitView(
        id=str(visit_id),
        venue_id=place.venue.id,
        venue_name=place.venue.name,
        sub_location_id=place.sub_location_id,
        sub_location_name=place.sub_location_name,
        arrived_at=_time(visit_arrived, now),
        left_at=_time(left, now),
        status=_status(checked_out=False, left_at=left, now=now),
        method=method,
        repeat=False,
        risky=bool(flags),
        risk_flags=flags,
    )


# -- storing a batch of check-ins -------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class _Write:
    """One check-in waiting for its batch: everything checked, nothing stored yet."""

    principal: Principal
    place: Place
    person: Person
    phone_from_account: bool  # look the phone up from the person's citizen account
    assessment: Assessment | None
    arrived: int
    stay: int
    method: str
    key: str | None
    request_id: str | None
    limits: list[tuple[str, int, int, str]]  # (rate-limit key, limit, window, what it counts)


_writers: weakref.WeakKeyDictionary[Platform, BatchWriter] = weakref.WeakKeyDictionary()


def _writer_for(platform: Platform) -> BatchWriter:
    """One batch writer per platform, so the group commit hands it all the batch's check-ins at once."""
    writer = _writers.get(platform)
    if writer is None:

        async def writer(writes: list[_Write]) -> list[Any]:
            return await _store_batch(platform, writes)

        _writers[platform] = writer
    return writer


async def _store_batch(platform: Platform, writes: list[_Write]) -> list[Any]:
    """Store a batch of check-ins, all or nothing; one outcome per check-in.

    An outcome is ``(visit id, its arrival, whether it already existed)`` or
    the exception refusing that check-in alone (rate limit, idempotency key
    taken), for which nothing is stored. On PostgreSQL the group commit calls
    this with no transaction around it (``own_transaction``): a batch that
    fits is stored by one function call, its own transaction (one round trip,
    ``_store_in_one_call``); any other (an audited check-in, someone twice at
    a venue, one idempotency key twice) in a transaction of its own, as is
    every batch the group commit runs again item by item after a failure. In a
    transaction, every step on PostgreSQL is one statement for the whole
    batch; on SQLite (one writer at a time anyway) the check-ins are stored
    one after another.
    """
    config = settings_of(platform)
    if platform.db.kind == "postgres" and not platform.db.in_transaction():
        if _fits_one_call(writes):
            return await _store_in_one_call(platform, config, writes)
        async with platform.db.transaction():
            return await _store_batch(platform, writes)
    outcomes: list[Any] = [None] * len(writes)
    hits = [(key, limit, window) for write in writes for key, limit, window, _what in write.limits]
    counted = iter(await platform.limiter.hit_many(hits))  # in this transaction: they commit with it
    for n, write in enumerate(writes):
        for _key, _limit, _window, what in write.limits:
            result = next(counted)
            if not result.allowed and outcomes[n] is None:
                outcomes[n] = too_many(what, result)
    live = [n for n, outcome in enumerate(outcomes) if outcome is None]
    if platform.db.kind == "postgres":
        await _store_set_wise(platform, config, writes, live, outcomes)
        return outcomes
    for n in live:
        write = writes[n]
        if write.phone_from_account:
            write.person = msgspec.structs.replace(write.person, phone=await citizen_phone(write.person.subject_id))
        try:
            outcomes[n] = await _store(platform, config, write)
        except _KeyTaken as exc:  # refused before anything was written
            outcomes[n] = exc
    return outcomes


def _fits_one_call(writes: list[_Write]) -> bool:
    """Whether ``checkin_store_batch`` can store the batch: no audit records to append with it (only a
    person's own scans, see ``_audit_entries``), no one twice at one venue, no idempotency key twice."""
    keys = [write.key for write in writes if write.key is not None]
    places = {(write.person.subject_id, write.place.venue.id) for write in writes}
    return len(places) == len(writes) and len(set(keys)) == len(keys) and all(w.method == "scan" for w in writes)


# The batch in one call of the function made by migration checkin_2026_11_26t16_50_00_000000 (read it):
# the lock class; the new visits as rows (as ``_visit_row`` makes them, with the account to take each
# phone from); the same-visit window; the declarations by number in the batch; the rate-limit hits
# (number in the batch, bucket, limit, end of the window). Rows, not one array per column: asyncpg's
# cost is per array element.
_STORE_CALL = "SELECT r_kind, r_n, r_id, r_arrived_at, r_key FROM checkin_store_batch({}, {}, {}, {}, {})"


async def _store_in_one_call(platform: Platform, config: CheckinSettings, writes: list[_Write]) -> list[Any]:
    """PostgreSQL, no transaction open: the whole batch in one round trip (``checkin_store_batch``).

    The call is its own transaction, all or nothing: if it fails, nothing of
    the batch is stored (nor counted) and the group commit runs it again, item
    by item, each in a transaction (``_store_set_wise``). The rate limits are
    counted in the function when they are kept in the database, in the same
    transaction as the visits as on the transactional path (refused check-ins
    store nothing); kept in Redis, they are counted there first, as on that
    path (Redis is not part of any database transaction).
    """
    outcomes: list[Any] = [None] * len(writes)
    limiter = platform.limiter
    hits = [(key, limit, window) for write in writes for key, limit, window, _what in write.limits]
    whats = [(n, what) for n, write in enumerate(writes) for *_counted, what in write.limits]
    now = 0
    hit_items: list[int] = []
    buckets: list[str] = []
    limits: list[int] = []
    ends: list[int] = []
    if limiter.counts_in_database:
        now, buckets, ends = limiter.buckets(hits)
        hit_items = [n for n, _what in whats]
        limits = [limit for _key, limit, _window in hits]
    elif hits:
        for (n, what), result in zip(whats, await limiter.hit_many(hits), strict=True):
            if not result.allowed and outcomes[n] is None:
                outcomes[n] = too_many(what, result)
    live = [n for n, outcome in enumerate(outcomes) if outcome is None]
    if not live and not hit_items:
        return outcomes
    visits = {n: _visit_row(writes[n], new_uuid(), n, {}) for n in live}  # phones: from the accounts below
    declarations = [(n, *_declaration_values(a)) for n in live if (a := writes[n].assessment) is not None]
    rows = await platform.db.fetch(
        _STORE_CALL,
        SUBJECT_LOCK_CLASS,
        [(*visits[n], _account(writes[n])) for n in live],
        config.same_visit_minutes * 60,
        declarations,
        list(zip(hit_items, buckets, limits, ends, strict=True)),
    )
    stored_keys = set()
    for row in rows:
        kind = row["r_kind"]
        if kind == 2:
            # An attempt past its limit (in the order counted): its check-in is refused, nothing stored.
            i = row["r_n"]
            n, what = whats[i]
            if outcomes[n] is None:
                result = RateResult(allowed=False, count=int(row["r_arrived_at"]), retry_after=max(1, ends[i] - now))
                outcomes[n] = too_many(what, result)
        elif kind == 1:
            stored_keys.add(row["r_key"])
        else:  # a second scan within the window: the same visit (no new visit was stored for it)
            n = row["r_n"]
            del visits[n]
            outcomes[n] = (row["r_id"], row["r_arrived_at"], True)
    for n in live:
        if isinstance(outcomes[n], Exception):
            continue  # refused by a rate limit: nothing was stored for it
        key = writes[n].key
        if key is not None and key not in stored_keys:
            # Another request with this key was stored a moment ago: this one is answered as its replay
            # (nothing was stored for it).
            outcomes[n] = _KeyTaken()
        elif n in visits:
            outcomes[n] = (visits[n][0], writes[n].arrived, False)
    return outcomes


def _account(write: _Write) -> uuid.UUID | None:
    """The citizen account whose phone the visit takes (as ``_lock_people`` finds it), if any."""
    if not write.phone_from_account:
        return None
    return canonical_uuid(write.person.subject_id)


# PostgreSQL statements for a whole batch in a transaction (arrays in, one round trip each).
# The people's locks, in ascending lock order as every batch takes them (batches committing side by side
# never deadlock), and the account phones asked for. The count makes every lock be taken before the one
# row it answers is joined with the phones (LEFT JOIN: the row is there even when no phone is asked for).
_LOCK_PEOPLE_AND_PHONES = (
    "SELECT c.id, c.phone FROM (SELECT count(*) AS locked FROM (SELECT pg_advisory_xact_lock({}, h) FROM "
    "(SELECT DISTINCT hashtext(s) AS h FROM unnest({}::text[]) AS s ORDER BY h) AS people) AS taken) AS l "
    "LEFT JOIN citizen c ON c.id = ANY({}::uuid[])"
)
# Each check-in's latest visit of the same person at the same venue within the window, if any.
# Found through the person's visits (the index on subject and arrival: a few a day), never through
# the venue's (thousands in the window at a market): "IS TRUE" keeps the venue out of index conditions.
_SAME_VISITS = (
    "SELECT i.n, v.id, v.arrived_at, v.sub_location_id "
    "FROM unnest({}::int[], {}::text[], {}::uuid[], {}::bigint[]) AS i(n, subject_id, venue_id, arrived_at) "
    "CROSS JOIN LATERAL (SELECT id, arrived_at, sub_location_id FROM checkin_visit v "
    "WHERE v.subject_id = i.subject_id AND (v.venue_id = i.venue_id) IS TRUE "
    "AND v.arrived_at BETWEEN i.arrived_at - {} AND i.arrived_at + {} "
    "ORDER BY v.arrived_at DESC LIMIT 1) v"
)
_INSERT_KEYS = (
    "INSERT INTO checkin_idempotency (key, visit_id, arrived_at, created_at) "
    "SELECT * FROM unnest({}::text[], {}::uuid[], {}::bigint[], {}::bigint[]) ON CONFLICT DO NOTHING RETURNING key"
)
_VISIT_COLUMNS = (
    ("id", "uuid"),
    ("venue_id", "uuid"),
    ("sub_location_id", "uuid"),
    ("province", "text"),
    ("site", "text"),
    ("subject_id", "text"),
    ("phone", "text"),
    ("id_number", "text"),
    ("full_name", "text"),
    ("arrived_at", "bigint"),
    ("left_at", "bigint"),
    ("method", "text"),
    ("recorded_by", "text"),
)
_DECLARATION_COLUMNS = (
    ("id", "uuid"),
    ("visit_id", "uuid"),
    ("subject_id", "text"),
    ("province", "text"),
    ("venue_id", "uuid"),
    ("questionnaire_version", "text"),
    ("answers", "json"),
    ("risk_flags", "json"),
    ("risky", "boolean"),
    ("declared_at", "bigint"),
    ("proxy_by", "text"),
)
# Rows of visits and declarations carry two more arrays: the check-in's idempotency key and its
# number in the batch. A row is stored only if its key is (or when it has none), so a key another
# request took a moment ago stores nothing; in ``_STORE_NEW`` also only if no same visit was found.
_KEY_STORED = "(u.key IS NULL OR u.key IN (SELECT key FROM stored_keys))"
_NOT_SAME = "u.n NOT IN (SELECT n FROM same)"


def _bulk_insert(table: str, columns: tuple[tuple[str, str], ...], where: str, extra: str = "") -> str:
    """``INSERT ... SELECT ... FROM unnest(arrays, keys, numbers) WHERE ...``: one array per column."""
    names = ", ".join(name for name, _type in columns)
    arrays = ", ".join(f"{{}}::{'text' if kind == 'json' else kind}[]" for _name, kind in columns)
    select = ", ".join(f"{name}::json" if kind == "json" else name for name, kind in columns)
    extra_names, extra_values = (f", {extra.split('=')[0]}", f", {extra.split('=')[1]}") if extra else ("", "")
    return (
        f"INSERT INTO {table} ({names}{extra_names}) "  # noqa: S608 (names are ours, values are parameters)
        f"SELECT {select}{extra_values} FROM unnest({arrays}, {{}}::text[], {{}}::int[]) AS u({names}, key, n) "
        f"WHERE {where}"
    )


# The batch's idempotency keys, new visits and their declarations in one statement (one round trip).
# (S608: the names and clauses are ours, the values parameters.)
_INSERT_ALL = (
    f"WITH stored_keys AS ({_INSERT_KEYS}), "  # noqa: S608
    f"visits AS ({_bulk_insert('checkin_visit', _VISIT_COLUMNS, _KEY_STORED, 'checked_out=false')}), "
    f"declarations AS ({_bulk_insert('checkin_declaration', _DECLARATION_COLUMNS, _KEY_STORED)}) "
    "SELECT key FROM stored_keys"
)
# A batch in which no one checks in twice at the same venue, in one statement. Its arguments are the
# new visits' columns (every check-in of the batch gets one, used only if it finds no same visit) with
# their keys and numbers in the batch ($1-$15), the same-visit window ($16), and the declarations'
# own columns by number in the batch ($17-$21): the rest of a declaration is its visit's. It runs
# the same-visit lookup, clears the sub-location of a same visit seen at another part of the venue,
# stores every key (a same visit's key names that visit), then the visits and declarations of the
# check-ins that found none and whose key was stored (or had none). It answers the same visits found
# (kind 0) and the keys stored (kind 1). The lookup runs after the people's locks are taken (an
# earlier statement), so it sees every earlier check-in of theirs. (S608: names are ours.)
_NEW_ONLY = f"{_NOT_SAME} AND {_KEY_STORED}"
_VISIT_NAMES = ", ".join(name for name, _type in _VISIT_COLUMNS)
_VISIT_ARRAYS = ", ".join(f"${i}::{kind}[]" for i, (_name, kind) in enumerate(_VISIT_COLUMNS, start=1))
_STORE_NEW = (
    f"WITH u AS MATERIALIZED (SELECT * FROM unnest({_VISIT_ARRAYS}, $14::text[], $15::int[]) "  # noqa: S608
    f"AS u({_VISIT_NAMES}, key, n)), "
    "same AS MATERIALIZED (SELECT u.n, v.id, v.arrived_at, v.sub_location_id, u.sub_location_id AS here FROM u "
    "CROSS JOIN LATERAL (SELECT id, arrived_at, sub_location_id FROM checkin_visit v "
    "WHERE v.subject_id = u.subject_id AND (v.venue_id = u.venue_id) IS TRUE "
    "AND v.arrived_at BETWEEN u.arrived_at - $16 AND u.arrived_at + $16 "
    "ORDER BY v.arrived_at DESC LIMIT 1) v), "
    "cleared AS (UPDATE checkin_visit c SET sub_location_id = NULL FROM same "
    "WHERE c.id = same.id AND c.arrived_at = same.arrived_at "
    "AND same.sub_location_id IS NOT NULL AND same.sub_location_id IS DISTINCT FROM same.here), "
    "stored_keys AS (INSERT INTO checkin_idempotency (key, visit_id, arrived_at, created_at) "
    "SELECT u.key, coalesce(same.id, u.id), coalesce(same.arrived_at, u.arrived_at), u.arrived_at "
    "FROM u LEFT JOIN same ON same.n = u.n WHERE u.key IS NOT NULL ORDER BY u.key "
    "ON CONFLICT DO NOTHING RETURNING key), "
    f"visits AS (INSERT INTO checkin_visit ({_VISIT_NAMES}, checked_out) "
    f"SELECT {_VISIT_NAMES}, false FROM u WHERE {_NEW_ONLY}), "
    "declarations AS (INSERT INTO checkin_declaration (id, visit_id, subject_id, province, venue_id, "
    "questionnaire_version, answers, risk_flags, risky, declared_at, proxy_by) "
    "SELECT gen_random_uuid(), u.id, u.subject_id, u.province, u.venue_id, d.version, d.answers::json, "
    "d.risk_flags::json, d.risky, u.arrived_at, CASE WHEN u.method = 'proxy' THEN u.recorded_by END "
    "FROM unnest($17::int[], $18::text[], $19::text[], $20::text[], $21::boolean[]) "
    f"AS d(n, version, answers, risk_flags, risky) JOIN u ON u.n = d.n WHERE {_NEW_ONLY}) "
    "SELECT 0 AS kind, n, id, arrived_at, NULL::text AS key FROM same "
    "UNION ALL SELECT 1, NULL, NULL, NULL, key FROM stored_keys"
)


class _RetryAlone(Exception):
    """A batch cannot be stored set-wise as it is; the group commit then stores its check-ins one by one."""


async def _store_set_wise(
    platform: Platform, config: CheckinSettings, writes: list[_Write], live: list[int], outcomes: list[Any]
) -> None:
    """PostgreSQL: the batch's check-ins in a fixed number of statements, whatever the batch size.

    Two round trips after the rate limits' (and one more per audited batch): the people's locks
    with the account phones (``_lock_people``), then the same-visit lookup with the keys, visits
    and declarations of those that found none (``_STORE_NEW``). A batch in which someone checks
    in twice at the same venue takes one more: the lookup first, then the batch's own visits are
    matched in Python (``_store_with_repeats``).
    """
    seen_keys: set[str] = set()
    for n in live:
        write = writes[n]
        if write.key is not None and write.key in seen_keys:
            outcomes[n] = _KeyTaken()  # the same request twice in one batch: answered as a replay
        elif write.key is not None:
            seen_keys.add(write.key)
    live = [n for n in live if outcomes[n] is None]
    if not live:
        return
    phones = await _lock_people(platform, [writes[n] for n in live])
    places = {(writes[n].person.subject_id, writes[n].place.venue.id) for n in live}
    if len(places) == len(live):
        visits = await _store_new(platform, config, writes, live, outcomes, phones)
    else:
        visits = await _store_with_repeats(platform, config, writes, live, outcomes, phones)
    audit = [entry for n in visits for entry in _audit_entries(writes[n], visits[n][0])]
    if audit:
        await platform.audit.append(audit)


def _same_visit_arguments(config: CheckinSettings, writes: list[_Write], live: list[int]) -> list[Any]:
    window = config.same_visit_minutes * 60
    return [
        live,
        [writes[n].person.subject_id for n in live],
        [writes[n].place.venue.id for n in live],  # asyncpg takes uuids as text
        [writes[n].arrived for n in live],
        window,
        window,
    ]


def _visit_row(write: _Write, visit_id: uuid.UUID, n: int, phones: dict[str, str]) -> list[Any]:
    """A new visit's row for ``_bulk_insert``: its columns, its key and its number in the batch."""
    place, person = write.place, write.person
    return [
        visit_id,
        place.venue.id,  # uuids as text: asyncpg encodes them
        place.sub_location_id,
        place.venue.province,
        place.venue.site,
        person.subject_id,
        phones.get(person.subject_id) if write.phone_from_account else person.phone,
        person.id_number,
        person.full_name,
        write.arrived,
        write.arrived + write.stay * 60,
        write.method,
        write.principal.id,
        write.key,
        n,
    ]


async def _store_new(
    platform: Platform,
    config: CheckinSettings,
    writes: list[_Write],
    live: list[int],
    outcomes: list[Any],
    phones: dict[str, str],
) -> dict[int, list[Any]]:
    """No one twice at one venue in this batch: one statement (see ``_STORE_NEW``). The new visits stored."""
    visits = {n: _visit_row(writes[n], new_uuid(), n, phones) for n in live}
    declared = [n for n in live if writes[n].assessment is not None]
    assessments = [writes[n].assessment for n in declared]
    rows = await platform.db.fetch(
        _STORE_NEW,
        *_columns(list(visits.values()), len(_VISIT_COLUMNS) + 2),
        config.same_visit_minutes * 60,
        declared,
        *_declaration_arrays(assessments),
    )
    stored_keys = set()
    for row in rows:
        if row["kind"] == 1:
            stored_keys.add(row["key"])
        else:
            # A second scan within the window: the same visit (no new visit was stored for this check-in).
            n = row["n"]
            del visits[n]
            outcomes[n] = (row["id"], row["arrived_at"], True)
    for n in live:
        key = writes[n].key
        if key is not None and key not in stored_keys:
            # Another request with this key was stored a moment ago: this one is answered as its replay
            # (nothing was stored for it).
            outcomes[n] = _KeyTaken()
            visits.pop(n, None)
        elif n in visits:
            outcomes[n] = (visits[n][0], writes[n].arrived, False)
    return visits


async def _store_with_repeats(
    platform: Platform,
    config: CheckinSettings,
    writes: list[_Write],
    live: list[int],
    outcomes: list[Any],
    phones: dict[str, str],
) -> dict[int, list[Any]]:
    """Someone checks in twice at one venue in this batch: the lookup, then the batch matched in Python."""
    db = platform.db
    window = config.same_visit_minutes * 60
    earlier = {row["n"]: row for row in await db.fetch(_SAME_VISITS, *_same_visit_arguments(config, writes, live))}
    visits: dict[int, list[Any]] = {}  # new visits by item: the row to insert
    new_here: dict[tuple[str, str], list[int]] = {}  # new visits of this batch by (person, venue)
    keys: list[tuple[int, str, uuid.UUID, int, int]] = []
    shared: set[int] = set()  # new visits that later check-ins of the batch found as their same visit
    clear_sub_location: list[tuple[uuid.UUID, int]] = []
    for n in live:
        write = writes[n]
        place, person = write.place, write.person
        # The same visit: the latest one within the window, stored before or earlier in this batch.
        same = earlier.get(n)
        latest = same["arrived_at"] if same is not None else None
        same_here = None
        for m in new_here.get((person.subject_id, place.venue.id), []):
            if abs(writes[m].arrived - write.arrived) <= window and (latest is None or writes[m].arrived >= latest):
                same_here, latest = m, writes[m].arrived
        if same_here is not None:
            shared.add(same_here)
            visit_id, arrived = visits[same_here][0], writes[same_here].arrived
            if visits[same_here][2] is not None and str(visits[same_here][2]) != (place.sub_location_id or ""):
                visits[same_here][2] = None  # seen at two parts of the venue: trace against the whole venue
            outcomes[n] = (visit_id, arrived, True)
        elif same is not None:
            visit_id, arrived = same["id"], same["arrived_at"]
            if same["sub_location_id"] is not None and str(same["sub_location_id"]) != (place.sub_location_id or ""):
                clear_sub_location.append((visit_id, arrived))
            outcomes[n] = (visit_id, arrived, True)
        else:
            visit_id, arrived = new_uuid(), write.arrived
            visits[n] = _visit_row(write, visit_id, n, phones)
            new_here.setdefault((person.subject_id, place.venue.id), []).append(n)
            outcomes[n] = (visit_id, arrived, False)
        if write.key is not None:
            keys.append((n, write.key, visit_id, arrived, write.arrived))
    for visit_id, arrived in clear_sub_location:
        await db.fetch(
            "UPDATE checkin_visit SET sub_location_id = NULL WHERE id = {} AND arrived_at = {}", visit_id, arrived
        )
    key_rows = sorted(key[1:] for key in keys)  # in key order: see _LOCK_PEOPLE_AND_PHONES
    declarations = [_declaration_row(writes[n], visits[n][0], n) for n in visits if writes[n].assessment is not None]
    stored_keys = {
        row["key"]
        for row in await db.fetch(
            _INSERT_ALL,
            *_columns(key_rows, 4),
            *_columns(list(visits.values()), len(_VISIT_COLUMNS) + 2),
            *_columns(declarations, len(_DECLARATION_COLUMNS) + 2),
        )
    }
    for n, *_rest in keys:
        if writes[n].key in stored_keys:
            continue
        # Another request with this key was stored a moment ago: this one is answered as its replay
        # (the statement stored neither its visit nor its declaration).
        if n in shared:
            # ... but another check-in of this batch joined the visit it would have made.
            raise _RetryAlone("an idempotency key was taken meanwhile by another request")
        outcomes[n] = _KeyTaken()
        visits.pop(n, None)
    return visits


def _columns(rows: list[Any], width: int) -> list[list[Any]]:
    """Rows as one list per column: the arrays an ``unnest`` insert takes (empty ones for no rows)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


async def _lock_people(platform: Platform, writes: list[_Write]) -> dict[str, str]:
    """Take the people's locks; the phone numbers of those whose check-in takes it from their account.

    The locks serialise each person's check-ins across batches and workers: the same-visit lookup
    then sees every earlier check-in of the person. They are taken in one order (see above).
    """
    ids = []
    for write in writes:
        if write.phone_from_account:
            try:
                ids.append(uuid.UUID(write.person.subject_id))
            except ValueError:
                continue
    subjects = sorted({write.person.subject_id for write in writes})
    rows = await platform.db.fetch(_LOCK_PEOPLE_AND_PHONES, SUBJECT_LOCK_CLASS, subjects, ids)
    return {str(row["id"]): row["phone"] for row in rows if row["id"] is not None}


def _declaration_arrays(assessments: list[Any]) -> list[list[Any]]:
    """The declarations' own columns as arrays (version, answers, risk flags, risky), for the store statements."""
    return _columns([_declaration_values(a) for a in assessments if a is not None], 4)


def _declaration_values(assessment: Assessment) -> tuple[str, str, str, bool]:
    """A declaration's own columns: version, answers and risk flags as JSON text, risky."""
    encode = msgspec.json.encode
    return (
        assessment.version,
        encode(assessment.answers).decode(),
        encode(assessment.risk_flags).decode(),
        assessment.risky,
    )


def _declaration_row(write: _Write, visit_id: uuid.UUID, n: int) -> list[Any]:
    assessment = write.assessment
    assert assessment is not None
    return [
        new_uuid(),
        visit_id,
        write.person.subject_id,
        write.place.venue.province,
        write.place.venue.id,
        assessment.version,
        msgspec.json.encode(assessment.answers).decode(),
        msgspec.json.encode(assessment.risk_flags).decode(),
        assessment.risky,
        write.arrived,
        write.principal.id if write.method == "proxy" else None,
        write.key,
        n,
    ]


def _audit_entries(write: _Write, visit_id: uuid.UUID) -> list[dict[str, Any]]:
    """Scans of a personal code and proxy declarations are audited with the visit they store."""
    if write.method == "scan":
        return []
    proxy = write.method == "proxy"
    return audit_entries(
        write.principal,
        "checkin.visit.proxy" if proxy else "checkin.scan.personal",
        _visit_resource(write, visit_id),
        purpose="checkin.declaration",
        detail="proxy declaration by staff" if proxy else "personal code scanned by venue staff",
        request_id=write.request_id,
    )


def _visit_resource(write: _Write, visit_id: uuid.UUID) -> Resource:
    venue = write.place.venue
    return Resource(
        kind="visit", id=str(visit_id), province=venue.province, site=venue.site, subject_id=write.person.subject_id
    )


async def _store(platform: Platform, config: CheckinSettings, write: _Write) -> tuple[uuid.UUID, int, bool]:
    """One check-in: find the same visit or store a new one; returns (visit id, its arrival, whether it existed)."""
    principal, place, person, assessment = write.principal, write.place, write.person, write.assessment
    arrived, stay, method, key = write.arrived, write.stay, write.method, write.key
    # SQLite only (PostgreSQL stores batches set-wise): its one writer at a time serialises check-ins.
    async with platform.db.transaction():
        same = await _same_visit(config, place, person, arrived)
        visit_id = same["id"] if same else new_uuid()
        if key is not None:
            stored = await (
                IdempotencyKey.insert(
                    IdempotencyKey(
                        key=key,
                        visit_id=visit_id,
                        arrived_at=same["arrived_at"] if same else arrived,
                        created_at=arrived,
                    )
                )
                .on_conflict(action="DO NOTHING")
                .returning(IdempotencyKey.key)
            )
            if not stored:
                raise _KeyTaken
        if same is not None:
            if same["sub_location_id"] is not None and str(same["sub_location_id"]) != (place.sub_location_id or ""):
                # Seen at two parts of the venue: trace them against the whole venue.
                await Visit.update({Visit.sub_location_id: None}).where(
                    (Visit.id == visit_id) & (Visit.arrived_at == same["arrived_at"])
                )
            return visit_id, same["arrived_at"], True
        await Visit.insert(
            Visit(
                id=visit_id,
                venue_id=uuid.UUID(place.venue.id),
                sub_location_id=uuid.UUID(place.sub_location_id) if place.sub_location_id else None,
                province=place.venue.province,
                site=place.venue.site,
                subject_id=person.subject_id,
                phone=person.phone,
                id_number=person.id_number,
                full_name=person.full_name,
                arrived_at=arrived,
                left_at=arrived + stay * 60,
                checked_out=False,
                method=method,
                recorded_by=principal.id,
            )
        )
        if assessment is not None:
            await Declaration.insert(
                Declaration(
                    id=new_uuid(),
                    visit_id=visit_id,
                    subject_id=person.subject_id,
                    province=place.venue.province,
                    venue_id=uuid.UUID(place.venue.id),
                    questionnaire_version=assessment.version,
                    answers=assessment.answers,
                    risk_flags=list(assessment.risk_flags),
                    risky=assessment.risky,
                    declared_at=arrived,
                    proxy_by=principal.id if method == "proxy" else None,
                )
            )
        await platform.audit.append(_audit_entries(write, visit_id))
        return visit_id, arrived, False


async def _same_visit(config: CheckinSettings, place: Place, person: Person, arrived: int) -> dict[str, Any] | None:
    window = config.same_visit_minutes * 60
    return await (
        Visit.select(Visit.id, Visit.arrived_at, Visit.sub_location_id)
        .where(
            (Visit.subject_id == person.subject_id)
            & (Visit.venue_id == uuid.UUID(place.venue.id))
            & (Visit.arrived_at >= arrived - window)
            & (Visit.arrived_at <= arrived + window)
        )
        .order_by(Visit.arrived_at, ascending=False)
        .first()
    )


def arrival_time(config: CheckinSettings, arrived_at: datetime | None, now: datetime) -> int:
    """The arrival as Unix seconds: not in the future, not older than the backdate limit."""
    current = int(now.timestamp())
    if arrived_at is None:
        return current
    arrived = int(arrived_at.timestamp())
    if arrived - current > config.clock_skew_seconds:
        raise InvalidInput("arrived_at: this time is in the future")
    if current - arrived > config.max_backdate_minutes * 60:
        raise InvalidInput(f"arrived_at: more than {config.max_backdate_minutes} minutes ago; too late to record")
    return min(arrived, current)


def _rate_limits(config: CheckinSettings, principal: Principal, person: Person) -> list[tuple[str, int, int, str]]:
    """The hourly budgets a check-in counts against: the person's, and the recording device's or account's."""
    limits = [
        (
            f"checkin:subject:{person.subject_id}",
            config.checkins_per_identity_per_hour,
            HOUR,
            "check-ins for this person",
        )
    ]
    if principal.subject_id != person.subject_id:
        limits.append(
            (
                f"checkin:principal:{principal.id}",
                config.scans_per_device_per_hour,
                HOUR,
                "check-ins recorded by this device or account",
            )
        )
    return limits


def _idempotency_digest(principal: Principal, key: str) -> str:
    # Keys are per sender: two people who pick the same key never collide.
    return hashlib.sha256(f"{principal.id}\n{key}".encode()).hexdigest()


async def _replay(key: str, now: datetime) -> VisitView | None:
    row = await IdempotencyKey.select().where(IdempotencyKey.key == key).first()
    if row is None:
        return None
    view = await visit_view(row["visit_id"], now, arrived_at=row["arrived_at"])
    return None if view is None else msgspec.structs.replace(view, repeat=True)


# -- check-out and reading ---------------------------------------------------------------


async def check_out(
    platform: Platform, principal: Principal, visit_id: uuid.UUID, left_at: datetime | None
) -> VisitView:
    """The person says they left (now, or at ``left_at``); until then the default stay applies."""
    config = settings_of(platform)
    row = await Visit.select().where(Visit.id == visit_id).first()
    if row is None:
        raise NotFound("visit_id: no such visit")
    await platform.access.check(
        principal,
        "checkin.visit.checkout",
        Resource(
            kind="visit", id=str(visit_id), province=row["province"], site=row["site"], subject_id=row["subject_id"]
        ),
    )
    if row["checked_out"]:
        raise Conflict("visit_id: this visit is already checked out")
    now = clock.now()
    left = int((left_at or now).timestamp())
    if left - int(now.timestamp()) > config.clock_skew_seconds:
        raise InvalidInput("left_at: this time is in the future")
    if left < row["arrived_at"]:
        raise InvalidInput("left_at: before the arrival")
    if left - row["arrived_at"] > config.max_stay_minutes * 60:
        raise InvalidInput(f"left_at: a stay of more than {config.max_stay_minutes} minutes is not plausible")
    await Visit.update({Visit.left_at: min(left, int(now.timestamp())), Visit.checked_out: True}).where(
        (Visit.id == visit_id) & (Visit.arrived_at == row["arrived_at"])
    )
    view = await visit_view(visit_id, now, arrived_at=row["arrived_at"])
    assert view is not None
    return view


async def own_visits(principal: Principal, limit: int) -> list[VisitView]:
    """The signed-in person's visits, newest first (what they can show they declared)."""
    if principal.subject_id is None:
        raise PermissionDeniedException("Only a person has visits of their own.")
    now = clock.now()
    rows = await (
        Visit.select(Visit.id, Visit.arrived_at)
        .where(Visit.subject_id == principal.subject_id)
        .order_by(Visit.arrived_at, ascending=False)
        .limit(limit)
    )
    views = [await visit_view(row["id"], now, arrived_at=row["arrived_at"]) for row in rows]
    return [view for view in views if view is not None]


async def visit_view(visit_id: uuid.UUID, now: datetime, *, arrived_at: int | None = None) -> VisitView | None:
    query = Visit.select().where(Visit.id == visit_id)
    if arrived_at is not None:
        # Lets PostgreSQL look in one daily partition only.
        query = query.where(Visit.arrived_at == arrived_at)
    row = await query.first()
    if row is None:
        return None
    venue = await Venue.select(Venue.name).where(Venue.id == row["venue_id"]).first()
    sub_name = None
    if row["sub_location_id"] is not None:
        sub = await SubLocation.select(SubLocation.name).where(SubLocation.id == row["sub_location_id"]).first()
        sub_name = sub["name"] if sub else None
    return VisitView(
        id=str(row["id"]),
        venue_id=str(row["venue_id"]),
        venue_name=venue["name"] if venue else "",
        sub_location_id=str(row["sub_location_id"]) if row["sub_location_id"] else None,
        sub_location_name=sub_name,
        arrived_at=_time(row["arrived_at"]),
        left_at=_time(row["left_at"]),
        status=_status(checked_out=row["checked_out"], left_at=row["left_at"], now=now),
        method=row["method"],
    )


def _status(*, checked_out: bool, left_at: int, now: datetime) -> Literal["present", "checked_out", "auto_checked_out"]:
    if checked_out:
        return "checked_out"
    if left_at <= now.timestamp():
        return "auto_checked_out"
    return "present"


# -- personal codes and identities ----------------------------------------------------------


def personal_signer(platform: Platform) -> Signer:
    return Signer.from_settings(platform.settings, PERSONAL_CONTEXT)


def personal_code(platform: Platform, principal: Principal) -> PersonalCodeView:
    """A code for the person's page, valid ``personal_code_hours``, for staff to scan."""
    if principal.subject_id is None:
        raise PermissionDeniedException("Only a person has a personal code.")
    hours = settings_of(platform).personal_code_hours
    token = personal_signer(platform).sign({"s": principal.subject_id}, ttl=timedelta(hours=hours))
    expires = clock.now() + timedelta(hours=hours)
    svg = segno.make(token, error="m").svg_inline(scale=4, border=4)
    return PersonalCodeView(token=token, expires_at=expires, svg=svg)


async def _account_phone(platform: Platform, subject_id: str) -> str | None:
    """``citizen_phone``, with the look-ups of concurrent scans sent together (one query per round)."""
    try:
        citizen_id = str(uuid.UUID(subject_id))
    except ValueError:
        return None
    loader = _phone_loaders.get(platform)
    if loader is None:

        async def fetch(ids: list[str]) -> dict[str, str]:
            condition, args = platform.db.any_of("id", ids)
            rows = await platform.db.fetch("SELECT id, phone FROM citizen WHERE " + condition, *args)  # noqa: S608
            return {str(row["id"]): row["phone"] for row in rows}

        loader = _phone_loaders[platform] = Coalescer(fetch)
    return await loader.load(citizen_id)


_phone_loaders: weakref.WeakKeyDictionary[Platform, Coalescer[str, str]] = weakref.WeakKeyDictionary()


async def citizen_phone(subject_id: str) -> str | None:
    try:
        citizen_id = uuid.UUID(subject_id)
    except ValueError:
        return None
    row = await Citizen.select(Citizen.phone).where(Citizen.id == citizen_id).first()
    return row["phone"] if row else None


def id_card_subject(platform: Platform, id_number: str) -> str:
    """A stable pseudonym for a person known only by their identity card number."""
    key = platform.settings.secret_key.encode()
    digest = hmac.new(key, f"checkin.id_card:{id_number}".encode(), hashlib.sha256).hexdigest()
    return f"idcard:{digest[:40]}"


async def _check_place(platform: Platform, principal: Principal, action: str, place: Place) -> None:
    await platform.access.check(
        principal,
        action,
        Resource(kind="venue", id=place.venue.id, province=place.venue.province, site=place.venue.site),
    )


def _time(seconds: int, now: datetime | None = None) -> datetime:
    """Unix seconds as a datetime in the clock's zone (``now``: a reading of the clock already taken)."""
    return datetime.fromtimestamp(seconds, tz=(now or clock.now()).tzinfo)
