"""Group commit: many small writes share one transaction, and none is acknowledged early.

High-volume endpoints (check-ins, declarations) hand their write to
``GroupCommit.submit``. Writes that arrive while a batch is being collected
(up to ``max_batch`` or ``max_wait`` seconds) run in one transaction, each
inside its own savepoint: a write that fails rolls back alone and its caller
gets the exception, while the others commit. ``submit`` returns only after
the batch has committed, so batching never loses an acknowledged write.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

if TYPE_CHECKING:
    from core.storage import Database

T = TypeVar("T")
log = structlog.get_logger("core.batching")


class GroupCommit:
    def __init__(self, db: Database, *, max_batch: int = 256, max_wait: float = 0.002) -> None:
        self._db = db
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._pending: list[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._arrived = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.writes = 0

    async def submit(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run ``write`` in the next batch; return its result once the batch has committed."""
        if self._flusher is None or self._flusher.done():
            # A clean context: the flusher must not inherit the first caller's transaction or log context.
            self._flusher = asyncio.create_task(self._run(), name="group-commit", context=contextvars.Context())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        self._arrived.set()
        return await future

    async def close(self) -> None:
        """Flush what is queued and stop the flusher."""
        if self._flusher is not None:
            while self._pending:
                await asyncio.sleep(self.max_wait)
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if len(self._pending) < self.max_batch and self.max_wait > 0:
                await asyncio.sleep(self.max_wait)  # let concurrent requests join the batch
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            if not self._pending:
                self._arrived.clear()
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            async with self._db.transaction() as transaction:
                for write, _future in batch:
                    savepoint = await transaction.savepoint()
                    try:
                        outcomes.append((True, await write()))
                        await savepoint.release()
                    except Exception as exc:
                        await savepoint.rollback_to()
                        outcomes.append((False, exc))
        except Exception as exc:
            # The commit itself failed: nothing in the batch was stored.
            log.error("group_commit.failed", size=len(batch), error=f"{type(exc).__name__}: {exc}")
            for _write, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.writes += len(batch)
        for (_write, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():  # the caller went away (request cancelled); its write is stored anyway
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
