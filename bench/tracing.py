"""Benchmark: contact tracing on 10 million check-ins (issue #3).

Issue #3 asks for the F1 list of one case in under 50 ms at p95, and F1 +
F2 in under 500 ms at p95, on PostgreSQL with 10 million check-ins (1
million people, 50,000 venues, 21 days). The data comes from
``bench/gen_checkins.py`` (generated into a new database, or reused with
``--reuse NAME``). Then, for ``--cases`` random F0s:

* **F1**: the plugin's own first step, as ``trace_case`` runs it:
  ``find_contacts`` for the F0 over the infectious window (the F0's visits
  by person and arrival, then the overlapping visits by venue, arrival and
  departure, summed per person in SQL: minutes, overlaps, risk weighted by
  venue type and province hooks, the strongest overlap, the minimum
  overlap applied), and building one entry per person;
* **F1 + F2**: the same, then the same again from every F1 at once over
  the time since each was exposed, as ``trace_case`` does;
* **open case (API)**: ``tracing.open_case``, what ``POST /api/checkin/cases/``
  runs: store the case, trace F1, F2 and the zones to close, store the
  contacts and zones, read the case back (audited).

F0s are drawn from the check-ins of their infectious window (a uniform pick
of visits, so people who go out more are likelier cases, as in an
epidemic). Symptom onset is four days before the data ends, so the window
(two days before onset until isolation at the end of the data) spans six
days; "now" is pinned to the end of the data, so a reused database gives
the same cases and windows on any later day. A few cases are traced first
to warm up and are not counted. Cases, contacts and zones written by the
run are deleted at the end (audit records stay: the audit log is
append-only).

    python -m bench.tracing                        # generate 10M (a few minutes), trace, drop the database
    python -m bench.tracing --keep                 # ... and keep it for later runs
    python -m bench.tracing --reuse phongdich_tracing
    python -m bench.tracing --scale 0.1            # 1M check-ins, 100,000 people, 5,000 venues
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from bench import _report, gen_checkins
from bench._database import DEFAULT_SERVER
from bench._report import progress, table
from core import clock
from core.observability import configure_logging
from core.platform import Platform
from core.principal import EPIDEMIOLOGIST, Principal
from core.settings import load_settings
from plugins.checkin import tracing
from plugins.checkin.schemas import CaseBody
from plugins.checkin.tracing import Source, _VenueWeights, find_contacts
from plugins.checkin.visits import settings_of

ONSET_DAYS_BEFORE_END = 4
TARGETS_MS = {"F1": 50.0, "F1 + F2": 500.0}
ACTOR_ID = "staff:bench-tracing"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reuse", metavar="NAME", help="trace on this database (made by gen_checkins) as it is")
    parser.add_argument("--keep", action="store_true", help="keep the generated database for --reuse")
    parser.add_argument("--drop", action="store_true", help="with --reuse: drop the database at the end")
    parser.add_argument("--scale", type=float, default=1.0, help="when generating: fraction of the full size")
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--cases", type=int, default=50, help="F0s to trace (timed)")
    parser.add_argument("--warmup", type=int, default=5, help="F0s traced first, not timed")
    parser.add_argument("--seed", type=int, default=7, help="which F0s are drawn")
    parser.add_argument("--explain", action="store_true", help="print the F1 and F2 queries' plans for the first case")
    parser.add_argument("--compute-only", action="store_true", help="time F1 and F1 + F2 only, not open_case")
    parser.add_argument("--database", default=DEFAULT_SERVER, help="PostgreSQL server URL")
    args = parser.parse_args(argv)
    if args.reuse and args.keep:
        parser.error("--keep is for a generated database; a reused one is kept unless --drop")
    asyncio.run(run(args))


async def run(args: argparse.Namespace) -> None:
    server = args.database.rstrip("/")
    progress(f"bench.tracing on {_report.machine()}")
    if args.reuse:
        name = args.reuse
        keep = not args.drop
    else:
        name = f"phongdich_bench_tracing_{os.getpid()}"
        keep = args.keep
        plan = gen_checkins.Plan(end=gen_checkins.default_end()).scaled(args.scale)
        progress(f"generating {plan.checkins:,} check-ins into {name} (gen_checkins, {args.workers} workers)")
        summary = await gen_checkins.generate(server, name, plan, workers=args.workers, replace=False)
        gen_checkins.print_summary(summary)
    try:
        await measure(f"{server}/{name}", name, args)
    finally:
        if keep:
            progress(f"kept database {name}: python -m bench.tracing --reuse {name}")
        else:
            await gen_checkins.drop_database(server, name)
            progress(f"database {name} dropped")


async def measure(url: str, name: str, args: argparse.Namespace) -> None:
    plan = await _plan_of(url, name)
    # "Now" is the end of the data: the windows, and the F2 search up to now, stay where the data is.
    end = datetime.fromtimestamp(plan.end, tz=UTC)
    real_now = clock.now
    clock.now = lambda: end  # type: ignore[assignment]
    env = {
        "PHONGDICH_DATABASE_URL": url,
        "PHONGDICH_SECRET_KEY": secrets.token_urlsafe(48),
        "PHONGDICH_RUN_BACKGROUND_TASKS": "false",
        "PHONGDICH_LOG_LEVEL": "warning",
    }
    settings = load_settings(env=env)
    configure_logging(settings)  # warnings only: a log line per traced case would be noise here
    platform = Platform(settings)
    await platform.start()
    try:
        onset = (end - timedelta(days=ONSET_DAYS_BEFORE_END) + timedelta(hours=7)).date()  # a local date
        config = settings_of(platform)
        window_start = int(datetime(onset.year, onset.month, onset.day, tzinfo=UTC).timestamp()) - 7 * 3600
        window_start -= config.infectious_days_before * 86400
        window = (window_start, plan.end)
        f0s = await _draw_f0s(url, window, args.warmup + args.cases, args.seed)
        progress(
            f"{len(f0s)} F0s drawn from the check-ins of {_local(window[0])}..{_local(window[1])} "
            f"(symptom onset {onset}, isolated at the end of the data)"
        )
        if args.explain:
            await _explain(url, platform, f0s[0][0], window)
        rows: dict[str, list[float]] = {"F1": [], "F1 + F2": [], "open case (API)": []}
        sizes: dict[str, list[int]] = {
            "F0 visits in window": [],
            "F1 people": [],
            "F2 people": [],
            "F1 + F2 overlaps": [],
        }
        for n, (subject, province) in enumerate(f0s):
            timed = n >= args.warmup
            f1_ms, both_ms, found = await _compute(platform, subject, window)
            api = ""
            if not args.compute_only:
                api_ms, zones = await _open_case(platform, subject, province, onset, end, found)
                api = f", open case {api_ms:.0f} ms ({zones} zones)"
                if timed:
                    rows["open case (API)"].append(api_ms)
            label = "case" if timed else "warm-up case"
            progress(
                f"{label} {n + 1 - args.warmup if timed else n + 1}: {found['F0 visits in window']} F0 visits, "
                f"F1 {found['F1 people']:,} in {f1_ms:.1f} ms, "
                f"F1+F2 {found['F1 people'] + found['F2 people']:,} in {both_ms:.1f} ms{api}"
            )
            if timed:
                rows["F1"].append(f1_ms)
                rows["F1 + F2"].append(both_ms)
                for key, value in found.items():
                    sizes[key].append(value)
    finally:
        await _clean_up(url)
        await platform.stop()
        clock.now = real_now  # type: ignore[assignment]
    report(rows, sizes, plan, name, args)


async def _open_case(
    platform: Platform, subject: str, province: str, onset: Any, end: datetime, found: dict[str, int]
) -> tuple[float, int]:
    """What ``POST /api/checkin/cases/`` runs, timed; checks it traced what the computation found."""
    principal = Principal(id=ACTOR_ID, kind="staff", roles=frozenset({EPIDEMIOLOGIST}), province=province)
    body = CaseBody(province=province, subject_id=subject, symptom_onset=onset, isolated_at=end, note="bench")
    started = time.perf_counter()
    case = await tracing.open_case(platform, principal, body)
    api_ms = (time.perf_counter() - started) * 1000
    if (case.f1_count, case.f2_count) != (found["F1 people"], found["F2 people"]):
        raise RuntimeError(
            f"open_case found {case.f1_count} F1 and {case.f2_count} F2, the timed computation "
            f"{found['F1 people']} and {found['F2 people']}: they no longer trace the same way"
        )
    return api_ms, len(case.zones)


async def _compute(platform: Platform, subject: str, window: tuple[int, int]) -> tuple[float, float, dict[str, int]]:
    """F1, then F2, the way ``trace_case`` finds them; returns (F1 ms, F1+F2 ms, sizes)."""
    config = settings_of(platform)
    now = int(clock.now().timestamp())
    started = time.perf_counter()
    venues = _VenueWeights(platform, config)
    f1 = await find_contacts(platform, [Source(subject, *window)], config, venues, degree=1)
    f1_ms = (time.perf_counter() - started) * 1000
    f2: dict[str, Any] = {}
    if config.trace_f2 and f1:
        sources = [Source(person, t.first_exposed, max(now, window[1])) for person, t in f1.items()]
        f2 = await find_contacts(platform, sources, config, venues, degree=2, known=[subject])
    both_ms = (time.perf_counter() - started) * 1000
    visits = await platform.db.execute(
        "SELECT count(*) AS n FROM checkin_visit WHERE subject_id = {} AND arrived_at >= {} AND arrived_at < {}",
        subject,
        window[0] - config.max_stay_minutes * 60,
        window[1],
    )
    return (
        f1_ms,
        both_ms,
        {
            "F0 visits in window": int(visits[0]["n"]),
            "F1 people": len(f1),
            "F2 people": len(f2),
            "F1 + F2 overlaps": sum(t.exposures for t in f1.values()) + sum(t.exposures for t in f2.values()),
        },
    )


async def _draw_f0s(url: str, window: tuple[int, int], count: int, seed: int) -> list[tuple[str, str]]:
    """Random people who checked in during the window, with the province of one of those check-ins."""
    connection = await asyncpg.connect(url)
    try:
        total = await connection.fetchval(
            "SELECT count(*) FROM checkin_visit WHERE arrived_at >= $1 AND arrived_at < $2", *window
        )
        # Sample about 20 times as many visits as needed, then pick from them with the seed.
        percent = min(100.0, 100.0 * count * 20 / max(total, 1))
        rows = await connection.fetch(
            f"SELECT subject_id, province FROM checkin_visit TABLESAMPLE BERNOULLI ({percent}) REPEATABLE ({seed}) "
            "WHERE arrived_at >= $1 AND arrived_at < $2",
            *window,
        )
    finally:
        await connection.close()
    people = dict(sorted((row["subject_id"], row["province"]) for row in rows))
    if len(people) < count:
        raise RuntimeError(f"only {len(people)} people checked in during the window; ask for fewer --cases")
    return random.Random(seed).sample(sorted(people.items()), count)


async def _explain(url: str, platform: Platform, subject: str, window: tuple[int, int]) -> None:
    """The plans of the first case's F1 query and of its F2 query (from all its F1s at once)."""
    config = settings_of(platform)
    captured: list[tuple[str, list[Any]]] = []
    real_rows = tracing._contact_rows

    async def capture(platform: Platform, sql: str, args: list[Any]) -> list[Any]:
        captured.append((sql, args))
        return await real_rows(platform, sql, args)

    tracing._contact_rows = capture
    try:
        venues = _VenueWeights(platform, config)
        f1 = await find_contacts(platform, [Source(subject, *window)], config, venues, degree=1)
        sources = [Source(person, t.first_exposed, window[1]) for person, t in f1.items()]
        await find_contacts(platform, sources, config, venues, degree=2, known=[subject])
    finally:
        tracing._contact_rows = real_rows
    connection = await asyncpg.connect(url)
    try:
        for name, setting in tracing.POSTGRES_SETTINGS.items():
            await connection.execute(f"SET {name} = '{setting}'")
        for label, (sql, args) in zip(("F1", f"F2 (from {len(f1)} F1s)"), captured, strict=False):
            for n in range(1, sql.count("{}") + 1):  # Piccolo's placeholders to asyncpg's
                sql = sql.replace("{}", f"${n}", 1)
            plan = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
            print(f"\n{label} query plan (EXPLAIN ANALYZE, first case):\n" + "\n".join(row[0] for row in plan))
    finally:
        await connection.close()


