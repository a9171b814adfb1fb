"""audit_head only moves forward, and starts at the newest existing audit row.

Piccolo runs a migration's raw steps before its table changes, so this comes
after the migration that creates the table.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T01:20:37:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit_head only moves forward"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="core", description=DESCRIPTION)

    async def guard_and_backfill():
        engine = engine_finder()
        if engine.engine_type == "postgres":
            statements = [
                """
                CREATE OR REPLACE FUNCTION phongdich_audit_head_forward_only() RETURNS trigger AS $$
                BEGIN
                    IF TG_OP = 'DELETE' OR NEW.last_id < OLD.last_id THEN
                        RAISE EXCEPTION 'audit_head only moves forward';
                    END IF;
                    RETURN NEW;
                END;
                $$ LANGUAGE plpgsql
                """,
                """
                CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head
                FOR EACH ROW EXECUTE FUNCTION phongdich_audit_head_forward_only()
                """,
            ]
        else:
            statements = [
                """
                CREATE TRIGGER audit_head_no_rewind BEFORE UPDATE ON audit_head
                WHEN NEW.last_id < OLD.last_id
                BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END
                """,
                """
                CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
                BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END
                """,
            ]
        statements.append(
            "INSERT INTO audit_head (id, last_id, last_hash) "
            "SELECT 1, id, hash FROM audit_log ORDER BY id DESC LIMIT 1"
        )
        for statement in statements:
            await engine.run_ddl(statement)

    manager.add_raw(guard_and_backfill)
    return manager
