"""Serving an ASGI app under uvicorn or granian in a subprocess, for as long as a benchmark needs it.

Each server runs one worker (or ``workers``) on loopback, optionally pinned to a CPU with
``taskset`` (children inherit the pin), with its output in a log file that
is shown when it fails to start. The process gets its own session so that
granian's worker goes down with its master.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx

SERVERS = ("uvicorn", "granian")
START_TIMEOUT_SECONDS = 60.0


def server_argv(server: str, factory: str, port: int, workers: int = 1) -> list[str]:
    """``workers`` worker processes (one by default), uvloop, no access log: the same footing for both servers."""
    common = ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--loop", "uvloop"]
    if server == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            *common,
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    if server == "granian":
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--factory",
            *common,
            "--no-access-log",
            "--log-level",
            "warning",
            factory,
        ]
    raise ValueError(f"unknown server {server!r}; choose one of {', '.join(SERVERS)}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServedApp:
    """``async with ServedApp(...) as app``: a started server answering on ``app.base_url``."""

    def __init__(
        self,
        label: str,
        server: str,
        factory: str,
        *,
        env: dict[str, str],
        ready_path: str,
        cpus: str | None = None,
        workers: int = 1,
    ) -> None:
        self.label = label
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        pin = ["taskset", "-c", cpus] if cpus else []
        self.argv = [*pin, *server_argv(server, factory, self.port, workers)]
        # A stray PHONGDICH_* variable of the caller (say PHONGDICH_TEST_DATABASE) would stop start-up.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PHONGDICH_")}
        self.env.update(env)
        root = str(Path(__file__).resolve().parent.parent)
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, self.env.get("PYTHONPATH")]))
        self._log = tempfile.NamedTemporaryFile(prefix=f"phongdich-bench-{label}-", suffix=".log", delete=False)
        self._process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> ServedApp:
        self._process = subprocess.Popen(
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            await self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the session this class started
                process.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def cpu_seconds(self) -> dict[int, float]:
        """CPU used so far by the server and its workers (granian serves from a child process)."""
        assert self._process is not None
        return process_cpu(process_tree(self._process.pid))

    def log_tail(self, size: int = 4000) -> str:
        self._log.flush()
        return Path(self._log.name).read_bytes()[-size:].decode(errors="replace")

    async def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_SECONDS
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(
                        f"{self.label} exited with {self._process.returncode} while starting:\n{self.log_tail()}"
                    )
                try:
                    response = await client.get(self.base_url + self.ready_path)
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(f"{self.label} not ready after {START_TIMEOUT_SECONDS:.0f}s:\n{self.log_tail()}")
                await asyncio.sleep(0.2)


def process_tree(root: int) -> list[int]:
    """``root`` and every live process below it."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = _stat_fields(stat.read_text())
        except OSError:
            continue  # exited while we looked
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def process_cpu(pids: Iterable[int]) -> dict[int, float]:
    """User + system CPU seconds that each live process of ``pids`` has used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for pid in pids:
        try:
            fields = _stat_fields(Path(f"/proc/{pid}/stat").read_text())
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two samples; a process that appeared in between counts from zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _stat_fields(stat: str) -> list[str]:
    # The command name may hold spaces and parentheses; the fields after its closing one do not.
    return stat[stat.rindex(")") + 2 :].split()


def cpu_split(pin: bool) -> tuple[str | None, str | None]:
    """(server CPUs, client CPUs): the last CPU for the server, the others for the load generator.

    Without pinning, server and client migrate across the same cores and the
    scheduler, not the code, decides much of the spread between rounds.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return None, None
    return str(cpus[-1]), ",".join(str(c) for c in cpus[:-1])


@contextlib.contextmanager
def database_pinned(cpus: str | None) -> Iterator[str]:
    """Inside: every local PostgreSQL process (and so each backend it forks) runs on ``cpus`` only.

    On a small machine the benchmark pins the servers and the load generator
    but leaves PostgreSQL free to run on the server's CPU too, where a side
    that makes the database work harder is slowed by it. Pinned beside the
    load generator, the server's CPU is its own, as with a database on its own
    machine. Each process's affinity is set back on the way out (also when the
    run fails). Yields what was done, for the report; nothing when ``cpus`` is
    None, PostgreSQL is not on this machine, or its processes may not be moved
    (another user's, without root).
    """
    if cpus is None:
        yield "PostgreSQL not pinned"
        return
    kept: dict[int, set[int]] = {}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() != "postgres":
                continue
            pid = int(comm.parent.name)
            kept[pid] = os.sched_getaffinity(pid)
        except (OSError, ValueError):
            continue
    wanted = {int(cpu) for cpu in cpus.split(",")}
    moved: list[int] = []
    try:
        for pid in kept:
            try:
                os.sched_setaffinity(pid, wanted)
                moved.append(pid)
            except OSError:
                continue  # exited meanwhile, or not ours to move
        yield (
            f"PostgreSQL ({len(moved)} processes) pinned to CPU {cpus}"
            if moved
            else "PostgreSQL not pinned (no local process could be moved)"
        )
    finally:
        for pid in moved:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, kept[pid])
        # Backends forked meanwhile inherited the pin: they get what the others had.
        before = set().union(*kept.values()) if kept else set()
        for comm in Path("/proc").glob("[0-9]*/comm"):
            with contextlib.suppress(OSError, ValueError):
                pid = int(comm.parent.name)
                if before and pid not in kept and comm.read_text().strip() == "postgres":
                    os.sched_setaffinity(pid, before)
