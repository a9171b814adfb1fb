"""Group commit: batched writes commit together, a failing write fails alone, nothing is acknowledged early."""

import asyncio
import uuid

import pytest

from core import clock, storage
from core.batching import GroupCommit
from core.tables import MessageOutbox


def _message(recipient: str) -> MessageOutbox:
    return MessageOutbox(
        id=uuid.uuid4(),
        channel="sms",
        recipient=recipient,
        kind="test",
        body_vi="x",
        body_en="x",
        created_at=clock.now(),
        status="queued",
    )


async def test_concurrent_writes_share_batches_and_all_commit(platform):
    group = GroupCommit(platform.db, max_batch=50, max_wait=0.01)

    async def write(n: int) -> int:
        await MessageOutbox.insert(_message(f"r{n}"))
        return n

    results = await asyncio.gather(*(group.submit(lambda n=n: write(n)) for n in range(120)))
    await group.close()
    assert sorted(results) == list(range(120))
    assert await MessageOutbox.count() == 120
    assert group.batches < 120  # writes were grouped
    assert group.writes == 120


async def test_a_failing_write_fails_alone(platform):
    group = GroupCommit(platform.db, max_batch=10, max_wait=0.01)

    async def good(n: int) -> int:
        await MessageOutbox.insert(_message(f"good{n}"))
        return n

    async def bad() -> None:
        await MessageOutbox.insert(_message("bad"))
        raise ValueError("rejected")

    tasks = [group.submit(lambda n=n: good(n)) for n in range(5)] + [group.submit(bad)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    await group.close()
    assert results[:5] == [0, 1, 2, 3, 4]
    assert isinstance(results[5], ValueError)
    recipients = {row["recipient"] for row in await MessageOutbox.select(MessageOutbox.recipient)}
    assert recipients == {f"good{n}" for n in range(5)}  # the bad write was rolled back


async def test_acknowledged_only_after_commit(platform):
    group = GroupCommit(platform.db, max_batch=10, max_wait=0.05)
    seen_inside: list[int] = []

    async def write() -> None:
        await MessageOutbox.insert(_message("late"))
        seen_inside.append(1)

    await group.submit(write)
    await group.close()
    # When submit returned, the row was visible to a fresh query (committed).
    assert seen_inside == [1]
    assert await MessageOutbox.count().where(MessageOutbox.recipient == "late") == 1


@pytest.mark.parametrize("size", [1, 3])
async def test_commit_failure_reaches_every_caller(platform, size, monkeypatch):
    group = GroupCommit(platform.db, max_batch=10, max_wait=0.01)

    class Broken:
        async def __aenter__(self):
            raise ConnectionError("database went away")

        async def __aexit__(self, *exc):
            return False

    monkeypatch.setattr(platform.db, "transaction", lambda: Broken())

    async def write() -> None:
        await MessageOutbox.insert(_message("never"))

    results = await asyncio.gather(*(group.submit(write) for _ in range(size)), return_exceptions=True)
    await group.close()
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_batch_writer_stores_many_items_in_one_call(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.02)
    calls: list[int] = []

    async def writer(items: list[int]) -> list[object]:
        calls.append(len(items))
        await MessageOutbox.insert(*(_message(f"w{n}") for n in items if n != 3))
        # Item 3 is refused alone: nothing is written for it, its caller gets the error.
        return [ValueError("three is refused") if n == 3 else n * 10 for n in items]

    results = await asyncio.gather(*(group.submit_to(writer, n) for n in range(8)), return_exceptions=True)
    await group.close()
    assert [r for r in results if not isinstance(r, Exception)] == [0, 10, 20, 40, 50, 60, 70]
    assert isinstance(results[3], ValueError)
    assert calls == [8]  # one call for the whole batch
    recipients = {row["recipient"] for row in await MessageOutbox.select(MessageOutbox.recipient)}
    assert recipients == {f"w{n}" for n in range(8) if n != 3}


async def test_a_raising_batch_writer_is_retried_item_by_item(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.02)
    calls: list[list[int]] = []

    async def writer(items: list[int]) -> list[object]:
        calls.append(list(items))
        await MessageOutbox.insert(*(_message(f"w{n}") for n in items))
        if 2 in items:
            raise RuntimeError("item 2 breaks the statement")
        return items

    results = await asyncio.gather(*(group.submit_to(writer, n) for n in range(4)), return_exceptions=True)
    await group.close()
    assert results[:2] == [0, 1] and results[3] == 3
    assert isinstance(results[2], RuntimeError)
    assert calls[0] == [0, 1, 2, 3] and sorted(calls[1:]) == [[0], [1], [2], [3]]
    recipients = {row["recipient"] for row in await MessageOutbox.select(MessageOutbox.recipient)}
    assert recipients == {"w0", "w1", "w3"}  # the first attempt and item 2 were rolled back


async def test_writers_run_by_order_within_a_batch(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.02)
    ran: list[str] = []

    async def last(items: list[int]) -> list[int]:
        ran.append("last")
        return items

    async def first(items: list[int]) -> list[int]:
        ran.append("first")
        return items

    await asyncio.gather(
        group.submit_to(last, 1, order=10), group.submit_to(first, 2), group.submit_to(last, 3, order=10)
    )
    await group.close()
    assert ran == ["first", "last"]


async def test_batches_commit_side_by_side_on_postgresql(platform):
    group = GroupCommit(platform.db, max_batch=5, max_wait=0, in_flight=3)
    assert group.in_flight == (1 if platform.db.kind == "sqlite" else 3)

    async def write(n: int) -> int:
        await MessageOutbox.insert(_message(f"p{n}"))
        return n

    results = await asyncio.gather(*(group.submit(lambda n=n: write(n)) for n in range(60)))
    await group.close()
    assert sorted(results) == list(range(60))
    assert await MessageOutbox.count() == 60


async def test_a_writer_with_its_own_transaction_runs_without_one(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.02)
    calls: list[tuple[list[int], bool]] = []

    async def writer(items: list[int]) -> list[int]:
        calls.append((list(items), platform.db.in_transaction()))
        async with platform.db.transaction():  # its own: the batch all or nothing
            await MessageOutbox.insert(*(_message(f"o{n}") for n in items))
        return [n * 10 for n in items]

    results = await asyncio.gather(*(group.submit_to(writer, n, own_transaction=True) for n in range(5)))
    await group.close()
    assert results == [0, 10, 20, 30, 40]
    assert calls == [([0, 1, 2, 3, 4], False)]  # one call, no BEGIN/COMMIT of the group commit's around it
    assert await MessageOutbox.count() == 5


async def test_a_writer_with_its_own_transaction_that_raises_is_run_item_by_item_in_one(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.02)
    calls: list[tuple[list[int], bool]] = []

    async def writer(items: list[int]) -> list[int]:
        calls.append((list(items), platform.db.in_transaction()))
        async with platform.db.transaction():
            await MessageOutbox.insert(*(_message(f"o{n}") for n in items))
            if 2 in items:
                raise RuntimeError("item 2 breaks the statement")
        return items

    results = await asyncio.gather(
        *(group.submit_to(writer, n, own_transaction=True) for n in range(4)), return_exceptions=True
    )
    await group.close()
    assert results[:2] == [0, 1] and results[3] == 3
    assert isinstance(results[2], RuntimeError)
    assert calls[0] == ([0, 1, 2, 3], False)
    # Then each item alone, in a savepoint of the group commit's transaction.
    assert sorted(calls[1:]) == [([0], True), ([1], True), ([2], True), ([3], True)]
    recipients = {row["recipient"] for row in await MessageOutbox.select(MessageOutbox.recipient)}
    assert recipients == {"o0", "o1", "o3"}  # nothing of the first attempt, nothing of item 2


async def test_a_batch_not_all_own_transaction_runs_in_the_group_commits(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.02)
    seen: list[bool] = []

    async def writer(items: list[int]) -> list[int]:
        seen.append(platform.db.in_transaction())
        return items

    async def closure() -> int:
        return 7

    # One item without own_transaction: the whole batch is in the group commit's transaction.
    await asyncio.gather(group.submit_to(writer, 1, own_transaction=True), group.submit_to(writer, 2))
    # Another writer's item (or a closure) in the batch: likewise.
    await asyncio.gather(group.submit_to(writer, 3, own_transaction=True), group.submit(closure))
    await group.close()
    assert seen == [True, True]


async def test_a_writer_with_its_own_transaction_answering_wrong_is_not_run_again(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.02)
    calls: list[list[int]] = []

    async def writer(items: list[int]) -> list[int]:
        calls.append(list(items))
        await MessageOutbox.insert(*(_message(f"o{n}") for n in items))  # committed at once
        return items[:1]

    results = await asyncio.gather(
        *(group.submit_to(writer, n, own_transaction=True) for n in range(3)), return_exceptions=True
    )
    await group.close()
    assert all(isinstance(result, RuntimeError) for result in results)
    assert calls == [[0, 1, 2]]  # what it stored is not stored twice
    assert await MessageOutbox.count() == 3


# -- announced writes and parts ---------------------------------------------------------------


def _recording_writer(batches: list[list[int]]):
    async def writer(items: list[int]) -> list[int]:
        batches.append(list(items))
        return items

    return writer


async def test_a_batch_waits_for_announced_writes_and_no_longer(platform):
    # max_wait is long: a batch that waited for it would not finish within the test's timeout.
    group = GroupCommit(platform.db, max_batch=100, max_wait=60)
    batches: list[list[int]] = []
    writer = _recording_writer(batches)
    second_may_go = asyncio.Event()

    async def request(n: int, *, after: asyncio.Event | None = None) -> int:
        with group.expecting():
            if after is not None:
                await after.wait()  # still reading its token, say
            return await group.submit_to(writer, n)

    first = asyncio.create_task(request(1))
    second = asyncio.create_task(request(2, after=second_may_go))
    await asyncio.sleep(0.05)
    assert not first.done()  # the batch waits: the second request said it would write
    second_may_go.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), timeout=10) == [1, 2]
    assert batches == [[1, 2]]  # together, without waiting out max_wait
    await group.close()


