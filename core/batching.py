"""Group commit: many small writes share one transaction, and none is acknowledged early.

High-volume endpoints (check-ins, audit records) hand their writes to the
group commit. Writes that arrive while a batch is being collected (up to
``max_batch`` or ``max_wait`` seconds) run in one transaction, and each
caller gets its answer only after that transaction has committed, so
batching never loses an acknowledged write. On PostgreSQL up to
``in_flight`` batches commit at once on separate connections (their writers
must take any locks in a fixed order); on SQLite one at a time.

Two kinds of write:

* ``submit(write)``: a closure, run in its own savepoint. A write that fails
  rolls back alone and its caller gets the exception; the others commit.
* ``submit_to(writer, item)``: an item for a *batch writer*, an async
  function that stores a whole list of items set-wise (one statement per
  table for the batch, not per item) and returns one outcome per item: a
  value, or an exception instance for an item it refused without writing
  anything for it. If the writer raises instead, what it wrote is rolled
  back and it is called again with one item at a time, so one bad item
  still fails alone. (A batch holding one writer's items and nothing else
  runs it without a savepoint: the whole transaction is the writer's.)

  ``submit_to(writer, item, own_transaction=True)``: the writer keeps its
  batch all or nothing itself (one statement, say, or a transaction it
  opens): a batch holding only such items of one writer is handed to it with
  no transaction open (no BEGIN and COMMIT: two round trips fewer). If it
  raises, it must have stored nothing; the batch is then run as above, each
  item alone in a savepoint of a transaction.

How long a batch waits for company: a flusher that was idle waits up to
``max_wait`` for more writes, unless it knows who is coming. A request that
will hand in a write announces it as it starts (``with expecting():``, before
its reads: the token, the body, the checks); once every announced write has
arrived (or its request has ended without one), the batch goes at once. A
check-in alone is then stored without waiting, and a burst of concurrent
check-ins is stored together without waiting for the timer. Writes nobody
announced (audit records) wait ``max_wait`` as before.

A batch need not wait for every announced write, though: once ``early_part``
writes are in and a slot is free besides, they go at once, from the hand-in
that made them that many, and the rest follow in the next batch. Otherwise
a hundred concurrent check-ins make one convoy: the process checks them all
while the database idles, then the database stores them all while the
process idles, then all their answers go out and all the clients' next
requests come in together. Sent early, the database stores the first
writes while the process checks the rest, and the convoy breaks up. (The
token look-ups wake their requests in slices, ``Coalescer.wake_slice``, so
that the hand-in that makes ``early_part`` comes before the last request
has been checked.)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import structlog

if TYPE_CHECKING:
    from core.storage import Database

T = TypeVar("T")
# The announcement of the current request, if it made one (see ``GroupCommit.expecting``).
_announced: contextvars.ContextVar[_Announcement | None] = contextvars.ContextVar(
    "group_commit_announced", default=None
)
# How often a batch that deadlocked with another is run again before its callers get the error.
DEADLOCK_RETRIES = 2
log = structlog.get_logger("core.batching")


BatchWriter = Callable[[list[Any]], Awaitable[list[Any]]]
"""Stores many items in the current transaction; returns one outcome per item (a value or an Exception)."""


class _Job:
    __slots__ = ("announced", "future", "item", "order", "own_transaction", "writer")

    def __init__(
        self,
        writer: BatchWriter | None,
        item: Any,
        future: asyncio.Future[Any],
        order: int = 0,
        own_transaction: bool = False,
        announced: bool = False,
    ) -> None:
        self.writer = writer  # None: ``item`` is a closure to run alone
        self.item = item
        self.future = future
        self.order = order
        self.own_transaction = own_transaction
        self.announced = announced  # handed in under ``GroupCommit.expecting``


class _Announcement:
    __slots__ = ("group_commit", "open")

    def __init__(self, group_commit: GroupCommit) -> None:
        self.group_commit = group_commit
        self.open = True


class _Expecting:
    """``GroupCommit.expecting()``'s block (a class, not a generator: every check-in request enters one)."""

    __slots__ = ("_announcement", "_group_commit", "_token")

    def __init__(self, group_commit: GroupCommit) -> None:
        self._group_commit = group_commit
        self._announcement: _Announcement | None = None
        self._token: contextvars.Token[_Announcement | None] | None = None

    def __enter__(self) -> None:
        if _announced.get() is not None:
            return  # announced already, further out in this task: that one counts
        self._announcement = _Announcement(self._group_commit)
        self._group_commit._expected += 1
        self._token = _announced.set(self._announcement)

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            _announced.reset(self._token)
            self._group_commit._arrive(self._announcement)


