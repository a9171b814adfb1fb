"""Room for every sample of a page to get its result in place, in one upload.

The fillfactor of 70 (migration 2026-11-26T01:34:40) lets a page take new
versions of only about 40% of its rows while one transaction holds the old
ones, so a 100,000-row upload updated the other 60% by writing a new entry
into each of the nine indexes of ``testing_sample``. With 45% of each page
filled, a result (about 30 bytes more per row: the outcome, two times)
fits next to every row of its page, and releasing results changes no
indexed column, so every update is "HOT": measured on a 100,000-row upload,
1.36 s and 705,000 WAL records before, 0.36 s and 100,000 after. The price
is a table about 1.6 times as large; lookups go through indexes.

Pages filled from now on use the setting; pages written before keep their
old filling until ``VACUUM FULL testing_sample`` or pg_repack rewrites them.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T06:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "testing_sample: fillfactor 45, so results of a whole upload update rows in place"

POSTGRES = ["ALTER TABLE testing_sample SET (fillfactor = 45)"]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="testing", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        if engine.engine_type == "postgres":
            for statement in POSTGRES:
                await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
