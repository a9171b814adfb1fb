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