async def test_an_announced_request_that_writes_nothing_does_not_hold_the_batch(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=60)
    batches: list[list[int]] = []
    writer = _recording_writer(batches)
    refused = asyncio.Event()

    async def refused_request() -> None:
        with group.expecting():
            await refused.wait()
            raise PermissionError("403")  # refused by the guard: no write

    async def request() -> int:
        with group.expecting():
            return await group.submit_to(writer, 7)

    failing = asyncio.create_task(refused_request())
    storing = asyncio.create_task(request())
    await asyncio.sleep(0.05)
    refused.set()
    with pytest.raises(PermissionError):
        await failing
    assert await asyncio.wait_for(storing, timeout=10) == 7
    assert group._expected == 0
    await group.close()


async def test_an_announcement_counts_once_per_request(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.05)
    batches: list[list[int]] = []
    writer = _recording_writer(batches)

    async def request() -> list[int]:
        with group.expecting(), group.expecting():  # nested: one announcement
            assert group._expected == 1
            first = await group.submit_to(writer, 1)
            assert group._expected == 0  # handed in: nothing more is expected of this request
            second = await group.submit_to(writer, 2)  # a second write is not announced
            return [first, second]

    assert await request() == [1, 2]
    assert group._expected == 0  # the block's end closed nothing twice
    assert batches == [[1], [2]]
    await group.close()


