"""A batch of check-ins in one round trip on PostgreSQL (``checkin_store_batch``), with the same answers.

The group commit hands a batch of check-ins to ``visits._store_batch`` with no
transaction open; on PostgreSQL a batch of people's own scans is stored by one
function call, its own transaction. These tests hold it to what the
transactional path did: a second scan within the window is the same visit
(also when two batches commit at once), idempotency keys replay, rate limits
refuse the later attempts and store nothing for them, a batch that fails
stores nothing, and audited check-ins (other path) keep their audit records.
The tests that need no PostgreSQL run on SQLite too, where nothing changed.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from litestar.exceptions import TooManyRequestsException

from core.testing import http_client
from plugins.checkin import visits
from tests.plugins.checkin.conftest import BASE_URL, Kit

REDIS_URL = "redis://127.0.0.1:6379/15"
_inside_writer: contextvars.ContextVar[bool] = contextvars.ContextVar("inside_writer", default=False)


def _postgres_only(kit: Kit) -> None:
    if kit.platform.db.kind != "postgres":
        pytest.skip("PostgreSQL only: SQLite stores check-ins in Python, one writer at a time")


async def _captured_writes(kit: Kit, requests: list[Callable[[], Awaitable[Any]]]) -> list[visits._Write]:
    """The check-ins the requests would hand to the group commit, in order, nothing stored."""
    captured: list[visits._Write] = []

    async def capture(_writer: Any, item: visits._Write, **_options: Any) -> Any:
        captured.append(item)
        return uuid.uuid4(), item.arrived, False

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kit.platform.group_commit, "submit_to", capture)
        for request in requests:
            response = await request()
            assert response.status_code == 201, response.text
    return captured


async def _count(kit: Kit, sql: str, *args: Any) -> int:
    rows = await kit.platform.db.execute(sql, *args)
    return int(rows[0]["n"])


async def test_a_batch_is_one_round_trip_with_no_transaction_around_it(kit, monkeypatch):
    _postgres_only(kit)
    db = kit.platform.db
    operator = await kit.operator()
    venues = [await kit.venue(operator) for _ in range(5)]
    people = [(await kit.citizen())[0] for _ in range(5)]
    statements: list[tuple[str, bool]] = []
    transactions: list[bool] = []
    original_store, original_fetch, original_execute = visits._store_batch, db.fetch, db.execute
    original_transaction = db.transaction

    async def store(platform: Any, writes: list[Any]) -> list[Any]:
        token = _inside_writer.set(True)
        try:
            return await original_store(platform, writes)
        finally:
            _inside_writer.reset(token)

    async def fetch(sql: str, *args: Any) -> list[Any]:
        if _inside_writer.get():
            statements.append((sql, db.in_transaction()))
        return await original_fetch(sql, *args)

    async def execute(sql: str, *args: Any) -> list[Any]:
        if _inside_writer.get():
            statements.append((sql, db.in_transaction()))
        return await original_execute(sql, *args)

    def transaction() -> Any:
        if _inside_writer.get():
            transactions.append(True)
        return original_transaction()

    batches: list[int] = []
    original_commit = kit.platform.group_commit._commit

    async def commit(batch: list[Any]) -> None:
        batches.append(len(batch))
        await original_commit(batch)

    monkeypatch.setattr(visits, "_store_batch", store)
    monkeypatch.setattr(db, "fetch", fetch)
    monkeypatch.setattr(db, "execute", execute)
    monkeypatch.setattr(db, "transaction", transaction)
    monkeypatch.setattr(kit.platform.group_commit, "_commit", commit)
    kit.platform.group_commit.max_wait = 0.3  # the five requests make one batch
    responses = await asyncio.gather(
        *(kit.check_in(person, kit.code_of(venue)) for person, venue in zip(people, venues, strict=True))
    )
    assert {r.status_code for r in responses} == {201}
    assert batches == [5]
    # One statement for the whole batch, with no transaction open: the call is its own.
    assert len(statements) == 1 and "checkin_store_batch" in statements[0][0]
    assert statements[0][1] is False
    assert transactions == []
    assert await kit.visit_count() == 5
    assert await kit.declaration_count() == 5
    rows = await db.execute("SELECT phone FROM checkin_visit")
    assert all(row["phone"] for row in rows)  # the phones came from the accounts


async def test_same_visit_folds_across_two_batches_committing_at_once(kit, monkeypatch):
    """Two batches wait for the same person's lock; the second sees the visit the first committed."""
    _postgres_only(kit)
    venue = await kit.venue(await kit.operator())
    citizen, subject = await kit.citizen()

    async def alone(writer: Any, item: Any, **_options: Any) -> Any:
        (outcome,) = await writer([item])  # each check-in its own batch, on its own connection
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(kit.platform.group_commit, "submit_to", alone)
    pool = kit.platform.db.engine.pool
    async with pool.acquire() as holder:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", visits.SUBJECT_LOCK_CLASS, subject)
            first = asyncio.ensure_future(kit.check_in(citizen, kit.code_of(venue), minutes_ago=4))
            second = asyncio.ensure_future(kit.check_in(citizen, kit.code_of(venue), minutes_ago=2))
            # Until both batches wait: the first for the person's lock, the second for the first's
            # rate-limit row (the person's bucket, which the first counted and holds until it commits).
            for _ in range(100):
                await asyncio.sleep(0.05)
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE a.datname = current_database() AND NOT l.granted"
                )
                if waiting == 2:
                    break
            assert waiting == 2
        responses = await asyncio.gather(first, second)
    assert {r.status_code for r in responses} == {201}
    assert responses[0].json()["id"] == responses[1].json()["id"]
    assert sorted(r.json()["repeat"] for r in responses) == [False, True]
    assert await kit.visit_count() == 1
    assert await kit.declaration_count() == 1


