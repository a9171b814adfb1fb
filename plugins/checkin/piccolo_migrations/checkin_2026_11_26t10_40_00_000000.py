"""PostgreSQL: a batch of check-ins stored by one function call (``checkin_store_batch``), one round trip.

The group commit stored a batch of check-ins in five round trips: BEGIN, the
rate-limit counts, the people's locks, the store statement, COMMIT. The
function does the same steps in the same order, called on its own (no
BEGIN/COMMIT: the call is its own transaction, all or nothing), so a batch
costs the server process one round trip. It is VOLATILE: each statement in it
takes a new snapshot, so the same-visit lookup, which runs after the locks are
taken, sees every check-in committed while it waited for them (one statement
could not: its snapshot is taken when it starts).

Steps, as in ``plugins.checkin.visits`` (which calls it; see ``_STORE_CALL``):

1. the rate-limit buckets (rows of ``rate_bucket``, in bucket order), counted
   in the order given, so the attempts past a limit are the later ones; the
   check-ins with an attempt past its limit are refused and store nothing
   (answered as kind 2: the attempt's number, from 0, and its count);
2. the people's advisory locks (class ``SUBJECT_LOCK_CLASS``, in ascending
   hash order, as the transactional path takes them: concurrent batches of
   either path never deadlock);
3. the same-visit lookup, the idempotency keys, the new visits (with the
   phone from the person's account when ``p_account`` names it) and their
   declarations: the statement ``_STORE_NEW`` was (kind 0: a same visit found;
   kind 1: a key stored).

SQLite has no stored functions: it keeps the path in Python.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T10:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "checkin_store_batch: a batch of check-ins (rate limits, locks, store) in one call"

FUNCTION = """
CREATE OR REPLACE FUNCTION checkin_store_batch(
    p_lock_class integer,
    p_id uuid[], p_venue_id uuid[], p_sub_location_id uuid[], p_province text[], p_site text[],
    p_subject_id text[], p_phone text[], p_id_number text[], p_full_name text[], p_arrived_at bigint[],
    p_left_at bigint[], p_method text[], p_recorded_by text[], p_key text[], p_n integer[], p_account uuid[],
    p_window bigint,
    p_d_n integer[], p_d_version text[], p_d_answers text[], p_d_risk_flags text[], p_d_risky boolean[],
    p_hit_n integer[], p_hit_bucket text[], p_hit_limit integer[], p_hit_expires bigint[]
) RETURNS TABLE (r_kind integer, r_n integer, r_id uuid, r_arrived_at bigint, r_key text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_refused integer[] := '{}';
    v_hit integer[] := '{}';
    v_count bigint[] := '{}';
BEGIN
    IF cardinality(p_hit_n) > 0 THEN
        WITH h AS (
            SELECT * FROM unnest(p_hit_n, p_hit_bucket, p_hit_limit, p_hit_expires)
                WITH ORDINALITY AS h(n, bucket, lim, expires, i)
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
        SELECT DISTINCT hashtext(x.s) AS h FROM unnest(p_subject_id, p_n) AS x(s, n)
        WHERE x.n <> ALL(v_refused) ORDER BY h
    ) AS people;

    RETURN QUERY
    WITH u AS MATERIALIZED (
        SELECT x.id, x.venue_id, x.sub_location_id, x.province, x.site, x.subject_id,
            CASE WHEN x.account IS NULL THEN x.phone
                ELSE (SELECT c.phone::text FROM citizen c WHERE c.id = x.account) END AS phone,
            x.id_number, x.full_name, x.arrived_at, x.left_at, x.method, x.recorded_by, x.key, x.n
        FROM unnest(p_id, p_venue_id, p_sub_location_id, p_province, p_site, p_subject_id, p_phone, p_id_number,
            p_full_name, p_arrived_at, p_left_at, p_method, p_recorded_by, p_key, p_n, p_account)
            AS x(id, venue_id, sub_location_id, province, site, subject_id, phone, id_number, full_name,
                arrived_at, left_at, method, recorded_by, key, n, account)
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
        INSERT INTO checkin_visit (id, venue_id, sub_location_id, province, site, subject_id, phone, id_number,
            full_name, arrived_at, left_at, method, recorded_by, checked_out)
        SELECT id, venue_id, sub_location_id, province, site, subject_id, phone, id_number, full_name,
            arrived_at, left_at, method, recorded_by, false FROM u
        WHERE u.n NOT IN (SELECT n FROM same) AND (u.key IS NULL OR u.key IN (SELECT key FROM stored_keys))
    ), declarations AS (
        INSERT INTO checkin_declaration (id, visit_id, subject_id, province, venue_id, questionnaire_version,
            answers, risk_flags, risky, declared_at, proxy_by)
        SELECT gen_random_uuid(), u.id, u.subject_id, u.province, u.venue_id, d.version, d.answers::json,
            d.risk_flags::json, d.risky, u.arrived_at, CASE WHEN u.method = 'proxy' THEN u.recorded_by END
        FROM unnest(p_d_n, p_d_version, p_d_answers, p_d_risk_flags, p_d_risky)
            AS d(n, version, answers, risk_flags, risky) JOIN u ON u.n = d.n
        WHERE u.n NOT IN (SELECT n FROM same) AND (u.key IS NULL OR u.key IN (SELECT key FROM stored_keys))
    )
    SELECT 0, same.n, same.id, same.arrived_at, NULL::text FROM same
    UNION ALL SELECT 1, NULL::integer, NULL::uuid, NULL::bigint, stored_keys.key::text FROM stored_keys;
END;
$$
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="checkin", description=DESCRIPTION)

    async def create_function():
        engine = engine_finder()
        if engine.engine_type == "postgres":
            await engine.run_ddl(FUNCTION)

    manager.add_raw(create_function)
    return manager
