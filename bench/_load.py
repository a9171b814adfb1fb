"""HTTP load generators: ``wrk`` when installed, else a closed-loop asyncio + httpx client.

Both run as a subprocess (so they can be pinned to a CPU with ``taskset``)
and print one ``LOAD_RESULT {json}`` line that ``run_load`` parses, so both
sides of a comparison are always driven by the same generator in the same
way. A request that fails or answers another status than expected counts
as an error; the benchmarks refuse figures with errors in them.

``wrk`` is a C program and costs the client CPU far less than httpx, which
matters on a 2-core machine: ``apt-get install -y wrk``. The httpx
generator tops out at a few hundred requests/s here (fewer with many
connections), so with it the client, not the server, sets the ceiling of
fast routes; its figures only compare sides measured with it.

Run the fallback by hand::

    python -m bench._load --url http://127.0.0.1:8000/healthz --seconds 3 --connections 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from bench._report import progress
from bench._serve import cpu_used

RESULT_MARKER = "LOAD_RESULT "
# Samples CPU seconds used so far, per component, per process: {"server": {pid: seconds}}.
CpuProbe = Callable[[], Awaitable[dict[str, dict[int, float]]]]
GENERATORS = ("auto", "wrk", "httpx")


@dataclass(frozen=True)
class Target:
    """One request, sent over and over: where, how, and which status counts as success."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    expect_status: int = 200
    # wrk only: Lua that defines ``request()`` (and ``init`` if it likes) to vary each request, e.g.
    # rotate through many credentials. ``headers`` and ``body`` are then the preflight's one request.
    script: str | None = None


