"""Rate limits that hold across workers: Redis when configured, the database otherwise.

Fixed windows: a key (``otp:phone:+849...``) may be hit ``limit`` times per
``window`` seconds. Both stores count atomically (Redis ``INCR``, an SQL
upsert), so two workers never both let the last request through. On Redis one
hit is one command, a script that counts and sets the window's expiry
(atomic, one round trip); a batch of hits is one pipelined round trip.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.exceptions import TooManyRequestsException

from core.tables import RateBucket

# KEYS[1]: the window's bucket; ARGV[1]: when it expires (Unix time). Returns the count so far.
_HIT_SCRIPT = "local n = redis.call('INCR', KEYS[1]) redis.call('EXPIREAT', KEYS[1], ARGV[1]) return n"

if TYPE_CHECKING:
    from core.storage import Database


class RateResult(msgspec.Struct, frozen=True):
    allowed: bool
    count: int
    retry_after: int


class RateLimiter:
    def __init__(self, db: Database, redis_url: str | None = None) -> None:
        self._db = db
        self._redis_url = redis_url
        self._redis: Any = None
        self._hit_script: Any = None

    async def start(self) -> None:
        if self._redis_url and self._redis is None:
            import redis.asyncio as redis

            self._redis = redis.from_url(self._redis_url)
            # EVALSHA, loading the script on first use (and again should Redis have forgotten it).
            self._hit_script = self._redis.register_script(_HIT_SCRIPT)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
            self._hit_script = None

    async def hit(self, key: str, *, limit: int, window: int) -> RateResult:
        """Count one attempt against ``key``; ``allowed`` is False past ``limit``."""
        now = int(time.time())
        window_start = now - now % window
        bucket = f"{key}@{window_start}"
        expires = window_start + window
        if self._redis is not None:
            count = await self._hit_script(keys=[bucket], args=[expires + 1])
        else:
            rows = await self._db.fetch(
                "INSERT INTO rate_bucket (bucket, hits, expires_at) VALUES ({}, 1, {}) "
                "ON CONFLICT (bucket) DO UPDATE SET hits = rate_bucket.hits + 1 RETURNING hits",
                bucket,
                expires,
            )
            count = rows[0]["hits"]
        return RateResult(allowed=count <= limit, count=int(count), retry_after=max(1, expires - now))

    async def hit_many(self, hits: list[tuple[str, int, int]]) -> list[RateResult]:
        """Count many attempts at once, each ``(key, limit, window)``: one round trip for all.

        Attempts on the same key are counted in the order given, so the ones
        past the limit are the later ones. In a transaction on the database
        store, the counts commit (or roll back) with it.
        """
        now, buckets, ends = self.buckets(hits)
        expiries = dict(zip(buckets, ends, strict=True))
        added: dict[str, int] = {}
        for bucket in buckets:
            added[bucket] = added.get(bucket, 0) + 1
        totals: dict[str, int] = {}
        if not added:
            return []
        if self._redis is not None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for bucket, count in added.items():
                    pipe.incrby(bucket, count)
                    pipe.expireat(bucket, expiries[bucket] + 1)
                replies = await pipe.execute()
            totals = {bucket: int(replies[2 * n]) for n, bucket in enumerate(added)}
        else:
            names = sorted(added)  # rows locked in one order: concurrent batches never deadlock
            placeholders = ", ".join("({}, {}, {})" for _ in names)
            rows = await self._db.fetch(
                f"INSERT INTO rate_bucket (bucket, hits, expires_at) VALUES {placeholders} "  # noqa: S608 (placeholders only)
                "ON CONFLICT (bucket) DO UPDATE SET hits = rate_bucket.hits + excluded.hits RETURNING bucket, hits",
                *(value for name in names for value in (name, added[name], expiries[name])),
            )
            totals = {row["bucket"]: int(row["hits"]) for row in rows}
        results = []
        seen: dict[str, int] = {}
        for (_key, limit, _window), bucket in zip(hits, buckets, strict=True):
            seen[bucket] = seen.get(bucket, 0) + 1
            count = totals[bucket] - added[bucket] + seen[bucket]
            results.append(RateResult(allowed=count <= limit, count=count, retry_after=max(1, expiries[bucket] - now)))
        return results

    @property
    def counts_in_database(self) -> bool:
        """Whether hits are counted in the database (table ``rate_bucket``), not in Redis."""
        return self._redis is None

    @staticmethod
    def buckets(hits: list[tuple[str, int, int]]) -> tuple[int, list[str], list[int]]:
        """For hits ``(key, limit, window)``: now (Unix time), each hit's bucket, and when its window ends.

        A bucket is the key's current fixed window. (For a caller that counts
        the hits itself, as ``checkin_store_batch`` does, in the same buckets.)
        """
        now = int(time.time())
        buckets: list[str] = []
        ends: list[int] = []
        for key, _limit, window in hits:
            window_start = now - now % window
            buckets.append(f"{key}@{window_start}")
            ends.append(window_start + window)
        return now, buckets, ends

    async def enforce(self, key: str, *, limit: int, window: int, what: str) -> None:
        """Raise 429 naming ``what`` and when to retry, once ``key`` is over its limit."""
        result = await self.hit(key, limit=limit, window=window)
        if not result.allowed:
            raise too_many(what, result)

    async def purge_expired(self) -> int:
        """Delete finished windows (database store). Returns how many were removed."""
        removed = await RateBucket.delete().where(RateBucket.expires_at < int(time.time())).returning(RateBucket.bucket)
        return len(removed)


def too_many(what: str, result: RateResult) -> TooManyRequestsException:
    """The 429 for a refused attempt: it names what was limited and when to retry."""
    return TooManyRequestsException(
        detail=f"Too many {what}; try again in {result.retry_after} seconds.",
        headers={"Retry-After": str(result.retry_after)},
    )
