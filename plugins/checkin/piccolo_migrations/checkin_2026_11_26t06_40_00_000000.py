"""Tracing's visit index carries the visitor: index-only contact searches on PostgreSQL.

Tracing pairs each visit of a case (or of an F1) with the other visits at
the same venue that overlap it, through the index on (venue, arrival,
departure). It also needs who the other visitor is (subject, sub-location,
phone, identity number, name); with those columns included in the index
the search reads the index alone and never the table (bench/tracing.py on
10M check-ins: the F2 search of a busy case read 230,000 buffers, most of
them table pages, before; the join itself took a third of the time after).
The new index replaces the one on (venue, arrival, departure), which it
covers. On PostgreSQL it is built on the partitioned table, so on every
daily partition (and those made later); building it takes a lock that
holds check-ins back while it runs (about 35 s for 10 million rows, see
docs/operations.md). SQLite has no included columns: its index stays.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T06:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "tracing index on visits includes the visitor's identity (PostgreSQL)"

POSTGRES_STATEMENTS = [
    "CREATE INDEX IF NOT EXISTS checkin_visit_venue_contacts ON checkin_visit (venue_id, arrived_at, left_at) "
    "INCLUDE (subject_id, sub_location_id, phone, id_number, full_name)",
    "DROP INDEX IF EXISTS checkin_visit_venue_stay",
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="checkin", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        if engine.engine_type != "postgres":
            return
        for statement in POSTGRES_STATEMENTS:
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
