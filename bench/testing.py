"""Benchmarks of issue #4: bulk result upload and citizen result lookup, on PostgreSQL, over HTTP.

* upload: ``--rows`` samples (100,000 by default) received at a lab; one
  CSV with a result for each (1% positive) is POSTed to
  ``/api/testing/lab/uploads/csv`` of a served app (uvicorn, one worker).
  Rows per second = rows / wall time of that one request; the stored result
  rows are counted afterwards, so a figure never comes from a failed upload.
* lookup: ``POST /api/testing/lookup`` with a valid result code and date of
  birth, driven by the closed-loop generator (wrk when installed), for
  ``--rounds`` rounds; reports req/s and p50/p99 latency. The issue's target
  is p99 under 20 ms at 1,000 req/s: when the server sustains more than
  1,000 req/s with a p99 under 20 ms, it meets the target with room to spare.

Run from the repository root with PostgreSQL reachable::

    python -m bench.testing                # both, about 2 minutes
    python -m bench.testing --rows 20000 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import date

import asyncpg
import httpx

from bench import _report
from bench._database import DEFAULT_SERVER, BenchDatabase
from bench._load import GENERATORS, Target, measure_rounds, resolve_generator
from bench._report import median, progress, table
from bench._serve import ServedApp, cpu_split
from core import clock
from core.platform import Platform
from core.testing import staff_headers
from plugins.testing.identifiers import new_label
from plugins.testing.reception import receive
from plugins.testing.results import ResultEntry, enter_results
from plugins.testing.samples import register_sample
from plugins.testing.schemas import PersonIn, SampleIn

SITE, LAB, PROVINCE = "bench-site", "bench-lab", "01"
OPERATOR_ROLES = ["national_admin"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.testing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="results in the uploaded CSV")
    parser.add_argument("--quick", action="store_true", help="one short lookup round")
    parser.add_argument("--rounds", type=int, help="lookup rounds (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds per lookup round (default 8, quick 3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--load-generator", choices=GENERATORS, default="auto")
    parser.add_argument("--database", default=DEFAULT_SERVER, help="PostgreSQL server URL (a database is made)")
    parser.add_argument("--skip", choices=("upload", "lookup"), help="run only the other benchmark")
    parser.add_argument("--redis", help="Redis URL for rate limits (e.g. redis://127.0.0.1:6379/0); else the database")
    asyncio.run(run(parser.parse_args(argv)))


async def run(args: argparse.Namespace) -> None:
    progress(f"bench.testing on {_report.machine()}")
    server_cpus, client_cpus = cpu_split(True)
    async with BenchDatabase(args.database) as db:
        progress(f"database {db.name} created and migrated")
        settings = db.settings()
        platform = Platform(settings)
        await platform.start()
        try:
            lab_headers, code = await _seed_people(platform)
        finally:
            await platform.stop()
        labels = [] if args.skip == "upload" else await _seed_samples(db.url, args.rows)
        env = {
            **db.environment(),
            "PHONGDICH_PLUGIN__TESTING__LOOKUP_PER_CLIENT_PER_HOUR": "1000000",
            "PHONGDICH_PLUGIN__TESTING__MAX_UPLOAD_ROWS": str(max(args.rows, 1)),
        }
        if args.redis:
            env["PHONGDICH_REDIS_URL"] = args.redis
        async with ServedApp(
            "uvicorn", "uvicorn", "core.app:app_factory", env=env, ready_path="/healthz", cpus=server_cpus
        ) as app:
            progress(f"uvicorn serving on {app.base_url}")
            if args.skip != "upload":
                await _upload(app.base_url, lab_headers, labels, db.url)
            if args.skip != "lookup":
                await _lookup(args, app.base_url, code, client_cpus)
    progress(f"database {db.name} dropped")


async def _seed_people(platform: Platform) -> tuple[dict[str, str], str]:
    """A site, a lab, a lab technician, and one released sample whose code the lookups use."""
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
    return headers, receipt.result_code


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
        await connection.execute("ANALYZE testing_sample")
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
    finally:
        await connection.close()
    if stored < len(labels):
        raise RuntimeError(f"the upload answered 201 but only {stored} of {len(labels)} results are stored")
    rate = len(labels) / elapsed
    print(
        table(
            "Bulk result upload: one CSV through POST /api/testing/lab/uploads/csv, PostgreSQL",
            ["rows", "seconds", "rows/s", "target rows/s"],
            [[f"{len(labels):,}", f"{elapsed:.2f}", f"{rate:,.0f}", "20,000"]],
        )
    )


async def _lookup(args: argparse.Namespace, base_url: str, code: str, client_cpus: str | None) -> None:
    generator = resolve_generator(args.load_generator)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    target = Target(
        url=base_url + "/api/testing/lookup",
        method="POST",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"code": code, "date_of_birth": "1990-04-12"}).encode(),
        expect_status=200,
    )
    results = await measure_rounds(
        generator,
        {"lookup": target},
        rounds=rounds,
        seconds=seconds,
        warmup_seconds=min(2.0, seconds),
        connections=args.connections,
        cpus=client_cpus,
    )
    runs = results["lookup"]
    print(
        table(
            f"Result lookup: POST /api/testing/lookup, {generator}, {args.connections} connections (medians)",
            ["req/s", "p50 ms", "p99 ms", "target"],
            [
                [
                    f"{median([r.rps for r in runs]):,.0f}",
                    f"{median([r.p50_ms for r in runs]):.1f}",
                    f"{median([r.p99_ms for r in runs]):.1f}",
                    "p99 < 20 ms at 1,000 req/s",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
