"""Benchmark: what province-scoped hook calls and the guarded request pipeline cost (issue #2).

Part 1, hook calls (in process, no I/O). The platform is built with the
bench plugins: an extension plugin and three ``authorize`` province plugins
for each of four provinces. One ``authorize`` call for province 01 is timed

* through bare pluggy, ``pm.hook.authorize(...)`` on a plugin manager that
  holds exactly the implementations the scoped call runs (the baseline);
* as plain calls of the same implementation functions (the floor: what the
  rules themselves cost, with no dispatch at all);
* through pluggy on the platform's manager, every province's plugins
  included (what scoping leaves out);
* through ``hooks.caller("authorize", "01")(...)``, the cached subset caller;
* through ``await hooks.vote("authorize", province="01", ...)``, one
  hookimpl at a time with fault containment (what the guard uses);
* through ``await platform.access.decide(...)``: the vote plus the tally.

Part 2, the request pipeline over HTTP on loopback. The same JSON answer
from ``GET /api/bench/01/read``, served by uvicorn (one worker) as

* ``bare``: one Litestar handler, no middleware, guard or database;
* ``pipeline``: the platform's app: request context and log line, identity
  by bearer token (a database lookup), the guard, the ``authorize`` vote for
  province 01, an audit record (hash-chained, locked insert), JSON;
* ``guard only``: the same app and credential on ``GET /api/bench/01/check``,
  which writes no audit record, so the table splits the pipeline's cost
  into the guard's share and the audit write's.

Both are driven by the same load generator in alternating rounds; the
figures are medians over the rounds, and ratios are against ``bare``.

    python -m bench.hooks            # full run, about 100 seconds
    python -m bench.hooks --quick    # smoke run, about 25 seconds
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pluggy

from bench import _report
from bench._database import DEFAULT_SERVER, BenchDatabase
from bench._load import GENERATORS, CpuProbe, Target, measure_rounds, resolve_generator
from bench._report import median, progress, ratio, spread, table
from bench._serve import ServedApp, cpu_split
from bench.plugin import BENCH_ROLE, PROVINCES, READ_ACTION, bench_plugins
from core import hookspecs
from core.access import Resource
from core.markers import PROJECT
from core.platform import Platform
from core.principal import Principal

PROVINCE = "01"
READ_PATH = f"/api/bench/{PROVINCE}/read"
CHECK_PATH = f"/api/bench/{PROVINCE}/check"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hooks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run: fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, help="HTTP rounds per side (default 3, quick 1)")
    parser.add_argument("--seconds", type=float, help="seconds of load per HTTP round (default 8, quick 2)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--load-generator", choices=GENERATORS, default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate CPUs")
    parser.add_argument("--database", default=DEFAULT_SERVER, help="PostgreSQL server URL (a database is made)")
    parser.add_argument("--skip-http", action="store_true", help="only the in-process hook calls")
    args = parser.parse_args(argv)
    asyncio.run(run(args))


async def run(args: argparse.Namespace) -> None:
    quick = args.quick
    progress(f"bench.hooks on {_report.machine()}")
    async with BenchDatabase(args.database) as db:
        progress(f"database {db.name} created and migrated")
        hook_rows = await measure_hook_calls(db, rounds=3 if quick else 9, sample_seconds=0.05 if quick else 0.2)
        http = None
        if not args.skip_http:
            http = await measure_pipeline(
                db,
                generator=resolve_generator(args.load_generator),
                rounds=args.rounds or (1 if quick else 3),
                seconds=args.seconds or (2.0 if quick else 8.0),
                connections=args.connections,
                pin=not args.no_pin,
            )
    progress(f"database {db.name} dropped")
    print(
        table(
            f"Hook call: one `authorize` for province {PROVINCE} (ns/call, median of rounds)",
            ["path", "impls run", "ns/call", "range", "vs bare pluggy"],
            hook_rows,
        )
    )
    if http is not None:
        headers, rows, note = http
        print(table(f"Request pipeline: GET {READ_PATH} over HTTP (medians of rounds)", headers, rows))
        print(f"\n{note}")


# -- part 1: hook calls --------------------------------------------------------


async def measure_hook_calls(db: BenchDatabase, *, rounds: int, sample_seconds: float) -> list[list[object]]:
    platform = Platform(db.settings(), extra_plugins=bench_plugins())
    hooks = platform.hooks
    principal = Principal(id="staff:bench", kind="staff", roles=frozenset({BENCH_ROLE}), province=PROVINCE)
    kwargs: dict[str, Any] = {
        "principal": principal,
        "action": READ_ACTION,
        "resource": Resource(kind="route", province=PROVINCE),
    }
    scoped = hooks.caller("authorize", PROVINCE)
    bare = pluggy.PluginManager(PROJECT)
    bare.add_hookspecs(hookspecs)
    for impl in scoped.get_hookimpls():
        bare.register(impl.plugin, name=impl.plugin_name)
    n_scoped = len(scoped.get_hookimpls())
    n_all = len(hooks.pm.hook.authorize.get_hookimpls())
    progress(
        f"hook calls: {len(hooks.province_plugins())} province plugins for {len(PROVINCES)} provinces; "
        f"authorize for {PROVINCE} runs {n_scoped} of {n_all} implementations"
    )
    await _same_answers(bare, platform, kwargs)

    def sync(call: Callable[..., Any]) -> Callable[[int], Awaitable[float]]:
        async def timed(n: int) -> float:
            started = time.perf_counter_ns()
            for _ in range(n):
                call(**kwargs)
            return (time.perf_counter_ns() - started) / n

        return timed

    def awaited(call: Callable[..., Awaitable[Any]]) -> Callable[[int], Awaitable[float]]:
        async def timed(n: int) -> float:
            started = time.perf_counter_ns()
            for _ in range(n):
                await call(**kwargs)
            return (time.perf_counter_ns() - started) / n

        return timed

    impl_functions = [impl.function for impl in reversed(scoped.get_hookimpls())]
    if any(tuple(impl.argnames) != ("principal", "action", "resource") for impl in scoped.get_hookimpls()):
        raise RuntimeError("an authorize impl takes other arguments; the direct-call floor would be wrong")

    def direct_calls(**kw: Any) -> list[Any]:
        args = [kw["principal"], kw["action"], kw["resource"]]
        return [vote for function in impl_functions if (vote := function(*args)) is not None]

    def caller_call(**kw: Any) -> Any:
        return hooks.caller("authorize", PROVINCE)(**kw)

    def vote_call(**kw: Any) -> Awaitable[Any]:
        return hooks.vote("authorize", province=PROVINCE, **kw)

    variants: list[tuple[str, int, Callable[[int], Awaitable[float]]]] = [
        ("bare pluggy `pm.hook.authorize(...)`, same impls", n_scoped, sync(bare.hook.authorize)),
        ("the same impls called directly (no dispatch: the floor)", n_scoped, sync(direct_calls)),
        ("pluggy on the platform's manager, every province", n_all, sync(hooks.pm.hook.authorize)),
        (f'`hooks.caller("authorize", "{PROVINCE}")(...)`', n_scoped, sync(caller_call)),
        (f'`await hooks.vote("authorize", province="{PROVINCE}", ...)`', n_scoped, awaited(vote_call)),
        ("`await platform.access.decide(...)` (vote + tally)", n_scoped, awaited(platform.access.decide)),
    ]
    sizes = {label: await _calibrate(timed, sample_seconds) for label, _, timed in variants}
    samples: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    for round_no in range(rounds):
        gc.collect()
        gc.disable()  # a collection landing in one variant's sample is noise, not its cost
        try:
            for label, _, timed in variants:
                samples[label].append(await timed(sizes[label]))
        finally:
            gc.enable()
        progress(
            f"hook calls round {round_no + 1}/{rounds}: "
            + ", ".join(f"{s[-1]:,.0f}" for s in samples.values())
            + " ns/call"
        )
    baseline = median(samples[variants[0][0]])
    return [
        [label, impls, median(samples[label]), spread(samples[label]), ratio(median(samples[label]), baseline)]
        for label, impls, _ in variants
    ]


async def _same_answers(bare: pluggy.PluginManager, platform: Platform, kwargs: dict[str, Any]) -> None:
    """Every timed path must reach the same votes; otherwise the comparison would be meaningless."""
    expected = sorted(vote.reason for vote in bare.hook.authorize(**kwargs))
    through_vote = sorted(vote.reason for vote in await platform.hooks.vote("authorize", province=PROVINCE, **kwargs))
    through_caller = sorted(vote.reason for vote in platform.hooks.caller("authorize", PROVINCE)(**kwargs))
    decision = await platform.access.decide(**kwargs)
    if not (expected == through_vote == through_caller and decision.allowed and expected):
        raise RuntimeError(f"paths disagree: bare {expected}, vote {through_vote}, caller {through_caller}")


async def _calibrate(timed: Callable[[int], Awaitable[float]], sample_seconds: float) -> int:
    """How many calls make one sample of about ``sample_seconds``."""
    per_call_ns = await timed(2000)
    return max(2000, int(sample_seconds * 1e9 / per_call_ns))


# -- part 2: the request pipeline over HTTP -------------------------------------


async def measure_pipeline(
    db: BenchDatabase, *, generator: str, rounds: int, seconds: float, connections: int, pin: bool
) -> tuple[list[str], list[list[object]], str]:
    server_cpus, client_cpus = cpu_split(pin)
    headers = await db.credentials("staff", roles=[BENCH_ROLE], province=PROVINCE)
    audit_before = await db.count("audit_log")
    env = db.environment()
    progress(
        f"pipeline: uvicorn on CPU {server_cpus or 'any'}, {generator} on CPU {client_cpus or 'any'}, "
        f"{connections} connections, {rounds} round(s) of {seconds:g}s per side"
    )
    async with (
        ServedApp("bare", "uvicorn", "bench.asgi:bare_app", env=env, ready_path=READ_PATH, cpus=server_cpus) as bare,
        ServedApp(
            "pipeline", "uvicorn", "bench.asgi:pipeline_app", env=env, ready_path="/healthz", cpus=server_cpus
        ) as pipeline,
    ):
        results = await measure_rounds(
            generator,
            {
                "bare": Target(url=bare.base_url + READ_PATH),
                "guard only": Target(url=pipeline.base_url + CHECK_PATH, headers=headers),
                "pipeline": Target(url=pipeline.base_url + READ_PATH, headers=headers),
            },
            rounds=rounds,
            seconds=seconds,
            warmup_seconds=min(2.0, seconds),
            connections=connections,
            cpus=client_cpus,
            cpu_probes={
                "bare": _probe(bare),
                "guard only": _probe(pipeline, db),
                "pipeline": _probe(pipeline, db),
            },
        )
    audited = await db.count("audit_log") - audit_before
    served = sum(r.requests for r in results["pipeline"])
    if audited < served:
        raise RuntimeError(f"pipeline answered {served} requests but wrote only {audited} audit records")
    headers_row, rows = _report.http_summary(results, baseline="bare")
    note = (
        f"pipeline wrote {audited:,} audit records (timed rounds sent {served:,} requests; "
        f"the rest are the warm-up and the check). Server: uvicorn, 1 worker, uvloop + httptools; "
        f"load: {generator}, {connections} connections; rounds: {rounds} x {seconds:g}s."
    )
    return headers_row, rows, note


def _probe(app: ServedApp, db: BenchDatabase | None = None) -> CpuProbe:
    async def sample() -> dict[str, dict[int, float]]:
        used = {"server": app.cpu_seconds()}
        if db is not None:
            used["database"] = await db.backend_cpu_seconds()
        return used

    return sample


if __name__ == "__main__":
    main()
