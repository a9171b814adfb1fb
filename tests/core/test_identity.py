"""Identity: one-time codes and their limits, tokens, API keys, passwords, rate limits."""

from __future__ import annotations

import math
import random
import re
import uuid
from collections import Counter
from datetime import timedelta

import httpx
import pytest

from core import clock
from core.app import create_app
from core.identity import KEY_PREFIX, TOKEN_PREFIX, digest
from core.ratelimit import RateLimiter
from core.tables import AccessToken, ApiKey, MessageOutbox, OtpChallenge, StaffAccount
from core.testing import TEST_PASSWORD, http_client, staff_headers
from tests.core.conftest import PRODUCTION_HASHER

REDIS_URL = "redis://127.0.0.1:6379/15"


def random_phone() -> str:
    """A phone number no other test (or earlier run, in Redis) has used."""
    return "09" + "".join(random.choices("0123456789", k=8))


def client_at(platform, address: str) -> httpx.AsyncClient:
    """An in-process client whose requests come from ``address`` (rate limits are per address)."""
    transport = httpx.ASGITransport(app=create_app(platform=platform), client=(address, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def random_address() -> str:
    return f"198.51.{random.randint(0, 255)}.{random.randint(1, 254)}"


async def latest_code(phone: str) -> str:
    """The code the platform sent, read from the durable message outbox."""
    e164 = "+84" + phone[1:]
    row = (
        await MessageOutbox.select(MessageOutbox.body_en, MessageOutbox.kind)
        .where(MessageOutbox.recipient == e164)
        .order_by(MessageOutbox.created_at, ascending=False)
        .first()
    )
    assert row is not None and row["kind"] == "core.otp"
    match = re.search(r"\b(\d{6})\b", row["body_en"])
    assert match, row["body_en"]
    return match.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def request_code(client: httpx.AsyncClient, phone: str) -> str:
    response = await client.post("/api/auth/otp", json={"phone": phone})
    assert response.status_code == 202, response.text
    return await latest_code(phone)


async def verify(client: httpx.AsyncClient, phone: str, code: str) -> httpx.Response:
    return await client.post("/api/auth/otp/verify", json={"phone": phone, "code": code})


# -- one-time codes over HTTP ------------------------------------------------------------


async def test_code_signs_a_citizen_in(client):
    phone = random_phone()
    code = await request_code(client, phone)
    signed_in = await verify(client, phone, code)
    assert signed_in.status_code == 201, signed_in.text
    token = signed_in.json()["token"]
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["kind"] == "citizen"
    assert me.json()["roles"] == ["citizen"]
    # A code is used once.
    assert (await verify(client, phone, code)).status_code == 401


async def test_sixth_attempt_is_refused_even_with_the_right_code(client):
    phone = random_phone()
    code = await request_code(client, phone)
    for _ in range(5):
        assert (await verify(client, phone, wrong(code))).status_code == 401
    sixth = await verify(client, phone, code)
    assert sixth.status_code == 401
    assert "Too many wrong codes" in sixth.json()["detail"]
    # A new code starts a fresh count.
    fresh = await request_code(client, phone)
    assert (await verify(client, phone, fresh)).status_code == 201


async def test_expired_code_is_refused(client):
    phone = random_phone()
    code = await request_code(client, phone)
    await OtpChallenge.update({OtpChallenge.expires_at: clock.now() - timedelta(seconds=1)}).where(
        OtpChallenge.phone == "+84" + phone[1:]
    )
    refused = await verify(client, phone, code)
    assert refused.status_code == 401
    assert "wrong or expired" in refused.json()["detail"]


async def test_new_code_invalidates_the_old_one(client):
    phone = random_phone()
    old = await request_code(client, phone)
    new = await request_code(client, phone)
    while new == old:  # one chance in a million; ask again rather than assert on luck
        new = await request_code(client, phone)
    assert (await verify(client, phone, old)).status_code == 401
    assert (await verify(client, phone, new)).status_code == 201


async def test_invalid_phone_is_400_naming_the_field(client):
    for phone in ("0123456789", "+1 415 555 0100", "abc", ""):
        response = await client.post("/api/auth/otp", json={"phone": phone})
        assert response.status_code == 400, (phone, response.text)
        assert "phone" in response.text
    response = await client.post("/api/auth/otp/verify", json={"phone": "0912345678", "code": "12ab56"})
    assert response.status_code == 400
    assert "code" in response.text


async def assert_otp_limits(platform) -> None:
    """Per phone and per client address, the request after the limit is a 429 with Retry-After."""
    async with client_at(platform, random_address()) as client:
        phone = random_phone()
        for _ in range(2):
            assert (await client.post("/api/auth/otp", json={"phone": phone})).status_code == 202
        limited = await client.post("/api/auth/otp", json={"phone": phone})
        assert limited.status_code == 429, limited.text
        assert 1 <= int(limited.headers["Retry-After"]) <= 3600
        assert "this phone number" in limited.json()["detail"]
        # Another phone from this address still gets a code (address limit 4; the refused request counted).
        assert (await client.post("/api/auth/otp", json={"phone": random_phone()})).status_code == 202
        over = await client.post("/api/auth/otp", json={"phone": random_phone()})
        assert over.status_code == 429
        assert "from this address" in over.json()["detail"]
        assert int(over.headers["Retry-After"]) >= 1
    # Another address is not affected by this one's limit.
    async with client_at(platform, random_address()) as other:
        assert (await other.post("/api/auth/otp", json={"phone": random_phone()})).status_code == 202


async def test_otp_request_limits_on_the_database_store(start_platform):
    platform = await start_platform(otp_per_phone_per_hour=2, otp_per_client_per_hour=4)
    await assert_otp_limits(platform)


async def test_otp_request_limits_on_redis(start_platform):
    platform = await start_platform(otp_per_phone_per_hour=2, otp_per_client_per_hour=4, redis_url=REDIS_URL)
    assert platform.limiter._redis is not None
    await assert_otp_limits(platform)


@pytest.mark.parametrize("store", ["database", "redis"])
async def test_rate_limiter_counts_atomically_per_key(start_platform, store):
    platform = await start_platform(redis_url=REDIS_URL if store == "redis" else None)
    limiter: RateLimiter = platform.limiter
    key = f"test:{uuid.uuid4().hex}"
    results = [await limiter.hit(key, limit=3, window=3600) for _ in range(5)]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.count for r in results] == [1, 2, 3, 4, 5]
    assert all(1 <= r.retry_after <= 3600 for r in results)
    # Keys do not share counts.
    assert (await limiter.hit(f"{key}:other", limit=3, window=3600)).count == 1


@pytest.mark.parametrize("store", ["database", "redis"])
async def test_rate_limiter_counts_many_hits_in_one_go(start_platform, store):
    platform = await start_platform(redis_url=REDIS_URL if store == "redis" else None)
    limiter: RateLimiter = platform.limiter
    a, b = f"test:{uuid.uuid4().hex}", f"test:{uuid.uuid4().hex}"
    await limiter.hit(a, limit=3, window=3600)  # one earlier hit on a
    results = await limiter.hit_many([(a, 3, 3600), (b, 1, 3600), (a, 3, 3600), (a, 3, 3600), (b, 1, 3600)])
    # a: counts 2, 3, 4 in the order given; b: 1, 2.
    assert [r.count for r in results] == [2, 1, 3, 4, 2]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert (await limiter.hit(a, limit=3, window=3600)).count == 5
    assert await limiter.hit_many([]) == []


# -- tokens, keys and passwords ----------------------------------------------------------


def entropy_bits(secret: str) -> float:
    """An upper bound from the alphabet and length of the random part (URL-safe base64: 6 bits a character)."""
    return len(secret) * math.log2(64)


async def test_tokens_are_long_random_and_stored_only_as_sha256(platform):
    account = await platform.identity.create_staff(
        username="hash.check", password=TEST_PASSWORD, display_name="x", roles=["national_admin"]
    )
    issued = [await platform.identity.issue_token("staff", account, timedelta(hours=1)) for _ in range(20)]
    tokens = [t.token for t in issued]
    assert len(set(tokens)) == 20
    for token in tokens:
        assert token.startswith(TOKEN_PREFIX)
        secret = token[len(TOKEN_PREFIX) :]
        assert re.fullmatch(r"[A-Za-z0-9_-]+", secret)
        assert entropy_bits(secret) >= 128
    # The characters of the random parts are spread out, as random data is.
    counts = Counter("".join(t[len(TOKEN_PREFIX) :] for t in tokens))
    assert len(counts) > 50
    rows = await AccessToken.select()
    assert sorted(row["token_hash"] for row in rows) == sorted(digest(t) for t in tokens)
    for row in rows:
        assert not any(isinstance(v, str) and TOKEN_PREFIX in v for v in row.values())


async def test_api_keys_are_long_random_and_stored_only_as_sha256(platform):
    issued = await platform.identity.create_api_key(
        name="scanner", roles=["device"], created_by="test", province="01", site="venue-1"
    )
    assert issued.key.startswith(KEY_PREFIX)
    row = await ApiKey.select().where(ApiKey.id == issued.id).first()
    assert row["key_hash"] == digest(issued.key)
    # The stored prefix (to recognise a key in lists) leaves more than 128 secret bits unstored.
    assert issued.key.startswith(row["prefix"])
    assert entropy_bits(issued.key[len(row["prefix"]) :]) >= 128
    assert not any(isinstance(v, str) and issued.key in v for v in row.values())


async def test_passwords_are_stored_as_argon2(platform):
    await platform.identity.create_staff(
        username="argon.user", password=TEST_PASSWORD, display_name="x", roles=["national_admin"]
    )
    row = await StaffAccount.select(StaffAccount.password_hash).where(StaffAccount.username == "argon.user").first()
    assert row["password_hash"].startswith("$argon2")
    assert TEST_PASSWORD not in row["password_hash"]


def test_production_password_hashing_is_strong():
    # OWASP's floor for argon2id: 19 MiB of memory and two passes.
    assert PRODUCTION_HASHER.type.name == "ID"
    assert PRODUCTION_HASHER.memory_cost >= 19 * 1024
    assert PRODUCTION_HASHER.time_cost >= 2
    assert PRODUCTION_HASHER.hash("x" * 12).startswith("$argon2id$")


async def test_expired_token_fails(client, platform):
    headers = await staff_headers(platform, ["national_admin"])
    assert (await client.get("/api/me", headers=headers)).status_code == 200
    await AccessToken.update({AccessToken.expires_at: clock.now() - timedelta(seconds=1)}).where(
        AccessToken.revoked_at.is_null()
    )
    platform.identity.credentials.clear()  # changed behind the worker's back: see the next test
    assert (await client.get("/api/me", headers=headers)).status_code == 401


async def test_another_workers_revocation_is_seen_within_the_cache_time(client, platform):
    import asyncio

    headers = await staff_headers(platform, ["national_admin"])
    platform.identity.credentials.ttl = 0.2
    assert (await client.get("/api/me", headers=headers)).status_code == 200
    # Another worker revokes it: this one still trusts its cached look-up for a moment...
    await AccessToken.update({AccessToken.revoked_at: clock.now()}).where(AccessToken.revoked_at.is_null())
    assert (await client.get("/api/me", headers=headers)).status_code == 200
    await asyncio.sleep(0.3)
    # ... and no longer once the cache time has passed.
    assert (await client.get("/api/me", headers=headers)).status_code == 401


async def test_revoked_token_and_key_fail_at_once(client, platform):
    headers = await staff_headers(platform, ["national_admin"])
    principal = await platform.identity.principal_from_token(headers["Authorization"].split()[1])
    assert (await client.get("/api/me", headers=headers)).status_code == 200
    assert await platform.identity.revoke_token(principal.credential_id)
    assert (await client.get("/api/me", headers=headers)).status_code == 401

    issued = await platform.identity.create_api_key(
        name="scanner", roles=["device"], created_by="test", province="01", site="venue-1"
    )
    key_headers = {"X-API-Key": issued.key}
    assert (await client.get("/api/me", headers=key_headers)).status_code == 200
    assert await platform.identity.revoke_api_key(issued.id)
    assert (await client.get("/api/me", headers=key_headers)).status_code == 401
    assert not await platform.identity.revoke_api_key(issued.id)  # already revoked


async def test_revoking_an_account_signs_it_out_everywhere(client, platform):
    account = await platform.identity.create_staff(
        username="leaver", password=TEST_PASSWORD, display_name="x", roles=["national_admin"]
    )
    tokens = [await platform.identity.issue_token("staff", account, timedelta(hours=1)) for _ in range(2)]
    assert await platform.identity.revoke_account_tokens(account) == 2
    for token in tokens:
        assert (await client.get("/api/me", headers={"Authorization": f"Bearer {token.token}"})).status_code == 401


async def test_logout_revokes_the_token_and_the_key(client, platform):
    headers = await staff_headers(platform, ["national_admin"])
    other_session = await staff_headers(platform, ["national_admin"])
    assert (await client.post("/api/auth/logout", headers=headers)).status_code == 204
    assert (await client.get("/api/me", headers=headers)).status_code == 401
    assert (await client.get("/api/me", headers=other_session)).status_code == 200

    issued = await platform.identity.create_api_key(
        name="scanner", roles=["device"], created_by="test", province="01", site="venue-1"
    )
    key_headers = {"X-API-Key": issued.key}
    assert (await client.post("/api/auth/logout", headers=key_headers)).status_code == 204
    assert (await client.get("/api/me", headers=key_headers)).status_code == 401


async def test_wrong_password_and_unknown_user_look_the_same(client, platform):
    await platform.identity.create_staff(
        username="known.user", password=TEST_PASSWORD, display_name="x", roles=["national_admin"]
    )
    wrong_password = await client.post("/api/auth/login", json={"username": "known.user", "password": "not it"})
    unknown_user = await client.post("/api/auth/login", json={"username": "nobody.here", "password": "not it"})
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.json()["detail"] == unknown_user.json()["detail"] == "Wrong username or password."
    # An inactive account is refused with the same answer, even with the right password.
    await StaffAccount.update({StaffAccount.active: False}).where(StaffAccount.username == "known.user")
    inactive = await client.post("/api/auth/login", json={"username": "known.user", "password": TEST_PASSWORD})
    assert inactive.status_code == 401
    assert inactive.json()["detail"] == "Wrong username or password."


async def test_login_rate_limit_gives_429(start_platform):
    platform = await start_platform(login_per_client_per_hour=3)
    await platform.identity.create_staff(
        username="limited.user", password=TEST_PASSWORD, display_name="x", roles=["national_admin"]
    )
    async with http_client(platform) as client:
        for _ in range(3):
            response = await client.post("/api/auth/login", json={"username": "limited.user", "password": "guess"})
            assert response.status_code == 401
        limited = await client.post("/api/auth/login", json={"username": "limited.user", "password": TEST_PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "sign-in attempts" in limited.json()["detail"]


async def test_concurrent_requests_with_uncached_credentials_are_looked_up_together(platform):
    import asyncio

    identity = platform.identity
    tokens = [(await identity.issue_token("citizen", uuid.uuid4(), timedelta(hours=1))).token for _ in range(20)]
    keys = [
        (
            await identity.create_api_key(
                name=f"scanner {n}", roles=["device"], created_by="test", province="01", site=f"venue-{n}"
            )
        ).key
        for n in range(5)
    ]
    rounds_before = identity._tokens.rounds, identity._keys.rounds
    made_up = TOKEN_PREFIX + "x" * 43
    principals = await asyncio.gather(
        *(identity.principal_from_token(token) for token in [*tokens, made_up]),
        *(identity.principal_from_api_key(key) for key in keys),
    )
    assert identity._tokens.rounds - rounds_before[0] == 1  # 21 tokens, one query
    assert identity._keys.rounds - rounds_before[1] == 1
    assert principals[20] is None
    citizens = principals[:20]
    assert len({principal.id for principal in citizens}) == 20
    assert all(principal.kind == "citizen" for principal in citizens)
    assert [principal.site for principal in principals[21:]] == [f"venue-{n}" for n in range(5)]


async def test_a_revocation_during_a_lookup_is_not_undone_by_its_answer(platform):
    import asyncio

    identity = platform.identity
    issued = await identity.issue_token("citizen", uuid.uuid4(), timedelta(hours=1))
    released = asyncio.Event()
    fetch = identity._tokens._fetch

    async def slow_fetch(hashes):
        rows = await fetch(hashes)  # read before the revocation...
        await released.wait()  # ... answered after it
        return rows

    identity._tokens._fetch = slow_fetch
    lookup = asyncio.ensure_future(identity.principal_from_token(issued.token))
    await asyncio.sleep(0.05)
    row = await AccessToken.select(AccessToken.id).where(AccessToken.token_hash == digest(issued.token)).first()
    assert await identity.revoke_token(str(row["id"]))
    released.set()
    assert (await lookup) is not None  # the request in flight saw the token before it was revoked
    identity._tokens._fetch = fetch
    assert await identity.principal_from_token(issued.token) is None  # its stale answer was not cached
