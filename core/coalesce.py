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
    def __init__(self, fetch: Fetch[K, V], *, max_keys: int = 500) -> None:
        self._fetch = fetch
        self.max_keys = max_keys
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
                for key, waiters in round_.items():
                    value = found.get(key)
                    for future in waiters:
                        if not future.done():
                            future.set_result(value)
        finally:
            self._runner = None
            # Keys that arrived as the runner was stopping (cancelled at shutdown) must not wait forever.
            for waiters in self._waiting.values():
                for future in waiters:
                    if not future.done():
                        future.cancel()
            self._waiting.clear()
