"""Coalesced look-ups: concurrent requests for keys answered by one query per round.

Under load, many requests need a row by key at the same moment (a bearer
token, an API key). One query for each costs the worker a pool round trip
per request: more than the request's own work. A :class:`Coalescer` sends
the keys asked for during one turn of the event loop in one query
(``WHERE key = ANY(...)``); keys asked for while that query runs go together
in the next. Each caller waits only for the round that carries its key, so
an idle worker answers as fast as before (the query starts at the next turn
of the loop) and a busy one makes one query per round instead of one per
request: the same idea as the group commit, for reads.

A round's callers are woken ``wake_slice`` at a time, the event loop turning
between slices (0: all at once). Woken all at once, a round of a hundred
requests runs on to its next step as one block of the loop's time, and the
group commit cannot send the first of them to the database before the last
has been checked: the database and this process then take turns, each idle
while the other works. Woken in slices, the group commit sends the first
slices' writes (``GroupCommit.early_part``) while the process checks the rest.

A caller that is cancelled (its client went away) stops waiting without
disturbing the others; a query that fails fails every caller in its round
with the same exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

Fetch = Callable[[list[K]], Awaitable[Mapping[K, V]]]
"""Looks up many keys in one query; returns the rows found, by key (a missing key: not found)."""


class Coalescer(Generic[K, V]):
    def __init__(self, fetch: Fetch[K, V], *, max_keys: int = 500, wake_slice: int = 0) -> None:
        self._fetch = fetch
        self.max_keys = max_keys
        self.wake_slice = wake_slice
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._runner: asyncio.Task[None] | None = None
        self.rounds = 0
        self.keys = 0

    async def load(self, key: K) -> V | None:
        """The row for ``key``, or None when there is none."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        waiters = self._waiting.get(key)
        if waiters is None:
            self._waiting[key] = [future]
        else:
            waiters.append(future)
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                keys = list(self._waiting)[: self.max_keys]
                round_ = {key: self._waiting.pop(key) for key in keys}
                self.rounds += 1
                self.keys += len(keys)
                try:
                    found = await self._fetch(keys)
                except BaseException as exc:  # every caller of this round gets it
                    for waiters in round_.values():
                        for future in waiters:
                            if not future.done():
                                if isinstance(exc, Exception):
                                    future.set_exception(exc)
                                else:
                                    future.cancel()
                    if not isinstance(exc, Exception):
                        raise
                    continue
                await self._wake(round_, found)
        finally:
            self._runner = None
            # Keys that arrived as the runner was stopping (cancelled at shutdown) must not wait forever.
            for waiters in self._waiting.values():
                for future in waiters:
                    if not future.done():
                        future.cancel()
            self._waiting.clear()

    async def _wake(self, round_: dict[K, list[asyncio.Future[V | None]]], found: Mapping[K, V]) -> None:
        """Give each caller of ``round_`` its row, ``wake_slice`` keys at a time (see the module's docstring)."""
        keys = list(round_)
        try:
            for done, key in enumerate(keys, 1):
                value = found.get(key)
                for future in round_[key]:
                    if not future.done():
                        future.set_result(value)
                if self.wake_slice and done % self.wake_slice == 0 and done < len(keys):
                    await asyncio.sleep(0)  # the callers woken so far run on before the next slice
        except BaseException:
            # Stopped between slices (cancelled at shutdown): nobody of this round may wait forever.
            for waiters in round_.values():
                for future in waiters:
                    if not future.done():
                        future.cancel()
            raise
