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
    connection = _connection(platform)
    name = table._meta.tablename
    if platform.db.kind == "postgres":
        await connection.copy_records_to_table(name, records=rows, columns=list(columns))
        return
    placeholders = ", ".join("?" for _ in columns)
    quoted = ", ".join(f'"{column}"' for column in columns)
    # Names come from code, never from a request; the values are bound parameters.
    await connection.executemany(f'INSERT INTO "{name}" ({quoted}) VALUES ({placeholders})', rows)  # noqa: S608


async def update_ids(
    platform: Platform, table: type[Table], values: dict[str, Any], ids: list[str], *, only_if: str = "TRUE"
) -> int:
    """Set ``values`` on the rows whose ``id`` is in ``ids`` and which match ``only_if``; returns how many."""
    if not ids:
        return 0
    connection = _connection(platform)
    name = table._meta.tablename
    columns = list(values)
    if platform.db.kind == "postgres":
        assignments = ", ".join(f'"{column}" = ${index}' for index, column in enumerate(columns, start=1))
        status = await connection.execute(
            f'UPDATE "{name}" SET {assignments} WHERE "id" = ANY(${len(columns) + 1}::varchar[]) AND ({only_if})',  # noqa: S608
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
            f'UPDATE "{name}" SET {assignments} WHERE "id" IN ({marks}) AND ({only_if})',  # noqa: S608
            [*values.values(), *chunk],
        )
        changed += cursor.rowcount
    return changed


def _connection(platform: Platform) -> Any:
    transaction = platform.db.engine.current_transaction.get()
    if transaction is None:
        raise RuntimeError("bulk writes run inside platform.db.transaction(), so they commit with the rest")
    return transaction.connection