async def test_the_lookup_sees_a_visit_committed_while_the_batch_waited_for_the_lock(kit):
    """The same-visit lookup runs after the person's lock is taken, with a snapshot from then."""
    _postgres_only(kit)
    venue = await kit.venue(await kit.operator())
    citizen, subject = await kit.citizen()
    visit_id = uuid.uuid4()
    async with kit.platform.db.engine.pool.acquire() as holder:
        async with holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", visits.SUBJECT_LOCK_CLASS, subject)
            pending = asyncio.ensure_future(kit.check_in(citizen, kit.code_of(venue)))
            for _ in range(100):  # until the batch waits for the person's lock
                await asyncio.sleep(0.05)
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE a.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted"
                )
                if waiting == 1:
                    break
            assert waiting == 1
            # Meanwhile another check-in of the person, a minute ago, commits (with the lock released).
            await holder.execute(
                "INSERT INTO checkin_visit (id, venue_id, sub_location_id, province, site, subject_id, phone, "
                "id_number, full_name, arrived_at, left_at, checked_out, method, recorded_by) "
                "VALUES ($1, $2, NULL, $3, $4, $5, NULL, NULL, 'An', "
                "extract(epoch FROM now())::bigint - 60, extract(epoch FROM now())::bigint + 3600, false, 'scan', $6)",
                visit_id,
                uuid.UUID(venue["id"]),
                venue["province"],
                venue["site"],
                subject,
                f"citizen:{subject}",
            )
        response = await pending
    assert response.status_code == 201, response.text
    assert response.json()["id"] == str(visit_id) and response.json()["repeat"] is True
    assert await kit.visit_count() == 1


