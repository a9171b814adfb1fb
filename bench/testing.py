"""Benchmarks of issue #4: bulk result upload and citizen result lookup, on PostgreSQL, over HTTP.

* upload: ``--rows`` samples (100,000 by default) received at a lab; one
  CSV with a result for each (1% positive) is POSTed to
  ``/api/testing/lab/uploads/csv`` of a served app (uvicorn, one worker).
  Rows per second = rows / wall time of that one request; the stored result
  rows are counted afterwards, so a figure never comes from a failed upload.
* lookup: ``--codes`` released results (10,000 by default), each with its
  own result code and date of birth; ``POST /api/testing/lookup`` is sent
  at a fixed ``--rate`` (1,000 req/s by default) by the open-loop generator
  (``bench._open_loop``: latency counted from when a request was due, so a
  server that falls behind shows it), rotating through every code. The
  baseline, in the same run and at the same rate with the same bodies, is a
  bare Litestar handler doing one asyncpg SELECT by the code's digest (a
  unique key). Rounds alternate the two sides; medians of p50/p99 and of
  the achieved rate are reported. The issue's target: p99 under 20 ms at
  1,000 req/s. Rate budgets live in Redis (``--redis``), as in a
  multi-worker deployment: every request comes from one client address here.
  ``--workers N`` serves both sides with N uvicorn workers (default one,
  pinned to the last CPU with the generator on the others; over one, nothing
  is pinned). Each side's server CPU per request (all its processes) and the
  generator's own CPU are reported too.

Run from the repository root with PostgreSQL (and Redis) reachable::

    python -m bench.testing                # both, about 2 minutes
    python -m bench.testing --rows 20000 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from litestar import Litestar, Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException

from bench import _report
from bench._database import DEFAULT_SERVER, BenchDatabase
from bench._open_loop import OpenLoopResult, run_open_loop
from bench._report import median, progress, spread, table
from bench._serve import ServedApp, cpu_split, cpu_used
from core import clock
from core.platform import Platform
from core.testing import staff_headers
from plugins.testing.identifiers import code_digest, new_code, new_label, normalize_code
from plugins.testing.reception import receive
from plugins.testing.results import ResultEntry, enter_results
from plugins.testing.samples import RESULT_CODE, register_sample
from plugins.testing.schemas import PersonIn, SampleIn

SITE, LAB, PROVINCE = "bench-site", "bench-lab", "01"
OPERATOR_ROLES = ["national_admin"]
BARE_PATH = "/bare/lookup"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.testing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="results in the uploaded CSV")
    parser.add_argument("--quick", action="store_true", help="one short lookup round")
    parser.add_argument("--rounds", type=int, help="lookup rounds per side (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per lookup round (default 8, quick 3)")
    parser.add_argument("--rate", type=float, default=1000.0, help="lookup requests per second, fixed")
    parser.add_argument("--codes", type=int, default=10_000, help="released results whose codes the lookups use")
    parser.add_argument("--connections", type=int, default=32, help="the generator's keep-alive connections")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server worker processes, the same for the lookup and its bare baseline (over 1: nothing pinned)",
    )
    parser.add_argument("--database", default=DEFAULT_SERVER, help="PostgreSQL server URL (a database is made)")
    parser.add_argument("--skip", choices=("upload", "lookup"), help="run only the other benchmark")
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/0", help="Redis URL for rate budgets; 'none' for the database"
    )
    asyncio.run(run(parser.parse_args(argv)))


async def run(args: argparse.Namespace) -> None:
    progress(f"bench.testing on {_report.machine()}")
    server_cpus, client_cpus = cpu_split(args.workers == 1)
    async with BenchDatabase(args.database) as db:
        progress(f"database {db.name} created and migrated")
        settings = db.settings()
        platform = Platform(settings)
        await platform.start()
        try:
            lab_headers = await _seed_people(platform)
        finally:
            await platform.stop()
        labels = [] if args.skip == "upload" else await _seed_samples(db.url, args.rows)
        codes = [] if args.skip == "lookup" else await _seed_released(db.url, settings.secret_key, args.codes)
        env = {
            **db.environment(),
            "PHONGDICH_PLUGIN__TESTING__LOOKUP_PER_CLIENT_PER_HOUR": "1000000",
            "PHONGDICH_PLUGIN__TESTING__MAX_UPLOAD_ROWS": str(max(args.rows, 1)),
        }
        if args.redis != "none":
            env["PHONGDICH_REDIS_URL"] = args.redis
        async with ServedApp(
            "uvicorn",
            "uvicorn",
            "core.app:app_factory",
            env=env,
            ready_path="/healthz",
            cpus=server_cpus,
            workers=args.workers,
        ) as app:
            progress(f"uvicorn serving on {app.base_url}")
            if args.skip != "upload":
                await _upload(app.base_url, lab_headers, labels, db.url)
            if args.skip != "lookup":
                async with ServedApp(
                    "bare",
                    "uvicorn",
                    "bench.testing:bare_app",
                    env=env,
                    ready_path="/healthz",
                    cpus=server_cpus,
                    workers=args.workers,
                ) as bare:
                    await _lookup(
                        args,
                        {"bare": (bare, BARE_PATH), "pipeline": (app, "/api/testing/lookup")},
                        codes,
                        client_cpus,
                    )
    progress(f"database {db.name} dropped")


async def _seed_people(platform: Platform) -> dict[str, str]:
    """A site, a lab, a lab technician, and one result released through the API (the code path is warm)."""
    from core import Principal
    from plugins.testing.tables import CollectionSite, Lab

    now = clock.now()
    await CollectionSite.insert(
        CollectionSite(code=SITE, name="Bench site", province=PROVINCE, pool_size_max=10, active=True, created_at=now)
    )
    await Lab.insert(Lab(code=LAB, name="Bench lab", province=PROVINCE, active=True, created_at=now))
    operator = Principal(id="bench:operator", kind="service", roles=frozenset(OPERATOR_ROLES))
    person = PersonIn(full_name="Nguyễn Văn An", date_of_birth=date(1990, 4, 12), phone="0912345678")
    receipt = await register_sample(platform, operator, SampleIn(site=SITE, person=person))
    await receive(platform, operator, [receipt.sample_id], LAB)
    await enter_results(platform, operator, [ResultEntry(row=1, label=receipt.sample_id, outcome="negative")], lab=LAB)
    headers = await staff_headers(platform, ["lab_technician"], province=PROVINCE, lab=LAB)
    return headers


async def _seed_samples(url: str, rows: int) -> list[str]:
    """``rows`` people and samples already received at the lab, written with COPY (seeding is not measured)."""
    started = time.perf_counter()
    now = clock.now()
    people = [uuid.uuid4() for _ in range(rows)]
    labels = [new_label("sample") for _ in range(rows)]
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table(
            "testing_person",
            columns=["id", "subject_id", "full_name", "date_of_birth", "phone", "created_at"],
            records=[
                (p, str(p), f"Người thử {i}", date(1980, 1, 1), "+84912345678", now) for i, p in enumerate(people)
            ],
        )
        await connection.copy_records_to_table(
            "testing_sample",
            columns=[
                "id",
                "person",
                "subject_id",
                "test_type",
                "site",
                "province",
                "collected_by",
                "collected_at",
                "lab",
                "lab_province",
                "received_at",
                "status",
                "result_version",
                "lookup_failures",
                "notified_version",
            ],
            records=[
                (label, p, str(p), "rt-pcr", SITE, PROVINCE, "bench", now, LAB, PROVINCE, now, "at_lab", 0, 0, 0)
                for label, p in zip(labels, people, strict=True)
            ],
        )
        # Tubes reach the lab hours before their results, so autovacuum has been over their rows by then.
        await connection.execute("VACUUM ANALYZE testing_sample")
    finally:
        await connection.close()
    progress(f"seeded {rows:,} samples at the lab in {time.perf_counter() - started:.1f}s")
    return labels


async def _upload(base_url: str, headers: dict[str, str], labels: list[str], url: str) -> None:
    body = "label,outcome,ct_value\n" + "".join(
        f"{label},positive,24.5\n" if index % 100 == 0 else f"{label},negative,\n" for index, label in enumerate(labels)
    )
    raw = body.encode()
    progress(f"uploading {len(labels):,} results ({len(raw) / 1e6:.1f} MB of CSV)")
    async with httpx.AsyncClient(timeout=600.0) as client:
        started = time.perf_counter()
        response = await client.post(
            base_url + "/api/testing/lab/uploads/csv", content=raw, headers={**headers, "Content-Type": "text/csv"}
        )
        elapsed = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:500]}")
    connection = await asyncpg.connect(url)
    try:
        stored = await connection.fetchval("SELECT count(*) FROM testing_result WHERE source = 'individual'")
        queued = await connection.fetchval(UPLOAD_NOTICES)
        reported = await connection.fetchval("SELECT count(*) FROM testing_case_report")
    finally:
        await connection.close()
    if stored < len(labels):
        raise RuntimeError(f"the upload answered 201 but only {stored} of {len(labels)} results are stored")
    # Every result is queued for its notice (one by one or in batches), and every positive reported.
    if queued < len(labels) or reported != (len(labels) + 99) // 100:
        raise RuntimeError(f"the upload queued {queued} notices and reported {reported} positives")
    rate = len(labels) / elapsed
    print(
        table(
            "Bulk result upload: one CSV through POST /api/testing/lab/uploads/csv, PostgreSQL",
            ["rows", "seconds", "rows/s", "target rows/s"],
            [[f"{len(labels):,}", f"{elapsed:.2f}", f"{rate:,.0f}", "20,000"]],
        )
    )


UPLOAD_NOTICES = (
    "SELECT (SELECT count(*) FROM testing_untold) + (SELECT coalesce(sum(length(samples) - "
    "length(replace(samples, ',', '')) + 1), 0) FROM testing_untold_batch)"
)


async def _seed_released(url: str, secret_key: str, count: int) -> list[tuple[str, str]]:
    """``count`` released negative results, each with its own result code and date of birth (COPY).

    Returns (code, date of birth) pairs; only the codes' keyed digests are stored, as in production.
    """
    started = time.perf_counter()
    now = clock.now()
    born = [date(1940, 1, 1) + timedelta(days=index * 7 % 25_000) for index in range(count)]
    people = [uuid.uuid4() for _ in range(count)]
    labels = [new_label("sample") for _ in range(count)]
    codes = [new_code() for _ in range(count)]
    digests = [code_digest(secret_key, RESULT_CODE, normalize_code(code) or "") for code in codes]
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table(
            "testing_person",
            columns=["id", "subject_id", "full_name", "date_of_birth", "phone", "created_at"],
            records=[(p, str(p), f"Người tra cứu {i}", born[i], "+84912345678", now) for i, p in enumerate(people)],
        )
        await connection.copy_records_to_table(
            "testing_sample",
            columns=[
                "id",
                "person",
                "subject_id",
                "test_type",
                "site",
                "province",
                "collected_by",
                "collected_at",
                "lab",
                "lab_province",
                "received_at",
                "status",
                "result",
                "result_version",
                "first_result_at",
                "result_at",
                "notified_version",
                "result_code_hash",
                "lookup_failures",
            ],
            records=[
                (
                    *(label, p, str(p), "rt-pcr", SITE, PROVINCE, "bench", now, LAB, PROVINCE, now, "resulted"),
                    *("negative", 1, now, now, 1, digest, 0),
                )
                for label, p, digest in zip(labels, people, digests, strict=True)
            ],
        )
        await connection.copy_records_to_table(
            "testing_result",
            columns=["id", "sample", "version", "outcome", "source", "lab", "entered_by", "released_at", "current"],
            records=[(uuid.uuid4(), label, 1, "negative", "individual", LAB, "bench", now, True) for label in labels],
        )
        await connection.execute("ANALYZE testing_sample; ANALYZE testing_person; ANALYZE testing_result")
    finally:
        await connection.close()
    progress(f"seeded {count:,} released results with their own codes in {time.perf_counter() - started:.1f}s")
    return [(code, born[index].isoformat()) for index, code in enumerate(codes)]


# -- the lookup baseline: one Litestar handler, one asyncpg SELECT by a unique key ---------------


class BareLookupIn(msgspec.Struct):
    code: str
    date_of_birth: str


BARE_SELECT = "SELECT id, result, result_at FROM testing_sample WHERE result_code_hash = $1"


@post(BARE_PATH, status_code=200)
async def bare_lookup(data: BareLookupIn, request: Request[Any, Any, Any]) -> dict[str, Any]:
    digest = code_digest(request.app.state.secret_key, RESULT_CODE, normalize_code(data.code) or "")
    row = await request.app.state.pool.fetchrow(BARE_SELECT, digest)
    if row is None:
        raise NotFoundException("no such code")
    return {"sample_id": row["id"], "result": row["result"], "result_at": row["result_at"]}


@get("/healthz")
async def bare_ready() -> dict[str, bool]:
    return {"ok": True}


def bare_app() -> Litestar:
    """The lookup's floor: no middleware, guard, rate budget, lock, audit or timeline."""

    @contextlib.asynccontextmanager
    async def pool(app: Litestar) -> Any:
        app.state.pool = await asyncpg.create_pool(os.environ["PHONGDICH_DATABASE_URL"], min_size=10, max_size=10)
        app.state.secret_key = os.environ["PHONGDICH_SECRET_KEY"]
        try:
            yield
        finally:
            await app.state.pool.close()

    return Litestar(route_handlers=[bare_lookup, bare_ready], lifespan=[pool], openapi_config=None, state=State())


