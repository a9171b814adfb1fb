"""Check-in ingest in process: the ASGI apps called directly, no server, no load generator.

A profiling aid for ``bench.checkin_ingest``: the same two apps (the
platform's ``POST /api/checkin/visits`` and the bare one-INSERT handler),
the same seeded people and venues, driven by ``--concurrency`` asyncio tasks
in this process under uvloop, so the process's CPU time per request is the
apps' own (no HTTP parsing by a server). ``--profile`` writes a cProfile of
the pipeline side (``--profile-out``), ``--without-store`` answers check-ins
without the batch write (to split the request path from the storage).

    python -m bench.checkin_inprocess --requests 3000
    python -m bench.checkin_inprocess --profile --profile-out /tmp/checkin.prof

Under valgrind, ``--callgrind`` counts instructions in the timed rounds only
(instruction counts repeat from run to run where timings on a shared machine
do not; compare two versions of the code by their instructions per request)::

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \\
        python -m bench.checkin_inprocess --callgrind --only pipeline --requests 1000 --citizens 1000 --rounds 1
    callgrind_annotate /tmp/cg.out | head
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import subprocess
import time
from typing import Any

import uvloop
from litestar import Litestar

from bench._database import DEFAULT_SERVER, BenchDatabase
from bench._report import progress
from bench.checkin_ingest import (
    BARE_PATHS,
    FULL_NAME,
    ROUTES,
    Seeded,
    bare_app,
    pipeline_app,
    seed,
)
from plugins.checkin.declarations import NATIONAL_VERSION


def _body(seeded: Seeded, k: int, route: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    people = len(seeded.citizen_tokens) - 1
    c = k % people
    v = (c + k // people) % len(seeded.venue_codes)
    symptoms = ["cough"] if k % 20 == 0 else ["none"]
    declaration = {
        "questionnaire_version": NATIONAL_VERSION,
        "answers": {"symptoms": symptoms, "contact_case": False, "travel": False},
    }
    if route == "visit":
        headers = [(b"authorization", seeded.citizen_tokens[c].encode())]
        body: dict[str, Any] = {"code": seeded.venue_codes[v], "full_name": FULL_NAME, "declaration": declaration}
    else:
        headers = [(b"x-api-key", seeded.device_keys[v].encode())]
        body = {
            "personal_code": seeded.personal_codes[c],
            "venue_id": seeded.venue_ids[v],
            "full_name": FULL_NAME,
            "declaration": declaration,
        }
    payload = json.dumps(body, ensure_ascii=False).encode()
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    return headers, payload


async def _call(app: Litestar, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)  # type: ignore[arg-type]
    if status != 201:
        raise RuntimeError(f"{path}: {status} {b''.join(chunks)[:300]!r}")
    return status


async def drive(
    app: Litestar,
    path: str,
    seeded: Seeded,
    route: str,
    *,
    start: int,
    requests: int,
    concurrency: int,
    callgrind: bool = False,
) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for ``requests`` check-ins from ``concurrency`` tasks.

    ``callgrind``: callgrind counts instructions while the requests run (not while their bodies are made).
    """
    bodies = [_body(seeded, start + k, route) for k in range(requests)]
    queue = iter(bodies)

    async def worker() -> None:
        for headers, body in queue:
            await _call(app, path, headers, body)

    if callgrind:
        _callgrind_collect(True)
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if callgrind:
        _callgrind_collect(False)
    return wall, cpu


async def run(args: argparse.Namespace) -> None:
    async with BenchDatabase(args.database) as db:
        seeded = await seed(db, citizens=args.citizens, venues=args.venues, route=args.route)
        os.environ.update(db.environment())
        os.environ["PHONGDICH_DATABASE_POOL_SIZE"] = str(args.pool_size)
        os.environ["PHONGDICH_LOG_FORMAT"] = "json"
        apps = {"pipeline": (pipeline_app(), ROUTES[args.route]), "bare": (bare_app(), BARE_PATHS[args.route])}
        if args.only:
            apps = {args.only: apps[args.only]}
        counter = 0
        for side, (app, path) in apps.items():
            async with app.lifespan():
                if args.without_store and side == "pipeline":
                    _skip_store(app)
                await drive(app, path, seeded, args.route, start=counter, requests=200, concurrency=args.concurrency)
                counter += 200
                results = []
                for _round in range(args.rounds):
                    profiler = cProfile.Profile() if args.profile and side == "pipeline" else None
                    if profiler:
                        profiler.enable()
                    wall, cpu = await drive(
                        app,
                        path,
                        seeded,
                        args.route,
                        start=counter,
                        requests=args.requests,
                        concurrency=args.concurrency,
                        callgrind=args.callgrind,
                    )
                    if profiler:
                        profiler.disable()
                        profiler.dump_stats(args.profile_out)
                    counter += args.requests
                    results.append((wall, cpu))
                    progress(
                        f"{side}: {args.requests / wall:,.0f} req/s, {cpu * 1000 / args.requests:.3f} ms CPU/request"
                    )
                cpus = sorted(cpu for _wall, cpu in results)
                print(f"{side}: median {cpus[len(cpus) // 2] * 1000 / args.requests:.3f} ms CPU/request")


def _callgrind_collect(on: bool) -> None:
    """Switch callgrind's counting on or off for this process (``valgrind --instr-atstart=no``)."""
    done = subprocess.run(
        ["callgrind_control", "--instr=on" if on else "--instr=off", str(os.getpid())],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"callgrind_control failed ({done.stderr.strip()}); run this under valgrind --tool=callgrind")


def _skip_store(app: Litestar) -> None:
    """Answer check-ins without their batch write (timing the request path alone)."""
    import uuid

    group_commit = app.state.platform.group_commit

    async def submit_to(writer: Any, item: Any, *, order: int = 0, own_transaction: bool = False) -> Any:
        return (uuid.uuid4(), item.arrived, False)

    group_commit.submit_to = submit_to


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkin_inprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="check-ins per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--citizens", type=int, default=2000)
    parser.add_argument("--venues", type=int, default=200)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--route", choices=tuple(ROUTES), default="visit")
    parser.add_argument("--only", choices=("pipeline", "bare"))
    parser.add_argument("--without-store", action="store_true", help="pipeline: skip the batch write")
    parser.add_argument("--profile", action="store_true", help="cProfile the pipeline's last round")
    parser.add_argument("--profile-out", default="/tmp/checkin_inprocess.prof")
    parser.add_argument(
        "--callgrind", action="store_true", help="under valgrind --tool=callgrind: count the timed rounds only"
    )
    parser.add_argument("--database", default=DEFAULT_SERVER)
    args = parser.parse_args(argv)
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