async def test_same_visit_within_the_window_folds_and_after_it_does_not(kit):
    venue = await kit.venue(await kit.operator(), sub_locations=[{"name": "Bàn 1"}, {"name": "Bàn 2"}])
    citizen, _ = await kit.citizen()
    first = await kit.check_in(citizen, kit.code_of(venue, "Bàn 1"), minutes_ago=30)
    later = await kit.check_in(citizen, kit.code_of(venue, "Bàn 2"), minutes_ago=21)  # 9 minutes later
    assert later.json()["id"] == first.json()["id"] and later.json()["repeat"] is True
    rows = await kit.platform.db.execute(
        "SELECT sub_location_id FROM checkin_visit WHERE id = {}", uuid.UUID(first.json()["id"])
    )
    assert rows[0]["sub_location_id"] is None  # seen at two tables: traced against the whole venue
    apart = await kit.check_in(citizen, kit.code_of(venue), minutes_ago=10)  # 11 minutes after that
    assert apart.json()["id"] != first.json()["id"] and apart.json()["repeat"] is False
    assert await kit.visit_count() == 2
    assert await kit.declaration_count() == 2


async def test_idempotency_keys_replay_across_batches_and_within_one(kit):
    operator = await kit.operator()
    venues = [await kit.venue(operator) for _ in range(2)]
    citizen, _ = await kit.citizen()
    key = str(uuid.uuid4())
    first = await kit.check_in(citizen, kit.code_of(venues[0]), key=key)
    again = await kit.check_in(citizen, kit.code_of(venues[1]), key=key)  # a retry: its replay, not a new visit
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.json()["repeat"] is True
    other, _ = await kit.citizen()
    twice = str(uuid.uuid4())
    kit.platform.group_commit.max_wait = 0.3  # one batch: the same request twice
    pair = await asyncio.gather(*(kit.check_in(other, kit.code_of(venues[1]), key=twice) for _ in range(2)))
    assert {r.status_code for r in pair} == {201}
    assert pair[0].json()["id"] == pair[1].json()["id"]
    assert await kit.visit_count() == 2
    assert await _count(kit, "SELECT count(*) AS n FROM checkin_idempotency") == 2


@pytest.mark.parametrize("store", ["database", "redis"])
async def test_rate_limits_refuse_the_later_attempts_and_store_nothing_for_them(make_platform, store):
    platform = await make_platform(
        base_url=BASE_URL,
        plugin={"checkin": {"checkins_per_identity_per_hour": 2}},
        redis_url=REDIS_URL if store == "redis" else None,
    )
    async with http_client(platform) as client:
        kit = Kit(platform, client)
        operator = await kit.operator()
        codes = [kit.code_of(await kit.venue(operator)) for _ in range(4)]
        citizen, subject = await kit.citizen()
        keys = [str(uuid.uuid4()) for _ in codes]
        writes = await _captured_writes(
            kit, [lambda c=code, k=key: kit.check_in(citizen, c, key=k) for code, key in zip(codes, keys, strict=True)]
        )
        outcomes = await visits._store_batch(platform, writes)  # one batch, in this order
        assert [isinstance(outcome, tuple) for outcome in outcomes] == [True, True, False, False]
        for refused in outcomes[2:]:
            assert isinstance(refused, TooManyRequestsException)
            assert "check-ins for this person" in refused.detail
            assert int(refused.headers["Retry-After"]) >= 1
        assert await kit.visit_count() == 2
        assert await kit.declaration_count() == 2
        assert await _count(kit, "SELECT count(*) AS n FROM checkin_idempotency") == 2  # not the refused ones'
        if store == "redis":
            _now, (bucket,), _ends = platform.limiter.buckets([(f"checkin:subject:{subject}", 2, visits.HOUR)])
            hits = int(await platform.limiter._redis.get(bucket))
        else:
            hits = await _count(
                kit, "SELECT hits AS n FROM rate_bucket WHERE bucket LIKE {}", f"checkin:subject:{subject}@%"
            )
        assert hits == 4  # every attempt counts, as before
        # A refused request's key was not stored: its retry is refused again, not answered as a replay.
        retry = await kit.check_in(citizen, codes[2], key=keys[2])
        assert retry.status_code == 429
        # Through the group commit, in one batch: two more people, one of them over the limit.
        newcomer, _ = await kit.citizen()
        platform.group_commit.max_wait = 0.3
        responses = await asyncio.gather(
            kit.check_in(citizen, codes[3]), *(kit.check_in(newcomer, code) for code in codes[:2])
        )
        assert [r.status_code for r in responses] == [429, 201, 201]
        assert await kit.visit_count() == 4


