"""Index visits for tracing, and on PostgreSQL partition visits and declarations by day.

Tracing looks visits up by venue and arrival (who was there then) and by
person and arrival (where was the case). On PostgreSQL the two high-volume
tables become range-partitioned on their Unix-second time column, with a
default partition; the daily partitions are created by the checkin plugin
(``retention.ensure_partitions``) so that retention drops whole days.
Existing rows are copied across, so the migration is safe on a used table.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T00:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "partition visits and declarations by day; tracing indexes"

PARTITIONED = (
    ("checkin_visit", "arrived_at"),
    ("checkin_declaration", "declared_at"),
)

INDEXES = [
    "CREATE INDEX IF NOT EXISTS checkin_visit_venue_arrival ON checkin_visit (venue_id, arrived_at)",
    "CREATE INDEX IF NOT EXISTS checkin_visit_subject_arrival ON checkin_visit (subject_id, arrived_at)",
    "CREATE INDEX IF NOT EXISTS checkin_visit_province_arrival ON checkin_visit (province, arrived_at)",
    "CREATE INDEX IF NOT EXISTS checkin_declaration_risky ON checkin_declaration (province, risky, declared_at)",
    "CREATE INDEX IF NOT EXISTS checkin_declaration_visit ON checkin_declaration (visit_id)",
]


def partition_statements(table: str, column: str) -> list[str]:
    return [
        f"ALTER TABLE {table} RENAME TO {table}_unpartitioned",
        f"CREATE TABLE {table} (LIKE {table}_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE ({column})",
        f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT",
        f"INSERT INTO {table} SELECT * FROM {table}_unpartitioned",
        f"DROP TABLE {table}_unpartitioned",
        # The partition key must be part of the primary key.
        f"ALTER TABLE {table} ADD PRIMARY KEY (id, {column})",
    ]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="checkin", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        statements = []
        if engine.engine_type == "postgres":
            for table, column in PARTITIONED:
                statements.extend(partition_statements(table, column))
        statements.extend(INDEXES)
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
