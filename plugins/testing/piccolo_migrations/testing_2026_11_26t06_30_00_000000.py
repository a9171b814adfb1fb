"""The notice queue's batches: the samples of one big release in one row (as ``--auto`` would write it)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigSerial, Text, Timestamptz
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-26T06:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "testing_untold_batch: big releases queue their notices in one row"

COMMON = {
    "unique": False,
    "index": False,
    "index_method": IndexMethod.btree,
    "choices": None,
    "db_column_name": None,
    "secret": False,
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="testing", description=DESCRIPTION)
    manager.add_table(class_name="UntoldBatch", tablename="testing_untold_batch", schema=None, columns=None)
    columns = [
        ("id", BigSerial, {"null": False, "primary_key": True}),
        ("samples", Text, {"default": "", "null": False, "primary_key": False}),
        ("queued_at", Timestamptz, {"default": TimestamptzNow(), "null": False, "primary_key": False}),
    ]
    for name, column_class, params in columns:
        manager.add_column(
            table_class_name="UntoldBatch",
            tablename="testing_untold_batch",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params={**params, **COMMON},
            schema=None,
        )
    return manager