async def test_a_failing_batch_leaves_nothing_half_written(kit):
    _postgres_only(kit)
    operator = await kit.operator()
    venues = [await kit.venue(operator) for _ in range(3)]
    people = [await kit.citizen() for _ in range(3)]
    writes = await _captured_writes(
        kit,
        [
            lambda person=person, venue=venue: kit.check_in(person[0], kit.code_of(venue), key=str(uuid.uuid4()))
            for person, venue in zip(people, venues, strict=True)
        ],
    )
    # The second check-in breaks the call late: its visit's province does not fit the column, after the
    # rate limits were counted and the keys stored.
    bad = writes[1]
    bad.place = msgspec.structs.replace(bad.place, venue=msgspec.structs.replace(bad.place.venue, province="xyz"))
    platform = kit.platform

    async def stored() -> tuple[int, int, int, int]:
        return (
            await kit.visit_count(),
            await kit.declaration_count(),
            await _count(kit, "SELECT count(*) AS n FROM checkin_idempotency"),
            await _count(kit, "SELECT count(*) AS n FROM rate_bucket WHERE bucket LIKE 'checkin:%'"),
        )

    with pytest.raises(Exception, match="too long"):
        await visits._store_batch(platform, writes)
    assert await stored() == (0, 0, 0, 0)
    # Through the group commit: the batch fails, then each check-in alone; only the bad one fails.
    platform.group_commit.max_wait = 0.3
    writer = visits._writer_for(platform)
    outcomes = await asyncio.gather(
        *(platform.group_commit.submit_to(writer, write, own_transaction=True) for write in writes),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], tuple) and isinstance(outcomes[2], tuple)
    assert isinstance(outcomes[1], Exception)
    assert await stored() == (2, 2, 2, 2)
    for _headers, subject in (people[0], people[2]):
        hits = await _count(
            kit, "SELECT hits AS n FROM rate_bucket WHERE bucket LIKE {}", f"checkin:subject:{subject}@%"
        )
        assert hits == 1  # counted once: the failed call's counts were rolled back with it


async def test_audited_check_ins_in_a_batch_keep_their_audit_records(kit):
    operator = await kit.operator(site="pho")
    venue = await kit.venue(operator)
    device = await kit.device(site="pho")
    scanned, scanned_subject = await kit.citizen()
    token = (await kit.client.get("/api/checkin/me/code", headers=scanned)).json()["token"]
    own = [(await kit.citizen())[0] for _ in range(3)]
    kit.platform.group_commit.max_wait = 0.3  # one batch: a staff scan among people's own scans
    responses = await asyncio.gather(
        kit.client.post(
            "/api/checkin/scans",
            json={"personal_code": token, "venue_id": venue["id"], "declaration": kit.declaration()},
            headers=device,
        ),
        kit.client.post(
            "/api/checkin/proxy-visits",
            json={
                "venue_id": venue["id"],
                "full_name": "Bà Nguyễn Thị Hoa",
                "phone": "0987 654 321",
                "declaration": kit.declaration(),
            },
            headers=operator,
        ),
        *(kit.check_in(person, kit.code_of(venue)) for person in own),
    )
    assert [r.status_code for r in responses] == [201] * 5, [r.text for r in responses]
    audit = await kit.platform.audit.for_subject(scanned_subject)
    assert [(a.action, a.resource_id) for a in audit] == [("checkin.scan.personal", responses[0].json()["id"])]
    _headers, proxied = await kit.citizen("0987654321")
    audit = await kit.platform.audit.for_subject(proxied)
    assert [(a.action, a.resource_id) for a in audit] == [("checkin.visit.proxy", responses[1].json()["id"])]
    assert await kit.visit_count() == 5
