"""Progress lines while a benchmark runs, and the summary tables it ends with."""

from __future__ import annotations

import os
import platform as host
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench._load import LoadResult

_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One line on stderr, stamped with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """The range of the rounds, so a reader sees how noisy the median is."""
    fmt = ",.0f" if max(values) >= 100 else ".3g"
    return f"{min(values):{fmt}}..{max(values):{fmt}}"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (so it pastes into bench/README.md as it is)."""
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [f"\n{title}\n", line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells[1:]]
    return "\n".join(out)


def machine() -> str:
    """What the figures were measured on; the load of other processes matters on a shared box."""
    try:
        with open("/proc/loadavg") as handle:
            load = " ".join(handle.read().split()[:3])
    except OSError:
        load = "unknown"
    return f"{host.python_implementation()} {host.python_version()}, {_cpus()} CPUs, load average {load}"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_median(runs: Sequence[LoadResult], part: str) -> object:
    values = [r.cpu_ms[part] for r in runs if part in r.cpu_ms]
    return round(median(values), 3) if values else "-"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def http_summary(results: Mapping[str, Sequence[LoadResult]], baseline: str) -> tuple[list[str], list[list[object]]]:
    """Medians over the rounds of each side, and ratios against ``baseline`` measured in the same run."""
    base = results[baseline]
    base_rps = median([r.rps for r in base])
    base_p50 = median([r.p50_ms for r in base])
    base_p99 = median([r.p99_ms for r in base])
    headers = [
        "side",
        "req/s (median)",
        "req/s range",
        "p50 ms",
        "p99 ms",
        "µs/request",
        f"req/s vs {baseline}",
        f"p50 vs {baseline}",
        f"p99 vs {baseline}",
    ]
    parts = list(dict.fromkeys(part for runs in results.values() for r in runs for part in r.cpu_ms))
    headers += [f"{part} CPU ms/req" for part in parts]
    rows: list[list[object]] = []
    for label, runs in results.items():
        rps = median([r.rps for r in runs])
        p50 = median([r.p50_ms for r in runs])
        p99 = median([r.p99_ms for r in runs])
        rows.append(
            [
                label,
                rps,
                spread([r.rps for r in runs]),
                p50,
                p99,
                1e6 / rps,
                ratio(rps, base_rps),
                ratio(p50, base_p50),
                ratio(p99, base_p99),
                *[cpu_median(runs, part) for part in parts],
            ]
        )
    return headers, rows
