"""What the ORM cannot declare: one version number per pool result, and version 1 of past pool results.

``(pool, version)`` is unique, so two corrections can never both store version
2 of a pool's result. Pools resulted before versions were kept get their
result as version 1, so that a correction of them keeps it for staff too.
"""

import uuid
from datetime import UTC, datetime

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.querystring import QueryString

ID = "2026-11-26T04:50:17:000000"
VERSION = "1.38.0"
DESCRIPTION = "unique pool result versions; version 1 of pools resulted before"

UNIQUE = "CREATE UNIQUE INDEX testing_pool_result_pool_version ON testing_pool_result (pool, version)"
RESULTED = (
    "SELECT id, status, ct_value, lab, entered_by, outcome_at FROM testing_pool "
    "WHERE status IN ('negative', 'positive', 'invalid') AND result_version = 0"
)
INSERT = (
    "INSERT INTO testing_pool_result (id, pool, version, outcome, ct_value, lab, entered_by, released_at, current, "
    "reason) VALUES ({}, {}, 1, {}, {}, {}, {}, {}, {}, '')"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="testing", description=DESCRIPTION)

    async def run():
        engine = engine_finder()
        await engine.run_ddl(UNIQUE)
        for row in await engine.run_querystring(QueryString(RESULTED)):
            await engine.run_querystring(
                QueryString(
                    INSERT,
                    uuid.uuid4() if engine.engine_type == "postgres" else str(uuid.uuid4()),
                    row["id"],
                    row["status"],
                    row["ct_value"],
                    row["lab"] or "",
                    row["entered_by"] or "",
                    row["outcome_at"] or datetime.now(UTC),
                    True,
                )
            )
        await engine.run_querystring(
            QueryString(
                "UPDATE testing_pool SET result_version = 1 "
                "WHERE status IN ('negative', 'positive', 'invalid') AND result_version = 0"
            )
        )

    manager.add_raw(run)
    return manager
