"""What the ORM cannot declare: one version number per result, and room to update samples in place.

``(sample, version)`` is unique, so two writers can never both store version 2
of a result. On PostgreSQL, pages of ``testing_sample`` keep 30% free, so
releasing a result (which changes no indexed column) rewrites the row in
place instead of touching every index (a "HOT" update).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T01:34:40:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique result versions; free space for in-place sample updates"

BOTH = ["CREATE UNIQUE INDEX testing_result_sample_version ON testing_result (sample, version)"]
POSTGRES = ["ALTER TABLE testing_sample SET (fillfactor = 70)"]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="testing", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        for statement in BOTH + (POSTGRES if engine.engine_type == "postgres" else []):
            await engine.run_ddl(statement)

    manager.add_raw(run)
    return manager
