"""Rate limits on Redis: one script per hit that counts and sets the window's expiry."""

from __future__ import annotations

import asyncio
import time
import uuid

from core.ratelimit import RateLimiter

REDIS_URL = "redis://127.0.0.1:6379/15"


async def test_a_redis_hit_sets_the_windows_expiry(start_platform):
    platform = await start_platform(redis_url=REDIS_URL)
    limiter: RateLimiter = platform.limiter
    key = f"test:{uuid.uuid4().hex}"
    await limiter.hit(key, limit=3, window=60)
    now = int(time.time())
    bucket = f"{key}@{now - now % 60}"
    expires_at = await limiter._redis.expiretime(bucket)
    # The bucket goes a second after its window ends, never later, and is not left without an expiry.
    assert now < expires_at <= now - now % 60 + 61


async def test_hits_survive_redis_forgetting_the_script(start_platform):
    platform = await start_platform(redis_url=REDIS_URL)
    limiter: RateLimiter = platform.limiter
    key = f"test:{uuid.uuid4().hex}"
    assert (await limiter.hit(key, limit=2, window=3600)).count == 1
    await limiter._redis.script_flush()  # a Redis restart or failover forgets loaded scripts
    results = [await limiter.hit(key, limit=2, window=3600) for _ in range(2)]
    assert [(r.count, r.allowed) for r in results] == [(2, True), (3, False)]


async def test_two_workers_share_a_budget_and_never_both_pass_the_last_hit(start_platform):
    first = await start_platform(redis_url=REDIS_URL)
    second = await start_platform(redis_url=REDIS_URL, url=first.settings.database_url)
    key = f"test:{uuid.uuid4().hex}"
    results = await asyncio.gather(
        *(limiter.hit(key, limit=10, window=3600) for _ in range(15) for limiter in (first.limiter, second.limiter))
    )
    assert sorted(r.count for r in results) == list(range(1, 31))
    assert sum(r.allowed for r in results) == 10
