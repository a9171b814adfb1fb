"""Coalesced look-ups: one query per round for concurrent callers, failures and cancellations kept apart."""

from __future__ import annotations

import asyncio

import pytest

from core.coalesce import Coalescer


class Rows:
    """A fake table: records each query's keys; ``gate`` holds a query open until the test lets it go."""

    def __init__(self, rows: dict[str, int]) -> None:
        self.rows = rows
        self.queries: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def fetch(self, keys: list[str]) -> dict[str, int]:
        self.queries.append(sorted(keys))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return {key: self.rows[key] for key in keys if key in self.rows}


async def test_concurrent_loads_share_one_query_and_get_their_own_rows():
    rows = Rows({"a": 1, "b": 2, "c": 3})
    loads = Coalescer(rows.fetch)
    answers = await asyncio.gather(*(loads.load(key) for key in ["a", "b", "c", "missing", "a"]))
    assert answers == [1, 2, 3, None, 1]
    assert rows.queries == [["a", "b", "c", "missing"]]  # "a" asked twice, looked up once
    assert (loads.rounds, loads.keys) == (1, 4)


async def test_keys_asked_while_a_query_runs_go_together_in_the_next():
    rows = Rows({str(n): n for n in range(10)})
    rows.gate = asyncio.Event()
    loads = Coalescer(rows.fetch)
    first = asyncio.ensure_future(loads.load("0"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert rows.queries == [["0"]]  # the first query is running, held open
    later = [asyncio.ensure_future(loads.load(str(n))) for n in range(1, 6)]
    await asyncio.sleep(0)
    assert len(rows.queries) == 1  # they wait for the running one to end
    rows.gate.set()
    assert await first == 0
    assert await asyncio.gather(*later) == [1, 2, 3, 4, 5]
    assert rows.queries == [["0"], ["1", "2", "3", "4", "5"]]


class Recording(dict):
    """The rows of a round; records the coalescer taking each caller's row, beside the callers' own log."""

    def __init__(self, rows: dict[str, int], log: list[str]) -> None:
        super().__init__(rows)
        self.log = log

    def get(self, key, default=None):  # type: ignore[override]
        self.log.append(f"give {key}")
        return super().get(key, default)


async def test_a_round_wakes_its_callers_in_slices_letting_each_slice_run_first():
    log: list[str] = []
    rows = {str(n): n for n in range(6)}

    async def fetch(keys: list[str]) -> dict[str, int]:
        return Recording({key: rows[key] for key in keys}, log)

    async def caller(key: str) -> int | None:
        value = await loads.load(key)
        log.append(f"ran {key}")
        return value

    loads = Coalescer(fetch, wake_slice=2)
    assert await asyncio.gather(*(caller(str(n)) for n in range(6))) == list(range(6))
    slices = [["give 0", "give 1", "ran 0", "ran 1"], ["give 2", "give 3", "ran 2", "ran 3"], ["give 4", "give 5"]]
    assert log == [*slices[0], *slices[1], *slices[2], "ran 4", "ran 5"]

    log.clear()
    loads = Coalescer(fetch)  # no slices: the whole round at once
    assert await asyncio.gather(*(caller(str(n)) for n in range(4))) == list(range(4))
    assert log == ["give 0", "give 1", "give 2", "give 3", "ran 0", "ran 1", "ran 2", "ran 3"]


async def test_a_runner_stopped_between_slices_leaves_nobody_waiting():
    release = asyncio.Event()
    got_first = asyncio.Event()

    async def fetch(keys: list[str]) -> dict[str, int]:
        return {key: 1 for key in keys}

    loads = Coalescer(fetch, wake_slice=1)

    async def caller(key: str) -> int | None:
        value = await loads.load(key)
        if key == "a":
            got_first.set()
        await release.wait()
        return value

    keys = ["a", *(f"k{n}" for n in range(20))]
    callers = [asyncio.ensure_future(caller(key)) for key in keys]
    await got_first.wait()  # the round is fetched, its first slices woken
    assert loads._runner is not None
    loads._runner.cancel()  # shutdown, between slices
    release.set()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), timeout=5)
    assert results[0] == 1
    assert isinstance(results[-1], asyncio.CancelledError)  # not left waiting for a slice that never came


async def test_a_round_is_at_most_max_keys():
    rows = Rows({str(n): n for n in range(7)})
    loads = Coalescer(rows.fetch, max_keys=3)
    assert await asyncio.gather(*(loads.load(str(n)) for n in range(7))) == list(range(7))
    assert [len(keys) for keys in rows.queries] == [3, 3, 1]


async def test_a_failed_query_fails_its_round_and_the_next_round_works():
    rows = Rows({"a": 1})
    rows.fail = ConnectionError("database went away")
    loads = Coalescer(rows.fetch)
    results = await asyncio.gather(loads.load("a"), loads.load("b"), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    rows.fail = None
    assert await loads.load("a") == 1


async def test_a_cancelled_caller_does_not_disturb_the_others_asking_the_same_key():
    rows = Rows({"a": 1})
    rows.gate = asyncio.Event()
    loads = Coalescer(rows.fetch)
    leaving = asyncio.ensure_future(loads.load("a"))
    staying = asyncio.ensure_future(loads.load("a"))
    await asyncio.sleep(0)
    leaving.cancel()
    rows.gate.set()
    assert await staying == 1
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_an_idle_coalescer_holds_no_task():
    rows = Rows({"a": 1})
    loads = Coalescer(rows.fetch)
    assert await loads.load("a") == 1
    await asyncio.sleep(0)
    assert loads._runner is None
