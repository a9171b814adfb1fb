"""Retention: check-ins and declarations are deleted after ``retention_days``; the deletion is counted.

On PostgreSQL both tables are partitioned by day (UTC) on their Unix-second
time column, so a purge drops whole days as partitions and deletes only the
rows of the one day that straddles the cutoff (and any that landed in the
default partition). Partitions are created ahead of time, at start-up and by
the hourly job; a day without one falls into the default partition, never
failing an insert.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from core import clock
from plugins.checkin.schemas import PurgeResult
from plugins.checkin.visits import settings_of

if TYPE_CHECKING:
    from core.platform import Platform

log = structlog.get_logger("checkin.retention")

# Table and the Unix-second column it is partitioned by.
PARTITIONED: tuple[tuple[str, str], ...] = (
    ("checkin_visit", "arrived_at"),
    ("checkin_declaration", "declared_at"),
)
_DAY_SUFFIX = re.compile(r"_d([0-9]{8})$")
DAY = 86400


async def purge(platform: Platform) -> PurgeResult:
    """Delete everything older than the retention period; returns and logs the counts."""
    config = settings_of(platform)
    cutoff = clock.now() - timedelta(days=config.retention_days)
    cutoff_s = int(cutoff.timestamp())
    removed = {table: 0 for table, _column in PARTITIONED}
    dropped = 0
    if platform.db.kind == "postgres":
        for table, _column in PARTITIONED:
            for name, day in await day_partitions(platform, table):
                if _epoch(day + timedelta(days=1)) <= cutoff_s:
                    # Names come from the catalogue and PARTITIONED, never from a request.
                    removed[table] += await _count(platform, f'SELECT count(*) AS n FROM "{name}"')  # noqa: S608
                    await platform.db.execute(f'DROP TABLE "{name}"')
                    dropped += 1
    for table, column in PARTITIONED:
        removed[table] += await _delete_before(platform, table, column, cutoff_s)
    keys = await _delete_before(platform, "checkin_idempotency", "created_at", cutoff_s)
    result = PurgeResult(
        cutoff=cutoff,
        visits=removed["checkin_visit"],
        declarations=removed["checkin_declaration"],
        idempotency_keys=keys,
        partitions_dropped=dropped,
    )
    log.info(
        "checkin.purged",
        cutoff=cutoff.isoformat(),
        visits=result.visits,
        declarations=result.declarations,
        idempotency_keys=keys,
        partitions_dropped=dropped,
    )
    return result


async def ensure_partitions(platform: Platform) -> int:
    """Create the daily partitions that may receive rows soon (PostgreSQL); returns how many."""
    if platform.db.kind != "postgres":
        return 0
    config = settings_of(platform)
    now = clock.now()
    today = now.date()
    earliest = (now - timedelta(minutes=config.max_backdate_minutes)).date()
    oldest_kept = (now - timedelta(days=config.retention_days)).date()
    first = max(earliest, oldest_kept)
    days = [first + timedelta(days=n) for n in range((today - first).days + config.partition_days_ahead + 1)]
    created = 0
    for table, column in PARTITIONED:
        existing = {day for _name, day in await day_partitions(platform, table)}
        for day in days:
            if day in existing:
                continue
            low, high = _epoch(day), _epoch(day + timedelta(days=1))
            # Rows already in the default partition for that day would make the new partition fail.
            clash = await platform.db.execute(
                f"SELECT 1 AS x FROM {table}_default WHERE {column} >= {{}} AND {column} < {{}} LIMIT 1",  # noqa: S608
                low,
                high,
            )
            if clash:
                log.warning("checkin.partition_skipped", table=table, day=day.isoformat())
                continue
            await platform.db.execute(
                f'CREATE TABLE IF NOT EXISTS "{partition_name(table, day)}" PARTITION OF {table} '
                f"FOR VALUES FROM ({low}) TO ({high})"
            )
            created += 1
    if created:
        log.info("checkin.partitions_created", count=created)
    return created


async def day_partitions(platform: Platform, table: str) -> list[tuple[str, date]]:
    """The daily partitions of ``table`` and the day each holds."""
    rows = await platform.db.execute(
        "SELECT child.relname AS name FROM pg_inherits "
        "JOIN pg_class parent ON parent.oid = pg_inherits.inhparent "
        "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
        "WHERE parent.relname = {}",
        table,
    )
    found = []
    for row in rows:
        match = _DAY_SUFFIX.search(row["name"])
        if match:
            found.append((row["name"], datetime.strptime(match.group(1), "%Y%m%d").date()))
    return sorted(found, key=lambda item: item[1])


def partition_name(table: str, day: date) -> str:
    return f"{table}_d{day:%Y%m%d}"


async def _delete_before(platform: Platform, table: str, column: str, cutoff: int) -> int:
    # ``table`` and ``column`` are this module's constants; the cutoff is a bound parameter.
    async with platform.db.transaction():
        count = await _count(platform, f"SELECT count(*) AS n FROM {table} WHERE {column} < {{}}", cutoff)  # noqa: S608
        if count:
            await platform.db.execute(f"DELETE FROM {table} WHERE {column} < {{}}", cutoff)  # noqa: S608
    return count


async def _count(platform: Platform, sql: str, *args: object) -> int:
    rows = await platform.db.execute(sql, *args)
    return int(rows[0]["n"])


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