async def test_unannounced_writes_still_wait_for_company(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.2)
    batches: list[list[int]] = []
    writer = _recording_writer(batches)

    async def late() -> int:
        await asyncio.sleep(0.02)  # well within max_wait
        return await group.submit_to(writer, 2)

    assert await asyncio.gather(group.submit_to(writer, 1), late()) == [1, 2]
    assert batches == [[1, 2]]
    await group.close()


async def test_a_burst_is_split_into_parts_over_free_slots_on_postgresql(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.01, in_flight=3, min_part=4)
    batches: list[list[int]] = []
    writer = _recording_writer(batches)
    results = await asyncio.gather(*(group.submit_to(writer, n) for n in range(10)))
    await group.close()
    assert results == list(range(10))
    if platform.db.kind == "sqlite":
        assert batches == [list(range(10))]  # one writer at a time: never split
    else:
        # 10 writes, parts of at least 4, 3 slots: two parts, in arrival order.
        assert batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert group.writes == 10
    assert not group._slots.locked()  # every slot taken for a part was given back


async def test_a_small_batch_is_not_split(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.01, in_flight=3, min_part=4)
    batches: list[list[int]] = []
    writer = _recording_writer(batches)
    assert await asyncio.gather(*(group.submit_to(writer, n) for n in range(7))) == list(range(7))
    await group.close()
    assert batches == [list(range(7))]