async def _clean_up(url: str) -> None:
    """Remove the cases this run opened, so a reused database stays as generated."""
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            cases = "SELECT id FROM checkin_case WHERE opened_by = $1"
            await connection.execute(f"DELETE FROM checkin_contact WHERE case_id IN ({cases})", ACTOR_ID)
            await connection.execute(f"DELETE FROM checkin_zone WHERE case_id IN ({cases})", ACTOR_ID)
            await connection.execute("DELETE FROM checkin_case WHERE opened_by = $1", ACTOR_ID)
    finally:
        await connection.close()


async def _plan_of(url: str, name: str) -> gen_checkins.Plan:
    connection = await asyncpg.connect(url)
    try:
        try:
            raw = await connection.fetchval(f"SELECT plan FROM {gen_checkins.META_TABLE} LIMIT 1")
        except asyncpg.UndefinedTableError:
            raw = None
        rows = await connection.fetchval("SELECT count(*) FROM checkin_visit")
    finally:
        await connection.close()
    if raw is None:
        raise SystemExit(f"{name} was not made by bench.gen_checkins (no {gen_checkins.META_TABLE})")
    plan = msgspec.json.decode(raw, type=gen_checkins.Plan)
    progress(
        f"{name}: {rows:,} check-ins of {plan.people:,} people at {plan.venues:,} venues over {plan.days} days "
        f"up to {_local(plan.end)}"
    )
    return plan


