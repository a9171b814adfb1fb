"""Rate limits that hold across workers: Redis when configured, the database otherwise.

Fixed windows: a key (``otp:phone:+849...``) may be hit ``limit`` times per
``window`` seconds. Both stores count atomically, so two workers never both
let the last request through.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.exceptions import TooManyRequestsException

from core.tables import RateBucket

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

    async def start(self) -> None:
        if self._redis_url and self._redis is None:
            import redis.asyncio as redis

            self._redis = redis.from_url(self._redis_url)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def hit(self, key: str, *, limit: int, window: int) -> RateResult:
        """Count one attempt against ``key``; ``allowed`` is False past ``limit``."""
        now = int(time.time())
        window_start = now - now % window
        bucket = f"{key}@{window_start}"
        expires = window_start + window
        if self._redis is not None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(bucket)
                pipe.expireat(bucket, expires + 1)
                count, _ = await pipe.execute()
        else:
            rows = await self._db.execute(
                "INSERT INTO rate_bucket (bucket, hits, expires_at) VALUES ({}, 1, {}) "
                "ON CONFLICT (bucket) DO UPDATE SET hits = rate_bucket.hits + 1 RETURNING hits",
                bucket,
                expires,
            )
            count = rows[0]["hits"]
        return RateResult(allowed=count <= limit, count=int(count), retry_after=max(1, expires - now))

    async def enforce(self, key: str, *, limit: int, window: int, what: str) -> None:
        """Raise 429 naming ``what`` and when to retry, once ``key`` is over its limit."""
        result = await self.hit(key, limit=limit, window=window)
        if not result.allowed:
            raise TooManyRequestsException(
                detail=f"Too many {what}; try again in {result.retry_after} seconds.",
                headers={"Retry-After": str(result.retry_after)},
            )

    async def purge_expired(self) -> int:
        """Delete finished windows (database store). Returns how many were removed."""
        removed = await RateBucket.delete().where(RateBucket.expires_at < int(time.time())).returning(RateBucket.bucket)
        return len(removed)