class LoadResult(msgspec.Struct, frozen=True, kw_only=True):
    """One load run: completed requests, throughput, latency percentiles and errors."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    # Filled in by the harness, not the generator: CPU ms per request of "server", "database".
    cpu_ms: dict[str, float] = {}


class LoadError(RuntimeError):
    """The generator could not run, or its output could not be read."""


def resolve_generator(name: str) -> str:
    """``auto`` picks wrk when it is on PATH; asking for wrk without it is an error."""
    if name == "auto":
        return "wrk" if shutil.which("wrk") else "httpx"
    if name == "wrk" and not shutil.which("wrk"):
        raise LoadError("wrk is not installed: apt-get install -y wrk, or use --load-generator httpx")
    if name not in GENERATORS:
        raise LoadError(f"unknown load generator {name!r}; choose one of {', '.join(GENERATORS)}")
    return name


async def run_load(
    generator: str, target: Target, *, seconds: float, connections: int, cpus: str | None = None
) -> LoadResult:
    """Drive ``target`` for ``seconds`` with ``connections`` concurrent keep-alive connections."""
    pin = ["taskset", "-c", cpus] if cpus else []
    with tempfile.TemporaryDirectory(prefix="phongdich-load-") as tmp:
        if generator == "wrk":
            script = Path(tmp) / "request.lua"
            script.write_text(wrk_script(target))
            argv = [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                target.url,
            ]
        elif target.script is not None:
            raise LoadError("this target varies its requests with a wrk script: install wrk (apt-get install -y wrk)")
        else:
            argv = [sys.executable, "-m", "bench._load", "--url", target.url, "--method", target.method]
            argv += ["--seconds", str(seconds), "--connections", str(connections)]
            argv += ["--expect-status", str(target.expect_status)]
            for name, value in target.headers.items():
                argv += ["--header", f"{name}: {value}"]
            if target.body is not None:
                body_file = Path(tmp) / "body"
                body_file.write_bytes(target.body)
                argv += ["--body-file", str(body_file)]
        process = await asyncio.create_subprocess_exec(
            *pin, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
    text = out.decode(errors="replace")
    for line in text.splitlines():
        if line.startswith(RESULT_MARKER):
            return msgspec.json.decode(line[len(RESULT_MARKER) :], type=LoadResult)
    errors = err.decode(errors="replace")
    raise LoadError(f"{generator} exited with {process.returncode} and no result:\n{text[-2000:]}{errors[-2000:]}")


async def preflight(target: Target) -> str:
    """Send the request once and insist on the expected status, so no figure measures a failure."""
    import httpx

    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.request(target.method, target.url, headers=target.headers, content=target.body)
    if response.status_code != target.expect_status:
        raise LoadError(
            f"{target.method} {target.url} answered {response.status_code}, expected {target.expect_status}: "
            f"{response.text[:500]}"
        )
    return response.text


async def measure_rounds(
    generator: str,
    targets: dict[str, Target],
    *,
    rounds: int,
    seconds: float,
    warmup_seconds: float,
    connections: int,
    cpus: str | None,
    cpu_probes: Mapping[str, CpuProbe] | None = None,
) -> dict[str, list[LoadResult]]:
    """Warm each target up, then load them in turn for ``rounds`` rounds, alternating the order.

    Alternating (A B, B A, A B...) spreads slow drifts of a shared machine
    over both sides instead of charging them to whichever runs second.
    ``cpu_probes[label]`` samples the CPU used so far by each component
    serving that side (``{"server": {pid: seconds}, ...}``); the CPU spent
    per request is the figure that other tenants of the machine disturb least.
    """

    for label, target in targets.items():
        reply = await preflight(target)
        progress(f"{label}: {target.method} {target.url} -> {target.expect_status} {reply[:120]}")
    for label, target in targets.items():
        progress(f"{label}: warming up for {warmup_seconds:g}s")
        await run_load(generator, target, seconds=warmup_seconds, connections=connections, cpus=cpus)
    results: dict[str, list[LoadResult]] = {label: [] for label in targets}
    order = list(targets)
    for round_no in range(rounds):
        for label in order if round_no % 2 == 0 else order[::-1]:
            probe = (cpu_probes or {}).get(label)
            before = await probe() if probe else {}
            result = await run_load(generator, targets[label], seconds=seconds, connections=connections, cpus=cpus)
            if probe and result.requests:
                after = await probe()
                per_request = {
                    part: cpu_used(before.get(part, {}), used) * 1000 / result.requests for part, used in after.items()
                }
                result = msgspec.structs.replace(result, cpu_ms=per_request)
            if result.errors:
                raise LoadError(
                    f"{label}: {result.errors} of {result.requests} requests failed in round {round_no + 1}; "
                    "refusing to report figures that include failures"
                )
            results[label].append(result)
            progress(
                f"round {round_no + 1}/{rounds} {label}: {result.rps:,.0f} req/s, "
                f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms ({result.requests:,} requests)"
                + "".join(f", {part} CPU {ms:.3f} ms/req" for part, ms in result.cpu_ms.items())
            )
    return results


def wrk_script(target: Target) -> str:
    """A wrk Lua script that sets method, headers and body, and prints the result as JSON."""
    lines = [f"wrk.method = {_lua_string(target.method)}"]
    for name, value in target.headers.items():
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    if target.body is not None:
        lines.append(f"wrk.body = {_lua_string(target.body.decode())}")
    if target.script is not None:
        lines.append(target.script)
    # wrk counts any non-2xx/3xx status in errors.status; a request that got a
    # different 2xx than expected is caught by the harness's check beforehand.
    lines.append(_WRK_DONE.replace("MARKER", _lua_string(RESULT_MARKER)))
    return "\n".join(lines)


# Runs once when wrk finishes: the result as one JSON line, latencies in milliseconds.
_WRK_DONE = """
function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(MARKER .. string.format(
    '{"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"errors":%d}\\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50.0) / 1000, latency:percentile(99.0) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _lua_string(text: str) -> str:
    """A Lua long-bracket literal holding ``text`` verbatim (no escapes to get wrong)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    fence = "=" * level
    return f"[{fence}[{text}]{fence}]"


async def closed_loop(target: Target, *, seconds: float, connections: int) -> LoadResult:
    """``connections`` workers, each sending its next request as soon as the last one answered."""
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.request(
                        target.method, target.url, headers=target.headers, content=target.body
                    )
                    ok = response.status_code == target.expect_status
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        requests=len(latencies) + errors,
        seconds=round(elapsed, 3),
        rps=round((len(latencies) + errors) / elapsed, 1),
        p50_ms=_percentile(latencies, 50) * 1000,
        p99_ms=_percentile(latencies, 99) * 1000,
        errors=errors,
    )


def _percentile(sorted_values: list[float], percent: float) -> float:
    if not sorted_values:
        return math.nan
    index = max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)
    return sorted_values[index]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Closed-loop HTTP load (the fallback when wrk is missing).")
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--body-file", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--expect-status", type=int, default=200)
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    target = Target(
        url=args.url,
        method=args.method,
        headers={k.strip(): v.strip() for k, v in headers.items()},
        body=args.body_file.read_bytes() if args.body_file else None,
        expect_status=args.expect_status,
    )
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(closed_loop(target, seconds=args.seconds, connections=args.connections))
    print(RESULT_MARKER + json.dumps(msgspec.to_builtins(result)), flush=True)


if __name__ == "__main__":
    main()
