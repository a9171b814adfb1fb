"""Benchmark: granian against uvicorn on a write path of the platform (issue #2).

Issue #2 asks to measure the ASGI servers on the check-in path and pick the
faster. The same app (the platform with the bench plugins) runs under

* uvicorn, one worker, uvloop + httptools (``uvicorn[standard]``);
* granian, one worker, ASGI interface, uvloop (the ``dev`` extra);

and the same load generator drives an authenticated POST against each in
alternating rounds. The default path, ``POST /api/bench/01/visits``, is the
closest thing to a check-in that exists before the checkin plugin: it
validates a msgspec body, inserts a row and writes an audit record in one
transaction. ``--path``, ``--body``, ``--auth`` and ``--expect-status`` point
it at any other route, e.g. the real check-in once it lands::

    python -m bench.servers                        # full run, about a minute
    python -m bench.servers --quick                # smoke run, about 15 seconds
    python -m bench.servers --bare                 # the servers' own cost, on the bare handler
    python -m bench.servers --path /api/checkin/... --body '{...}' --auth citizen
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence

from bench import _report
from bench._database import DEFAULT_SERVER, BenchDatabase
from bench._load import GENERATORS, CpuProbe, LoadResult, Target, measure_rounds, resolve_generator
from bench._report import median, progress, table
from bench._serve import SERVERS, ServedApp, cpu_split
from bench.plugin import BENCH_ROLE

DEFAULT_PATH = "/api/bench/01/visits"
BARE_PATH = "/api/bench/01/read"
DEFAULT_BODY = json.dumps({"venue": "HN-HK-0001", "phone": "0912345678", "healthy": True, "symptoms": []})
# Within this, the faster server is not reliably faster on a shared machine.
TIE_MARGIN = 0.05


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run: fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, help="rounds per server (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds of load per round (default 8, quick 2)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--load-generator", choices=GENERATORS, default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate CPUs")
    parser.add_argument("--database", default=DEFAULT_SERVER, help="PostgreSQL server URL (a database is made)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated; the first is the baseline")
    parser.add_argument("--path", default=DEFAULT_PATH, help="the route to load")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--body", default=DEFAULT_BODY, help="JSON body sent with every request ('' for none)")
    parser.add_argument("--expect-status", type=int, default=201)
    parser.add_argument("--auth", choices=("staff", "citizen", "device", "none"), default="staff")
    parser.add_argument("--roles", default=BENCH_ROLE, help="comma-separated roles of the staff account or key")
    parser.add_argument("--province", default="01", help="province of the staff account or key")
    parser.add_argument("--site", help="site of the staff account or key")
    parser.add_argument("--plugins", default="", help="PHONGDICH_PLUGINS for the served app")
    parser.add_argument(
        "--bare",
        action="store_true",
        help=f"serve the bare handler instead (GET {BARE_PATH}, no auth, no database): the servers' own cost",
    )
    args = parser.parse_args(argv)
    if args.bare:
        args.path, args.method, args.body, args.expect_status, args.auth = BARE_PATH, "GET", "", 200, "none"
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown or len(servers) < 2:
        parser.error(f"--servers: name two or more of {', '.join(SERVERS)} (got {args.servers!r})")
    if args.body:
        try:
            json.loads(args.body)
        except ValueError as exc:
            parser.error(f"--body: not JSON: {exc}")
    asyncio.run(run(args, servers))


async def run(args: argparse.Namespace, servers: list[str]) -> None:
    generator = resolve_generator(args.load_generator)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    server_cpus, client_cpus = cpu_split(not args.no_pin)
    progress(f"bench.servers on {_report.machine()}")
    plugins = [p.strip() for p in args.plugins.split(",") if p.strip()]
    async with BenchDatabase(args.database, plugins=plugins) as db:
        progress(f"database {db.name} created and migrated")
        roles = [r.strip() for r in args.roles.split(",") if r.strip()]
        headers = await db.credentials(args.auth, roles=roles, province=args.province, site=args.site)
        if args.body:
            headers["Content-Type"] = "application/json"
        progress(
            f"{', '.join(servers)} on CPU {server_cpus or 'any'}, {generator} on CPU {client_cpus or 'any'}, "
            f"{args.connections} connections, {rounds} round(s) of {seconds:g}s per server"
        )
        async with contextlib.AsyncExitStack() as stack:
            apps: dict[str, ServedApp] = {}
            for server in servers:  # one start-up at a time: both would migrate-check and bind at once
                apps[server] = await stack.enter_async_context(
                    ServedApp(
                        server,
                        server,
                        "bench.asgi:bare_app" if args.bare else "bench.asgi:pipeline_app",
                        env=db.environment(),
                        ready_path=BARE_PATH if args.bare else "/healthz",
                        cpus=server_cpus,
                    )
                )
                progress(f"{server} serving on {apps[server].base_url}")
            results = await measure_rounds(
                generator,
                {
                    server: Target(
                        url=app.base_url + args.path,
                        method=args.method,
                        headers=headers,
                        body=args.body.encode() if args.body else None,
                        expect_status=args.expect_status,
                    )
                    for server, app in apps.items()
                },
                rounds=rounds,
                seconds=seconds,
                warmup_seconds=min(2.0, seconds),
                connections=args.connections,
                cpus=client_cpus,
                cpu_probes={server: _probe(app, None if args.bare else db) for server, app in apps.items()},
            )
        if args.path == DEFAULT_PATH and not args.bare:
            rows = await db.count("bench_visit")
            sent = sum(r.requests for runs in results.values() for r in runs)
            if rows < sent:
                raise RuntimeError(f"the servers answered {sent} requests but stored only {rows} rows")
            progress(f"bench_visit holds {rows:,} rows (timed rounds answered {sent:,} requests)")
    progress(f"database {db.name} dropped")
    headers_row, summary = _report.http_summary(results, baseline=servers[0])
    app = "bare handler" if args.bare else "platform"
    print(table(f"ASGI servers: {args.method} {args.path}, {app}, over HTTP (medians)", headers_row, summary))
    print(
        f"\nOne worker each, uvloop; uvicorn with httptools. Load: {generator}, {args.connections} connections; "
        f"rounds: {rounds} x {seconds:g}s."
    )
    print(recommendation(results))


def recommendation(results: Mapping[str, Sequence[LoadResult]]) -> str:
    """One line: the faster server by median req/s, and whether the margin beats the noise."""
    by_rps = sorted(results, key=lambda s: median([r.rps for r in results[s]]), reverse=True)
    best, runner_up = by_rps[0], by_rps[1]
    best_rps = median([r.rps for r in results[best]])
    other_rps = median([r.rps for r in results[runner_up]])
    best_p99 = median([r.p99_ms for r in results[best]])
    other_p99 = median([r.p99_ms for r in results[runner_up]])
    margin = best_rps / other_rps - 1
    overlap = min(r.rps for r in results[best]) <= max(r.rps for r in results[runner_up])
    if len(results[best]) < 3:
        verdict = "too few rounds to call (use 3 or more)"
    elif margin > TIE_MARGIN and not overlap:
        verdict = "clear: every round of the faster beat every round of the slower"
    else:
        verdict = "within noise: rerun, or keep the default"
    return (
        f"Recommendation: {best} ({best_rps:,.0f} req/s, p99 {best_p99:.1f} ms) over {runner_up} "
        f"({other_rps:,.0f} req/s, p99 {other_p99:.1f} ms): {margin:+.0%} req/s, {verdict}."
    )


def _probe(app: ServedApp, db: BenchDatabase | None) -> CpuProbe:
    async def sample() -> dict[str, dict[int, float]]:
        used = {"server": app.cpu_seconds()}
        if db is not None:
            used["database"] = await db.backend_cpu_seconds()
        return used

    return sample


if __name__ == "__main__":
    main()
