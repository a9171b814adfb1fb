"""Set-based writes for big result uploads, inside the caller's transaction.

Building one ORM object per row costs more than the database's own work
once uploads reach tens of thousands of rows, so these go to the driver:
COPY on PostgreSQL, ``executemany`` on SQLite, and one UPDATE per chunk of
ids. Values are plain Python (UUID, datetime, float, bool); both drivers
already convert them the way Piccolo does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from piccolo.table import Table

    from core.platform import Platform

SQLITE_CHUNK = 500  # SQLite allows at most 999 parameters per statement in older builds


async def insert(platform: Platform, table: type[Table], columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table``."""
    if not rows:
        return
    connection = connection_of(platform)
    name = table._meta.tablename
    if platform.db.kind == "postgres":
        await connection.copy_records_to_table(name, records=rows, columns=list(columns))
        return
    placeholders = ", ".join("?" for _ in columns)
    quoted = ", ".join(f'"{column}"' for column in columns)
    # Names come from code, never from a request; the values are bound parameters.
    await connection.executemany(f'INSERT INTO "{name}" ({quoted}) VALUES ({placeholders})', rows)  # noqa: S608


async def update_ids(
    platform: Platform,
    table: type[Table],
    values: dict[str, Any],
    ids: list[str],
    *,
    only_if: str = "TRUE",
    key: str = "id",
) -> int:
    """Set ``values`` on the rows whose ``key`` is in ``ids`` and which match ``only_if``; returns how many."""
    if not ids:
        return 0
    connection = connection_of(platform)
    name = table._meta.tablename
    columns = list(values)
    if platform.db.kind == "postgres":
        assignments = ", ".join(f'"{column}" = ${index}' for index, column in enumerate(columns, start=1))
        status = await connection.execute(
            f'UPDATE "{name}" SET {assignments} WHERE "{key}" = ANY(${len(columns) + 1}::varchar[]) AND ({only_if})',  # noqa: S608
            *values.values(),
            ids,
        )
        return int(status.rsplit(" ", 1)[1])
    assignments = ", ".join(f'"{column}" = ?' for column in columns)
    changed = 0
    for start in range(0, len(ids), SQLITE_CHUNK):
        chunk = ids[start : start + SQLITE_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        cursor = await connection.execute(
            f'UPDATE "{name}" SET {assignments} WHERE "{key}" IN ({marks}) AND ({only_if})',  # noqa: S608
            [*values.values(), *chunk],
        )
        changed += cursor.rowcount
    return changed


async def update_each(
    platform: Platform,
    table: type[Table],
    columns: dict[str, str],
    rows: list[tuple[Any, ...]],
    *,
    only_if: str = "TRUE",
) -> list[str]:
    """Set each row's own values: ``rows`` are ``(id, value, ...)`` in ``columns`` order; returns the ids set.

    ``columns`` maps each column to its PostgreSQL type, for the arrays of one ``UPDATE ... FROM unnest``.
    """
    if not rows:
        return []
    connection = connection_of(platform)
    name = table._meta.tablename
    names = list(columns)
    if platform.db.kind == "postgres":
        # The new values are named "new_<column>", so ``only_if`` can name the table's columns plainly.
        assignments = ", ".join(f'"{column}" = v."new_{column}"' for column in names)
        arrays = ", ".join(f"${index}::{kind}[]" for index, kind in enumerate(["varchar", *columns.values()], start=1))
        aliases = ", ".join(f'"new_{column}"' for column in names)
        found = await connection.fetch(
            f'UPDATE "{name}" SET {assignments} FROM unnest({arrays}) AS v("new_id", {aliases}) '  # noqa: S608
            f'WHERE "{name}"."id" = v."new_id" AND ({only_if}) RETURNING "{name}"."id"',
            *[list(column) for column in zip(*rows, strict=True)],
        )
        return [row["id"] for row in found]
    assignments = ", ".join(f'"{column}" = ?' for column in names)
    done: list[str] = []
    for row in rows:
        cursor = await connection.execute(
            f'UPDATE "{name}" SET {assignments} WHERE "id" = ? AND ({only_if})',  # noqa: S608
            [*row[1:], row[0]],
        )
        if cursor.rowcount:
            done.append(row[0])
    return done


async def select_in(platform: Platform, sql: str, column: str, ids: list[str]) -> list[Any]:
    """Rows of ``sql`` whose ``{in}`` marker becomes ``column`` in ``ids``: one array parameter on PostgreSQL.

    Rows are read-only mappings (asyncpg records on PostgreSQL, dicts on SQLite).
    """
    if not ids:
        return []
    if platform.db.kind == "postgres":
        return await platform.db.fetch(sql.replace("{in}", f"{column} = ANY({{}}::varchar[])"), ids)
    found: list[Any] = []
    for start in range(0, len(ids), SQLITE_CHUNK):
        chunk = ids[start : start + SQLITE_CHUNK]
        marks = ", ".join("{}" for _ in chunk)
        found += await platform.db.execute(sql.replace("{in}", f"{column} IN ({marks})"), *chunk)
    return found


def connection_of(platform: Platform) -> Any:
    """The driver connection of the current transaction (asyncpg's or aiosqlite's)."""
    transaction = platform.db.engine.current_transaction.get()
    if transaction is None:
        raise RuntimeError("bulk writes run inside platform.db.transaction(), so they commit with the rest")
    return transaction.connection
