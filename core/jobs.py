"""Scheduled jobs: every worker schedules them, a database lease lets one worker run each."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import msgspec
import structlog

from core import clock
from core.tables import JobLease

if TYPE_CHECKING:
    from core.platform import Platform

log = structlog.get_logger("core.jobs")

HOLDER = f"{socket.gethostname()}:{os.getpid()}"


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A job: a unique dotted name, how often it runs, and what it does.

    ``run`` receives the platform and returns a one-line summary (logged and
    stored as the job's last status).
    """

    name: str
    interval_seconds: int
    run: Callable[[Platform], Awaitable[str | None]]


class Scheduler:
    def __init__(self, platform: Platform, jobs: list[Job]) -> None:
        self._platform = platform
        self.jobs = {job.name: job for job in jobs}

    async def run_due(self) -> list[str]:
        """Run each job whose lease is free and due; returns the names of those run."""
        ran = []
        for job in self.jobs.values():
            if await self._acquire(job):
                await self.run_now(job.name)
                ran.append(job.name)
        return ran

    async def run_now(self, name: str) -> str:
        job = self.jobs[name]
        try:
            summary = await job.run(self._platform) or "ok"
        except Exception as exc:
            log.exception("job.failed", job=name)
            summary = f"failed: {type(exc).__name__}: {exc}"
        await JobLease.update({JobLease.last_run_at: clock.now(), JobLease.last_status: summary[:2000]}).where(
            JobLease.name == name
        )
        log.info("job.ran", job=name, summary=summary)
        return summary

    async def run_forever(self, stop: asyncio.Event, poll_seconds: float = 5.0) -> None:
        while not stop.is_set():
            try:
                await self.run_due()
            except Exception:
                log.exception("jobs.scheduler_failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass

    async def _acquire(self, job: Job) -> bool:
        now = clock.now()
        until = now + timedelta(seconds=job.interval_seconds)
        await JobLease.insert(
            JobLease(name=job.name, leased_until=now - timedelta(seconds=1), holder=HOLDER)
        ).on_conflict(action="DO NOTHING")
        taken = await (
            JobLease.update({JobLease.leased_until: until, JobLease.holder: HOLDER})
            .where((JobLease.name == job.name) & (JobLease.leased_until <= now))
            .returning(JobLease.name)
        )
        return bool(taken)