class GroupCommit:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 256,
        max_wait: float = 0.002,
        in_flight: int = 2,
        min_part: int = 12,
        early_part: int = 32,
    ) -> None:
        self._db = db
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.min_part = max(1, min_part)  # the fewest writes a batch is split into parts of
        self.early_part = early_part  # announced writes still coming: this many go at once (0: never early)
        # Batches committing at once, each on its own connection: while one waits for the database,
        # the next is sent, and a burst is cut into parts (``_parts``) committed side by side. A writer
        # that serialises every batch anyway (the audit chain's lock) is better off with 1: bigger
        # batches cost less per write. SQLite: always one.
        self.in_flight = 1 if db.kind == "sqlite" else in_flight
        self._slots = asyncio.Semaphore(self.in_flight)
        self._committing: set[asyncio.Task[None]] = set()
        self._pending: list[_Job] = []
        self._arrived = asyncio.Event()
        self._expected = 0  # announced writes not handed in yet
        self._ready = asyncio.Event()  # set when the batch being collected may go: all announced in, or full
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.writes = 0

    async def submit(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run ``write`` in the next batch, in its own savepoint; return its result once the batch has committed."""
        return await self._enqueue(None, write)

    async def submit_to(self, writer: BatchWriter, item: Any, *, order: int = 0, own_transaction: bool = False) -> Any:
        """Hand ``item`` to ``writer`` with the rest of the next batch; its outcome, once committed.

        Within a batch, writers run by ascending ``order`` (then arrival): a
        writer that takes a lock every batch needs (the audit chain's) goes
        last, so that batches committing side by side take locks in one order.
        ``own_transaction``: the writer stores a batch all or nothing by itself
        when no transaction is open (see the module's docstring); a batch of
        only such items of this writer is handed to it without one.
        """
        return await self._enqueue(writer, item, order, own_transaction)

    def expecting(self) -> _Expecting:
        """Announce that the code inside will probably hand in one write (a request that stores a check-in).

        ``with group_commit.expecting(): ...``. While announced writes are on
        their way, a batch being collected waits for them (up to ``max_wait``);
        once all are in, it goes without waiting longer. The announcement ends
        with the first write handed in from inside (in this task), or when the
        block ends without one. Nested or repeated announcements in one task
        count once.
        """
        return _Expecting(self)

    def _arrive(self, announcement: _Announcement | None) -> bool:
        """Close ``announcement`` (a write handed in, or its block ended); whether it was still open."""
        if announcement is None or not announcement.open or announcement.group_commit is not self:
            return False
        announcement.open = False
        self._expected -= 1
        if self._expected == 0:
            self._ready.set()
        return True

    async def _enqueue(
        self, writer: BatchWriter | None, item: Any, order: int = 0, own_transaction: bool = False
    ) -> Any:
        announced = self._arrive(_announced.get())
        if self._flusher is None or self._flusher.done():
            # A clean context: the flusher must not inherit the first caller's transaction or log context.
            self._flusher = asyncio.create_task(self._run(), name="group-commit", context=contextvars.Context())
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(writer, item, future, order, own_transaction, announced))
        self._arrived.set()
        if len(self._pending) >= self.max_batch:
            self._ready.set()
        elif self._early_now():
            await self._slots.acquire()  # free: returns at once
            batch, self._pending = self._pending, []
            self._arrived.clear()
            self._dispatch(batch)
        return await future

    def _early_now(self) -> bool:
        """Whether the writes pending go now, before the announced ones still coming (module docstring)."""
        return (
            self.early_part > 0
            and self.in_flight > 1
            and self._expected > 0
            and len(self._pending) >= self.early_part
            and not self._slots.locked()
        )

    def _dispatch(self, batch: list[_Job]) -> None:
        """Commit ``batch`` in the slot taken for it."""
        task = asyncio.create_task(self._commit_in_slot(batch))
        self._committing.add(task)
        task.add_done_callback(self._committing.discard)

    async def close(self) -> None:
        """Flush what is queued and stop the flusher."""
        if self._flusher is not None:
            while self._pending or self._committing:
                await asyncio.sleep(self.max_wait)
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            # While every slot is busy committing, writes pile up: the next batch has been collecting
            # for that long already. Only a flusher that was idle waits for company.
            busy = self._slots.locked()
            await self._slots.acquire()  # wait for a free slot: meanwhile more writes join the batch
            if not busy and len(self._pending) < self.max_batch and self.max_wait > 0:
                await self._await_company()
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            if not self._pending:
                self._arrived.clear()
            if not batch:
                self._slots.release()
                continue
            for part in await self._parts(batch):
                self._dispatch(part)

    async def _parts(self, batch: list[_Job]) -> list[list[_Job]]:
        """``batch`` in as many parts as there are free slots, each of ``min_part`` writes or more.

        A burst of writes that all arrived together (every connection's
        request at once) commits in parallel parts rather than one after
        another: the database stores them side by side while this process
        answers the first part's requests. One slot is already held for the
        first part; one more is taken for each other part.
        """
        parts = 1
        while len(batch) >= (parts + 1) * self.min_part and not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            parts += 1
        if parts == 1:
            return [batch]
        size, extra = divmod(len(batch), parts)
        cuts = [0]
        for n in range(parts):
            cuts.append(cuts[-1] + size + (1 if n < extra else 0))
        return [batch[start:end] for start, end in itertools.pairwise(cuts)]

    async def _await_company(self) -> None:
        """Let concurrent writes join the batch: the announced ones, or for ``max_wait`` if none was."""
        if not self._expected:
            if any(job.announced for job in self._pending):
                return  # everyone announced is here: nobody to wait for
            await asyncio.sleep(self.max_wait)  # unannounced writes: wait for company that may come
            return
        self._ready.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self.max_wait)

    async def _commit_in_slot(self, batch: list[_Job]) -> None:
        try:
            await self._commit(batch)
        finally:
            self._slots.release()

    async def _commit(self, batch: list[_Job]) -> None:
        outcomes: dict[int, tuple[bool, Any]] = {}
        groups = _groups(batch)
        # One batch writer and nothing else (the usual case under load): it runs straight in the
        # transaction, without a savepoint around it (two round trips fewer). If it raises, the
        # transaction rolls back and the batch runs again with each item alone in its savepoint.
        direct = len(groups) == 1 and groups[0][0].writer is not None
        # ... and if its items all said so, it runs with no transaction at all: it makes its own.
        own = direct and all(job.own_transaction for job in groups[0])
        attempt = 1
        while True:
            outcomes.clear()
            try:
                if own:
                    # Its one statement on a connection the database keeps for the next batch.
                    async with self._db.kept():
                        await _run_writer_directly(groups[0], outcomes, committed=True)
                    break
                async with self._db.transaction() as transaction:
                    if direct:
                        await _run_writer_directly(groups[0], outcomes)
                    else:
                        for group in groups:
                            if group[0].writer is None:
                                await _run_alone(transaction, group[0], outcomes)
                            else:
                                await _run_writer(transaction, group, outcomes, split=len(groups) == 1)
                break
            except _WriterRaised as exc:
                log.warning("group_commit.writer_failed", size=len(batch), error=str(exc))
                # Rolled back whole (or, its own transaction, stored nothing): now each item alone, in a
                # transaction (see _run_writer's ``split``).
                direct = own = False
            except asyncpg.exceptions.DeadlockDetectedError as exc:
                # Batches committing side by side locked each other: the database rolled this one
                # back whole, so it can run again as it was.
                if attempt > DEADLOCK_RETRIES:
                    self._fail(batch, exc)
                    return
                log.warning("group_commit.deadlock_retry", size=len(batch), attempt=attempt)
                attempt += 1
            except Exception as exc:
                self._fail(batch, exc)
                return
        self.batches += 1
        self.writes += len(batch)
        for job in batch:
            if job.future.done():  # the caller went away (request cancelled); its write is stored anyway
                continue
            ok, value = outcomes[id(job)]
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    @staticmethod
    def _fail(batch: list[_Job], exc: Exception) -> None:
        """The commit itself failed: nothing in the batch was stored; every caller hears why."""
        log.error("group_commit.failed", size=len(batch), error=f"{type(exc).__name__}: {exc}")
        for job in batch:
            if not job.future.done():
                job.future.set_exception(exc)


def _groups(batch: list[_Job]) -> list[list[_Job]]:
    """Closures one by one; a writer's items together, at the place of its first item; then by ``order``."""
    groups: list[list[_Job]] = []
    by_writer: dict[Any, list[_Job]] = {}
    for job in batch:
        if job.writer is None:
            groups.append([job])
        elif job.writer in by_writer:
            by_writer[job.writer].append(job)
        else:
            by_writer[job.writer] = [job]
            groups.append(by_writer[job.writer])
    groups.sort(key=lambda group: group[0].order)  # stable: arrival order within the same order
    return groups


async def _run_alone(transaction: Any, job: _Job, outcomes: dict[int, tuple[bool, Any]]) -> None:
    savepoint = await transaction.savepoint()
    try:
        outcomes[id(job)] = (True, await job.item())
        await savepoint.release()
    except Exception as exc:
        await savepoint.rollback_to()
        outcomes[id(job)] = (False, exc)


class _WriterRaised(Exception):
    """A batch writer run without a savepoint raised: the batch is run again, item by item."""


async def _run_writer_directly(
    jobs: list[_Job], outcomes: dict[int, tuple[bool, Any]], *, committed: bool = False
) -> None:
    """The writer on all of ``jobs``; ``committed``: in its own transaction, so stored once it returns."""
    writer = jobs[0].writer
    assert writer is not None
    try:
        results = await writer([job.item for job in jobs])
    except asyncpg.exceptions.DeadlockDetectedError:
        raise
    except Exception as exc:
        raise _WriterRaised(f"{type(exc).__name__}: {exc}") from exc
    if len(results) != len(jobs):
        message = f"batch writer {writer!r} returned {len(results)} outcomes for {len(jobs)} items"
        if committed:  # what it stored is stored: running the items again could store them twice
            raise RuntimeError(message)
        raise _WriterRaised(message)
    _record(jobs, results, outcomes)


async def _run_writer(
    transaction: Any, jobs: list[_Job], outcomes: dict[int, tuple[bool, Any]], *, split: bool = False
) -> None:
    """The writer on ``jobs`` in a savepoint; if it raises, on each item alone (at once when ``split``)."""
    writer = jobs[0].writer
    assert writer is not None
    if split and len(jobs) > 1:
        for job in jobs:
            await _run_writer(transaction, [job], outcomes)
        return
    savepoint = await transaction.savepoint()
    try:
        results = await writer([job.item for job in jobs])
        if len(results) != len(jobs):
            raise RuntimeError(f"batch writer {writer!r} returned {len(results)} outcomes for {len(jobs)} items")
        await savepoint.release()
    except Exception as exc:
        await savepoint.rollback_to()
        if len(jobs) == 1:
            outcomes[id(jobs[0])] = (False, exc)
            return
        log.warning("group_commit.writer_failed", size=len(jobs), error=f"{type(exc).__name__}: {exc}")
        for job in jobs:  # find the item that failed: each alone
            await _run_writer(transaction, [job], outcomes)
        return
    _record(jobs, results, outcomes)


def _record(jobs: list[_Job], results: list[Any], outcomes: dict[int, tuple[bool, Any]]) -> None:
    for job, result in zip(jobs, results, strict=True):
        outcomes[id(job)] = (False, result) if isinstance(result, BaseException) else (True, result)
