"""An open-loop HTTP load generator: requests leave at a fixed rate, whatever the server does.

A closed-loop generator (wrk, ``bench._load``) sends the next request only
when the last one answered, so a slow server is asked less and its queueing
delay never shows up ("coordinated omission"). Here request ``i`` is due at
``start + i / rate``; it is handed to the first free keep-alive connection
(``--connections`` of them), and its latency is measured from when it was
*due*, as wrk2 does. A server that cannot keep up shows it as a growing p99
and an achieved rate below the asked one.

HTTP/1.1 is spoken directly on asyncio streams (uvloop when installed): a
few microseconds of client CPU per request, so one core drives thousands of
requests per second, which httpx cannot. Bodies rotate through a file of
JSON lines, one per request, so a benchmark can spread requests over many
keys. It runs as a subprocess and prints one ``LOAD_RESULT {json}`` line::

    python -m bench._open_loop --url http://127.0.0.1:8000/api/testing/lookup \\
        --bodies bodies.jsonl --rate 1000 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

RESULT_MARKER = "LOAD_RESULT "
TICK = 0.001


class OpenLoopResult(msgspec.Struct, frozen=True, kw_only=True):
    """One run at a fixed rate: what was asked, what was done, and how long it took from when it was due."""

    rate: float
    requests: int
    seconds: float
    achieved_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    # The first unexpected answer, to say why a run failed.
    first_error: str = ""
    # CPU seconds the generator itself used (user + system), so a report can show it is not the bottleneck.
    client_cpu_s: float = 0.0


def build_requests(url: str, bodies: Sequence[bytes], *, method: str = "POST") -> list[bytes]:
    """The raw HTTP/1.1 request for each body (keep-alive, JSON)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc
    return [
        (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


async def open_loop(
    url: str,
    requests: Sequence[bytes],
    *,
    rate: float,
    seconds: float,
    connections: int,
    expect_status: int = 200,
) -> OpenLoopResult:
    """Send ``rate`` requests per second for ``seconds``, rotating through ``requests``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    cpu_started = time.process_time()
    streams = [await asyncio.open_connection(host, port) for _ in range(connections)]
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0
    first_error = ""
    finished = 0.0
    expected = f" {expect_status} ".encode()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors, first_error, finished
        while (item := await queue.get()) is not None:
            due, request = item
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            finished = time.perf_counter()
            if expected in head.split(b"\r\n", 1)[0]:
                latencies.append(finished - due)
            else:
                errors += 1
                first_error = first_error or (head.split(b"\r\n", 1)[0] + b" " + body[:300]).decode(errors="replace")
        writer.close()

    workers = [asyncio.create_task(connection(reader, writer)) for reader, writer in streams]
    total = max(1, round(rate * seconds))
    start = time.perf_counter() + 0.01
    sent = 0
    while sent < total:
        due_now = min(total, math.floor((time.perf_counter() - start) * rate) + 1)
        while sent < due_now:
            queue.put_nowait((start + sent / rate, requests[sent % len(requests)]))
            sent += 1
        # At least a millisecond, the event loop's timer resolution: a shorter sleep returns at once, and
        # the generator would spin on its core. What is due meanwhile goes out together on waking, its
        # lateness counted against the server (latency runs from when a request was due).
        await asyncio.sleep(max(TICK, start + sent / rate - time.perf_counter()))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    latencies.sort()
    elapsed = max(finished - start, 1e-9)
    done = len(latencies) + errors
    return OpenLoopResult(
        rate=rate,
        requests=done,
        seconds=round(elapsed, 3),
        achieved_rps=round(done / elapsed, 1),
        p50_ms=_percentile(latencies, 50) * 1000,
        p90_ms=_percentile(latencies, 90) * 1000,
        p99_ms=_percentile(latencies, 99) * 1000,
        max_ms=(latencies[-1] if latencies else math.nan) * 1000,
        errors=errors,
        first_error=first_error,
        client_cpu_s=round(time.process_time() - cpu_started, 3),
    )


async def run_open_loop(
    url: str,
    bodies_file: Path,
    *,
    rate: float,
    seconds: float,
    connections: int,
    cpus: str | None = None,
    expect_status: int = 200,
) -> OpenLoopResult:
    """Run the generator in a subprocess (pinned to ``cpus``) and read its result line."""
    pin = ["taskset", "-c", cpus] if cpus else []
    argv = [sys.executable, "-m", "bench._open_loop", "--url", url, "--bodies", str(bodies_file)]
    argv += ["--rate", str(rate), "--seconds", str(seconds), "--connections", str(connections)]
    argv += ["--expect-status", str(expect_status)]
    process = await asyncio.create_subprocess_exec(
        *pin, *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    for line in out.decode(errors="replace").splitlines():
        if line.startswith(RESULT_MARKER):
            return msgspec.json.decode(line[len(RESULT_MARKER) :], type=OpenLoopResult)
    raise RuntimeError(f"open-loop generator exited with {process.returncode}: {err.decode(errors='replace')[-2000:]}")


def _percentile(sorted_values: Sequence[float], percent: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Open-loop HTTP load at a fixed rate (latency from when due).")
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="JSON lines; request i sends line i mod n")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--expect-status", type=int, default=200)
    args = parser.parse_args(argv)
    bodies = [line.encode() for line in args.bodies.read_text().splitlines() if line.strip()]
    requests = build_requests(args.url, bodies)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(
        open_loop(
            args.url,
            requests,
            rate=args.rate,
            seconds=args.seconds,
            connections=args.connections,
            expect_status=args.expect_status,
        )
    )
    print(RESULT_MARKER + json.dumps(msgspec.to_builtins(result)), flush=True)


if __name__ == "__main__":
    main()