async def _lookup(
    args: argparse.Namespace,
    servers: dict[str, tuple[ServedApp, str]],
    codes: list[tuple[str, str]],
    client_cpus: str | None,
) -> None:
    urls = {label: app.base_url + path for label, (app, path) in servers.items()}
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    with tempfile.TemporaryDirectory(prefix="phongdich-lookup-") as tmp:
        bodies = Path(tmp) / "bodies.jsonl"
        bodies.write_text("".join(json.dumps({"code": c, "date_of_birth": d}) + "\n" for c, d in codes))
        async with httpx.AsyncClient(timeout=30.0) as client:
            for label, url in urls.items():
                code, born = codes[0]
                reply = await client.post(url, json={"code": code, "date_of_birth": born})
                if reply.status_code != 200:
                    raise RuntimeError(f"{label}: {url} answered {reply.status_code}: {reply.text[:300]}")
                progress(f"{label}: POST {url} -> 200 {reply.text[:100]}")
        for label, url in urls.items():
            progress(f"{label}: warming up for 2s at {args.rate:,.0f} req/s")
            await _run(url, bodies, args, 2.0, client_cpus)
        results: dict[str, list[OpenLoopResult]] = {label: [] for label in urls}
        # CPU per request, in microseconds: the server's (every worker) and the generator's.
        server_cpu: dict[str, list[float]] = {label: [] for label in urls}
        order = list(urls)
        for round_no in range(rounds):
            for label in order if round_no % 2 == 0 else order[::-1]:
                served = servers[label][0]
                before = served.cpu_seconds()
                result = await _run(urls[label], bodies, args, seconds, client_cpus)
                server_cpu[label].append(cpu_used(before, served.cpu_seconds()) / max(result.requests, 1) * 1e6)
                if result.errors:
                    raise RuntimeError(
                        f"{label}: {result.errors} of {result.requests} lookups failed in round {round_no + 1} "
                        f"({result.first_error}); refusing to report figures that include failures"
                    )
                results[label].append(result)
                progress(
                    f"round {round_no + 1}/{rounds} {label}: {result.achieved_rps:,.0f} req/s achieved, "
                    f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, max {result.max_ms:.1f} ms, "
                    f"server CPU {server_cpu[label][-1]:.0f} us/req, "
                    f"generator CPU {result.client_cpu_s / result.seconds:.0%} of a core"
                )
    base_p99 = median([r.p99_ms for r in results["bare"]])
    rows = []
    for label, runs in results.items():
        p99 = median([r.p99_ms for r in runs])
        rows.append(
            [
                label,
                f"{args.rate:,.0f}",
                f"{median([r.achieved_rps for r in runs]):,.0f}",
                f"{median([r.p50_ms for r in runs]):.2f}",
                f"{p99:.2f}",
                spread([r.p99_ms for r in runs]),
                f"{median([r.max_ms for r in runs]):.1f}",
                f"{p99 / base_p99:.2f}x" if base_p99 else "n/a",
                f"{median(server_cpu[label]):.0f}",
                f"{median([r.client_cpu_s / r.seconds for r in runs]):.0%}",
            ]
        )
    store = "Redis" if args.redis != "none" else "the database"
    print(
        table(
            f"Result lookup: POST {{code, date_of_birth}} over {len(codes):,} codes, open loop at a fixed rate, "
            f"{args.connections} connections, {rounds} x {seconds:g}s rounds (medians); rate budget in {store}; "
            f"{args.workers} server worker(s) per side{', pinned' if client_cpus else ', not pinned'}; "
            "target p99 < 20 ms at 1,000 req/s",
            [
                *("side", "asked req/s", "achieved req/s", "p50 ms", "p99 ms", "p99 range", "max ms", "p99 vs bare"),
                *("server CPU us/req", "generator CPU"),
            ],
            rows,
        )
    )


async def _run(url: str, bodies: Path, args: argparse.Namespace, seconds: float, cpus: str | None) -> OpenLoopResult:
    return await run_open_loop(url, bodies, rate=args.rate, seconds=seconds, connections=args.connections, cpus=cpus)


if __name__ == "__main__":
    main()
