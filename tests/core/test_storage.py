"""The database layer: raw queries and transactions on both databases."""

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