def _local(seconds: int) -> str:
    return (datetime.fromtimestamp(seconds, tz=UTC) + timedelta(hours=7)).strftime("%Y-%m-%d %H:%M")


def _percentile(values: Sequence[float], percent: float) -> float:
    ordered = sorted(values)
    index = max(0, -(-len(ordered) * percent // 100) - 1)
    return ordered[int(index)]


def report(
    rows: dict[str, list[float]],
    sizes: dict[str, list[int]],
    plan: gen_checkins.Plan,
    name: str,
    args: argparse.Namespace,
) -> None:
    timing_rows = []
    for label, values in rows.items():
        if not values:
            continue
        p95 = _percentile(values, 95)
        target = TARGETS_MS.get(label)
        verdict = "-" if target is None else f"< {target:g} ms: {'met' if p95 < target else 'NOT met'}"
        timing_rows.append(
            [label, _percentile(values, 50), p95, max(values), round(sum(values) / len(values), 1), verdict]
        )
    print(
        table(
            f"Tracing on {name}: {plan.checkins:,} check-ins, {plan.people:,} people, {plan.venues:,} venues, "
            f"{plan.days} days; {args.cases} cases (ms)",
            ["step", "p50", "p95", "max", "mean", "target (p95)"],
            timing_rows,
        )
    )
    size_rows = [
        [label, _percentile(values, 50), _percentile(values, 95), max(values), round(sum(values) / len(values), 1)]
        for label, values in sizes.items()
    ]
    print(table("Per case (counts)", ["", "p50", "p95", "max", "mean"], size_rows))
    print(
        f"\nOne case at a time, in process (no HTTP), {args.warmup} warm-up cases first; F0s drawn with seed "
        f"{args.seed}. F1 and F1 + F2 are the computation (queries and ranking); open case adds storing the case, "
        "its contacts and zones, and reading it back."
    )


if __name__ == "__main__":
    main()