async def _checked_one_by_one(
    group: GroupCommit, count: int, batches: list[list[int]]
) -> tuple[list[int], list[list[list[int]]]]:
    """``count`` announced requests, all started, then checked and handed in one after another.

    Returns their answers and, after each hand-in, the batches the writer had been given so far.
    """
    writer = _recording_writer(batches)
    checked = [asyncio.Event() for _ in range(count)]

    async def request(n: int) -> int:
        with group.expecting():
            await checked[n].wait()  # its token and body being checked
            return await group.submit_to(writer, n)

    requests = [asyncio.create_task(request(n)) for n in range(count)]
    await asyncio.sleep(0)  # all have started and announced their writes
    so_far = []
    for event in checked:
        event.set()
        await asyncio.sleep(0.01)
        so_far.append([list(batch) for batch in batches])
    results = await asyncio.wait_for(asyncio.gather(*requests), timeout=10)
    await group.close()
    return results, so_far


async def test_announced_writes_go_early_once_early_part_are_in(platform):
    """Ten announced requests checked one after another: the first four go while the rest are being checked."""
    group = GroupCommit(platform.db, max_batch=100, max_wait=60, early_part=4)
    batches: list[list[int]] = []
    results, so_far = await _checked_one_by_one(group, 10, batches)
    assert results == list(range(10))
    if platform.db.kind == "sqlite":
        assert batches == [list(range(10))]  # one batch at a time: nothing is gained by going early
    else:
        assert so_far[5] == [[0, 1, 2, 3]]  # sent at the fourth hand-in, not held for the other six
        # The rest follow in arrival order: early again while a slot is free besides, else once all are in.
        assert [n for batch in batches for n in batch] == list(range(10))
    assert not group._slots.locked()


async def test_without_early_part_a_batch_waits_for_every_announced_write(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=60, early_part=0)
    batches: list[list[int]] = []
    results, so_far = await _checked_one_by_one(group, 6, batches)
    assert results == list(range(6))
    assert so_far[4] == []  # five of six in: still waiting for the sixth
    assert batches == [list(range(6))]


async def test_a_write_to_another_group_commit_leaves_the_announcement_open(platform):
    # A request announced to the check-ins' group commit may first hand a write to another one (the
    # audit trail's): that write does not count as the one announced, which is still awaited.
    announced_to = GroupCommit(platform.db, max_batch=100, max_wait=0.05)
    other = GroupCommit(platform.db, max_batch=100, max_wait=0.01)
    batches: list[list[int]] = []
    writer = _recording_writer(batches)

    async def request() -> list[int]:
        with announced_to.expecting():
            first = await other.submit_to(writer, 1)
            assert announced_to._expected == 1  # still on its way
            second = await announced_to.submit_to(writer, 2)
            assert announced_to._expected == 0
            return [first, second]

    assert await request() == [1, 2]
    assert (announced_to._expected, other._expected) == (0, 0)
    await announced_to.close()
    await other.close()


async def test_a_writer_with_its_own_transaction_keeps_its_connection_for_the_next_batch(platform):
    group = GroupCommit(platform.db, max_batch=100, max_wait=0.01)
    held: list[object] = []

    async def writer(items: list[int]) -> list[int]:
        rows = await platform.db.fetch("SELECT CAST({} AS INTEGER) AS n", len(items))
        held.append(storage._held.get())
        return [rows[0]["n"]] * len(items)

    first = await asyncio.gather(*(group.submit_to(writer, n, own_transaction=True) for n in range(3)))
    second = await asyncio.gather(*(group.submit_to(writer, n, own_transaction=True) for n in range(2)))
    await group.close()
    assert (first, second) == ([3, 3, 3], [2, 2])
    if platform.db.kind == "postgres":
        # Both batches on one connection, kept out of the pool between them (no acquire and release each).
        assert len(held) == 2 and held[0] is not None and held[0] is held[1]
        assert [connection for connection, _used in platform.db._kept] == [held[0]]
    else:
        assert held == [None, None]
