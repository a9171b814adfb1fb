"""PostgreSQL: judge a result lookup by date of birth in one round trip (``testing_lookup_by_birth``).

The function takes the code's advisory lock (the one the one-time-code path
takes), reads the code's row after it has the lock, and counts a wrong date of
birth before the lock is released, so parallel guesses are judged one after
the other, as before. SQLite has no stored functions: it keeps the path in
Python, whose write transaction is the lock there.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T06:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "testing_lookup_by_birth: the lookup's lock, check and failure count in one statement"

# 29797 is plugins.testing.lookup.LOOKUP_LOCK_CLASS. A date compares as one integer: no early exit
# that could tell how much of it was right.
FUNCTION = """
CREATE OR REPLACE FUNCTION testing_lookup_by_birth(
    p_digest text, p_born date, p_attempt_limit integer, p_results_since timestamptz
) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_id text;
    v_born date;
    v_failures integer;
    v_result_at timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(29797, hashtext(p_digest));
    SELECT s.id, p.date_of_birth, s.lookup_failures, s.result_at
        INTO v_id, v_born, v_failures, v_result_at
        FROM testing_sample s JOIN testing_person p ON p.id = s.person
        WHERE s.result_code_hash = p_digest;
    IF NOT FOUND OR v_failures >= p_attempt_limit OR v_result_at <= p_results_since THEN
        RETURN false;
    END IF;
    IF v_born = p_born THEN
        RETURN true;
    END IF;
    UPDATE testing_sample SET lookup_failures = lookup_failures + 1 WHERE id = v_id;
    RETURN false;
END;
$$
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="testing", description=DESCRIPTION)

    async def create_function():
        engine = engine_finder()
        if engine.engine_type == "postgres":
            await engine.run_ddl(FUNCTION)

    manager.add_raw(create_function)
    return manager
