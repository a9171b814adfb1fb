"""The database layer: raw queries and transactions on both databases."""

import asyncio
import sqlite3

import pytest

from core import storage


async def test_fetch_runs_raw_sql_with_placeholders(platform):
    rows = await platform.db.fetch("SELECT CAST({} AS INTEGER) + CAST({} AS INTEGER) AS total, {} AS word", 2, 3, "ba")
    assert rows[0]["total"] == 5 and rows[0]["word"] == "ba"
    async with platform.db.transaction():
        inside = await platform.db.fetch("SELECT CAST({} AS INTEGER) AS n", 7)
    assert inside[0]["n"] == 7


def test_placeholders_are_numbered_for_postgresql():
    assert storage._numbered("SELECT {} WHERE a = {} AND b = {}") == "SELECT $1 WHERE a = $2 AND b = $3"


async def test_a_write_transaction_that_cannot_begin_closes_its_connection(platform, monkeypatch):
    if platform.db.kind != "sqlite":
        pytest.skip("SQLite's write lock")
    closed: list[bool] = []

    async def locked(self) -> None:
        original_close = self.connection.close

        async def close() -> None:
            closed.append(True)
            await original_close()

        self.connection.close = close
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(storage._SQLiteWrite, "begin", locked)
    with pytest.raises(sqlite3.OperationalError):
        async with platform.db.transaction():
            pass
    assert closed == [True]
    assert not platform.db.in_transaction()


async def _backend(db: storage.Database) -> int:
    return int((await db.fetch("SELECT pg_backend_pid() AS pid"))[0]["pid"])


async def test_a_kept_connection_serves_the_block_and_the_next_one(platform):
    db = platform.db
    if db.kind != "postgres":
        async with db.kept():  # SQLite: nothing to keep, queries run as ever
            assert (await db.fetch("SELECT 1 AS one"))[0]["one"] == 1
        assert db._kept == []
        return
    idle = db.engine.pool.get_idle_size()
    async with db.kept():
        first = await _backend(db)
        assert await _backend(db) == first
        async with db.kept():  # nested: the same connection
            assert await _backend(db) == first
    assert len(db._kept) == 1
    async with db.kept():
        assert await _backend(db) == first  # the next block takes the kept connection
    async with db.transaction():
        # A transaction is not a kept block's: it takes its connection from the pool.
        assert await _backend(db) != first
    await db.release_kept()
    assert db._kept == [] and db.engine.pool.get_idle_size() >= idle


async def test_a_kept_connection_goes_back_to_the_pool_once_unused(platform):
    db = platform.db
    if db.kind != "postgres":
        pytest.skip("PostgreSQL's connection pool")
    db.keep_for = 0.05
    async with db.kept():
        await _backend(db)
    assert len(db._kept) == 1
    idle = db.engine.pool.get_idle_size()
    for _ in range(100):  # a busy machine may run the timer late
        await asyncio.sleep(0.02)
        if not db._kept and not db._releasing:
            break
    assert db._kept == [] and not db._releasing  # given back
    assert db.engine.pool.get_idle_size() == idle + 1


async def test_a_connection_that_failed_or_stayed_in_a_transaction_is_not_kept(platform):
    db = platform.db
    if db.kind != "postgres":
        pytest.skip("PostgreSQL's connection pool")
    with pytest.raises(ZeroDivisionError):
        async with db.kept():
            await _backend(db)
            raise ZeroDivisionError
    assert db._kept == []
    async with db.kept():
        await db.fetch("BEGIN")  # left open: back to the pool, which rolls it back
    assert db._kept == []
    for _ in range(db.pool_size):  # whichever connection comes next: none is still in that transaction
        async with db.kept():
            await _backend(db)
            held = storage._held.get()
            assert held is not None and not held.is_in_transaction()
        await db.release_kept()
