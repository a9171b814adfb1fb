"""PostgreSQL: ``checkin_store_batch`` takes the batch as three arrays of rows instead of 26 arrays of columns.

The same function, the same steps and answers as migration
2026-11-26T10:40 made it (read its docstring), with a new signature:

    checkin_store_batch(p_lock_class integer, p_visits checkin_batch_visit[], p_window bigint,
                        p_declarations checkin_batch_declaration[], p_hits checkin_batch_hit[])

asyncpg spends about 0.4 µs of the worker's time on every element of an
array argument: 26 arrays of 16 values cost a batch of 16 check-ins about
180 µs, the same values as three arrays of composite rows about a third of
that (measured alone on the benchmark machine). The old signature is dropped.

SQLite has no stored functions: it keeps the path in Python.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T16:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "checkin_store_batch: the batch as arrays of rows (visits, declarations, rate-limit hits)"

STATEMENTS = [
    """
    DROP FUNCTION IF EXISTS checkin_store_batch(
        integer, uuid[], uuid[], uuid[], text[], text[], text[], text[], text[], text[], bigint[], bigint[],
        text[], text[], text[], integer[], uuid[], bigint, integer[], text[], text[], text[], boolean[],
        integer[], text[], integer[], bigint[])
    """,
    # A new visit: its columns, its idempotency key, its number in the batch and the citizen account
    # to take its phone from (NULL: the phone given).
    """
    CREATE TYPE checkin_batch_visit AS (
        id uuid, venue_id uuid, sub_location_id uuid, province text, site text, subject_id text, phone text,
        id_number text, full_name text, arrived_at bigint, left_at bigint, method text, recorded_by text,
        key text, n integer, account uuid
    )
    """,
    # A declaration, by the number in the batch of its check-in (answers and risk flags as JSON text).
    "CREATE TYPE checkin_batch_declaration AS (n integer, version text, answers text, risk_flags text, risky boolean)",
    # A rate-limit hit: the number in the batch of its check-in, its bucket, its limit, its window's end.
    "CREATE TYPE checkin_batch_hit AS (n integer, bucket text, lim integer, expires bigint)",
    """
    CREATE FUNCTION checkin_store_batch(
        p_lock_class integer, p_visits checkin_batch_visit[], p_window bigint,
        p_declarations checkin_batch_declaration[], p_hits checkin_batch_hit[]
    ) RETURNS TABLE (r_kind integer, r_n integer, r_id uuid, r_arrived_at bigint, r_key text)
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        v_refused integer[] := '{}';
        v_hit integer[] := '{}';
        v_count bigint[] := '{}';
    BEGIN
        IF cardinality(p_hits) > 0 THEN
            WITH h AS (
                SELECT * FROM unnest(p_hits) WITH ORDINALITY AS h(n, bucket, lim, expires, i)
            ), added AS (
                SELECT bucket, count(*)::integer AS hits, max(expires) AS expires FROM h GROUP BY bucket
            ), totals AS (
                INSERT INTO rate_bucket AS b (bucket, hits, expires_at)
                SELECT bucket, hits, expires FROM added ORDER BY bucket COLLATE "C"
                ON CONFLICT (bucket) DO UPDATE SET hits = b.hits + excluded.hits
                RETURNING b.bucket, b.hits
            ), counted AS (
                SELECT h.i, h.n, h.lim,
                    t.hits - a.hits + row_number() OVER (PARTITION BY h.bucket ORDER BY h.i) AS c
                FROM h JOIN added a ON a.bucket = h.bucket JOIN totals t ON t.bucket = h.bucket
            )
            SELECT coalesce(array_agg(i::integer - 1 ORDER BY i), '{}'), coalesce(array_agg(c ORDER BY i), '{}'),
                coalesce(array_agg(DISTINCT n), '{}')
            INTO v_hit, v_count, v_refused
            FROM counted WHERE c > lim;
            RETURN QUERY SELECT 2, x.i, NULL::uuid, x.c, NULL::text FROM unnest(v_hit, v_count) AS x(i, c);
        END IF;

        PERFORM pg_advisory_xact_lock(p_lock_class, people.h) FROM (
            SELECT DISTINCT hashtext(x.subject_id) AS h FROM unnest(p_visits) AS x
            WHERE x.n <> ALL(v_refused) ORDER BY h
        ) AS people;

        RETURN QUERY
        WITH u AS MATERIALIZED (
            SELECT x.id, x.venue_id, x.sub_location_id, x.province, x.site, x.subject_id,
                CASE WHEN x.account IS NULL THEN x.phone
                    ELSE (SELECT c.phone::text FROM citizen c WHERE c.id = x.account) END AS phone,
                x.id_number, x.full_name, x.arrived_at, x.left_at, x.method, x.recorded_by, x.key, x.n
            FROM unnest(p_visits) AS x
            WHERE x.n <> ALL(v_refused)
        ), same AS MATERIALIZED (
            SELECT u.n, v.id, v.arrived_at, v.sub_location_id, u.sub_location_id AS here FROM u
            CROSS JOIN LATERAL (SELECT id, arrived_at, sub_location_id FROM checkin_visit v
                WHERE v.subject_id = u.subject_id AND (v.venue_id = u.venue_id) IS TRUE
                AND v.arrived_at BETWEEN u.arrived_at - p_window AND u.arrived_at + p_window
                ORDER BY v.arrived_at DESC LIMIT 1) v
        ), cleared AS (
            UPDATE checkin_visit c SET sub_location_id = NULL FROM same
            WHERE c.id = same.id AND c.arrived_at = same.arrived_at
            AND same.sub_location_id IS NOT NULL AND same.sub_location_id IS DISTINCT FROM same.here
        ), stored_keys AS (
            INSERT INTO checkin_idempotency (key, visit_id, arrived_at, created_at)
            SELECT u.key, coalesce(same.id, u.id), coalesce(same.arrived_at, u.arrived_at), u.arrived_at
            FROM u LEFT JOIN same ON same.n = u.n WHERE u.key IS NOT NULL ORDER BY u.key
            ON CONFLICT DO NOTHING RETURNING key
        ), visits AS (
            INSERT INTO checkin_visit (id, venue_id, sub_location_id, province, site, subject_id, phone,
                id_number, full_name, arrived_at, left_at, method, recorded_by, checked_out)
            SELECT id, venue_id, sub_location_id, province, site, subject_id, phone, id_number, full_name,
                arrived_at, left_at, method, recorded_by, false FROM u
            WHERE u.n NOT IN (SELECT n FROM same) AND (u.key IS NULL OR u.key IN (SELECT key FROM stored_keys))
        ), declarations AS (
            INSERT INTO checkin_declaration (id, visit_id, subject_id, province, venue_id, questionnaire_version,
                answers, risk_flags, risky, declared_at, proxy_by)
            SELECT gen_random_uuid(), u.id, u.subject_id, u.province, u.venue_id, d.version, d.answers::json,
                d.risk_flags::json, d.risky, u.arrived_at, CASE WHEN u.method = 'proxy' THEN u.recorded_by END
            FROM unnest(p_declarations) AS d JOIN u ON u.n = d.n
            WHERE u.n NOT IN (SELECT n FROM same) AND (u.key IS NULL OR u.key IN (SELECT key FROM stored_keys))
        )
        SELECT 0, same.n, same.id, same.arrived_at, NULL::text FROM same
        UNION ALL SELECT 1, NULL::integer, NULL::uuid, NULL::bigint, stored_keys.key::text FROM stored_keys;
    END;
    $$
    """,
]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="checkin", description=DESCRIPTION)

    async def create_function():
        engine = engine_finder()
        if engine.engine_type == "postgres":
            for statement in STATEMENTS:
                await engine.run_ddl(statement)

    manager.add_raw(create_function)
    return manager
