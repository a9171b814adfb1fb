"""Identity: staff accounts, bearer tokens, API keys and citizens' one-time codes.

Secrets (tokens, keys) are 256 random bits, shown once, and stored only as a
SHA-256 digest; they can be revoked. Staff passwords are hashed with argon2.
Citizens sign in with their phone number and a 6-digit code sent through
``send_message``: it expires after ``otp_ttl_minutes``, allows
``otp_max_attempts`` tries, and requests are rate-limited per phone and per
client address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from litestar.exceptions import NotAuthorizedException

from core import clock
from core.coalesce import Coalescer
from core.errors import Conflict, InvalidInput
from core.messages import Message
from core.principal import CITIZEN, Principal
from core.tables import AccessToken, ApiKey, Citizen, OtpChallenge, StaffAccount

if TYPE_CHECKING:
    from core.platform import Platform

TOKEN_PREFIX = "pdt_"  # noqa: S105 (a visible prefix, not a secret)
KEY_PREFIX = "pdk_"
HOUR = 3600
_PHONE = re.compile(r"^(?:\+?84|0)([35789]\d{8})$")
_hasher = PasswordHasher()
# Verifying against this when the username is unknown keeps login timing uniform.
# Credentials by digest, for many requests at once (the condition and its placeholders are appended).
_TOKENS_WHERE = (
    "SELECT t.token_hash, t.id, t.account_kind, t.account_id, t.expires_at, t.revoked_at, "
    "s.roles, s.province, s.site, s.lab, s.active "
    "FROM access_token t LEFT JOIN staff_account s ON s.id = t.account_id WHERE "
)
_KEYS_WHERE = "SELECT key_hash, id, kind, roles, province, site, lab, expires_at, revoked_at FROM api_key WHERE "
# Requests a token look-up round wakes at a time (core.coalesce): fewer than the group commit's
# ``early_part``, so that a round of many sends its first writes before the last request is checked.
TOKEN_WAKE_SLICE = 24
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class IssuedToken(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    token_type: str = "bearer"  # noqa: S105 (a scheme name, not a secret)
    expires_at: datetime
    principal_id: str


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    key: str
    prefix: str


def new_secret(prefix: str) -> str:
    """A fresh credential: ``prefix`` + 256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_phone(raw: str) -> str:
    """A Vietnamese mobile number in E.164 (``+84912345678``), or a 400 naming the field."""
    cleaned = re.sub(r"[\s.\-()]", "", raw or "")
    match = _PHONE.match(cleaned)
    if not match:
        raise InvalidInput("phone: not a Vietnamese mobile number (expected 0912345678 or +84912345678)")
    return "+84" + match.group(1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


class CredentialCache:
    """Principals by credential digest, kept ``ttl`` seconds, so a request costs no lookup.

    Unknown and revoked credentials are cached too (as ``None``): a flood of
    made-up tokens costs one query each at most once per ``ttl``. Any change
    to credentials in this worker empties the cache and starts a new
    *generation*: an answer looked up before the change is not cached after it.
    """

    MAX_ENTRIES = 100_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.generation = 0
        self._entries: dict[str, tuple[float, Principal | None, datetime | None]] = {}

    def get(self, key: str) -> tuple[bool, Principal | None]:
        """(found, principal): ``found`` is False when the credential must be looked up."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        cached_at, principal, expires_at = entry
        if time.monotonic() - cached_at > self.ttl:
            del self._entries[key]
            return False, None
        if expires_at is not None and expires_at <= clock.now():
            return True, None
        return True, principal

    def put(self, key: str, principal: Principal | None, expires_at: datetime | None, generation: int) -> None:
        """Cache an answer looked up during ``generation`` (dropped if credentials changed since)."""
        if self.ttl <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), principal, expires_at)

    def clear(self) -> None:
        self._entries.clear()
        self.generation += 1


class Identity:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._settings = platform.settings
        self.credentials = CredentialCache(platform.settings.credential_cache_seconds)
        # Credentials missing from the cache, looked up together by concurrent requests.
        # Woken in slices, so that the group commit sends the first requests' writes while the rest are
        # checked (see ``core.coalesce``).
        self._tokens: Coalescer[str, Any] = Coalescer(self._fetch_tokens, wake_slice=TOKEN_WAKE_SLICE)
        self._keys: Coalescer[str, Any] = Coalescer(self._fetch_keys, wake_slice=TOKEN_WAKE_SLICE)

    # -- staff -----------------------------------------------------------------

    async def create_staff(
        self,
        *,
        username: str,
        password: str,
        display_name: str,
        roles: list[str],
        province: str | None = None,
        site: str | None = None,
        lab: str | None = None,
    ) -> str:
        """Create a staff account; returns its id. Raises ``ValueError`` naming what is wrong."""
        if len(password) < 12:
            raise InvalidInput("password: use at least 12 characters")
        self._platform.roles.validate_assignment(roles, province=province, site=site, lab=lab)
        if province is not None and not await self._platform.province_exists(province):
            raise InvalidInput(f"province: unknown province code {province!r} (see `phongdich units list`)")
        if await StaffAccount.exists().where(StaffAccount.username == username):
            raise Conflict(f"username: {username!r} is taken")
        account_id = uuid.uuid4()
        await StaffAccount.insert(
            StaffAccount(
                id=account_id,
                username=username,
                password_hash=hash_password(password),
                display_name=display_name,
                roles=roles,
                province=province,
                site=site,
                lab=lab,
                active=True,
                created_at=clock.now(),
            )
        )
        return str(account_id)

    async def login(self, username: str, password: str, client: str) -> IssuedToken:
        limit = self._settings.login_per_client_per_hour
        await self._platform.limiter.enforce(
            f"login:client:{client}", limit=limit, window=HOUR, what="sign-in attempts"
        )
        await self._platform.limiter.enforce(
            f"login:user:{username}", limit=limit, window=HOUR, what="sign-in attempts"
        )
        row = (
            await StaffAccount.select(StaffAccount.id, StaffAccount.password_hash, StaffAccount.active)
            .where(StaffAccount.username == username)
            .first()
        )
        try:
            _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
        except (VerifyMismatchError, InvalidHashError):
            row = None
        if row is None or not row["active"]:
            raise NotAuthorizedException("Wrong username or password.")
        return await self.issue_token("staff", row["id"], timedelta(minutes=self._settings.token_ttl_minutes))

    # -- tokens ----------------------------------------------------------------

    async def issue_token(self, kind: Literal["staff", "citizen"], account_id: Any, ttl: timedelta) -> IssuedToken:
        token = new_secret(TOKEN_PREFIX)
        expires = clock.now() + ttl
        await AccessToken.insert(
            AccessToken(
                id=uuid.uuid4(),
                token_hash=digest(token),
                account_kind=kind,
                account_id=account_id,
                created_at=clock.now(),
                expires_at=expires,
            )
        )
        return IssuedToken(token=token, expires_at=expires, principal_id=f"{kind}:{account_id}")

    async def revoke_token(self, token_id: str) -> bool:
        done = (
            await AccessToken.update({AccessToken.revoked_at: clock.now()})
            .where((AccessToken.id == token_id) & AccessToken.revoked_at.is_null())
            .returning(AccessToken.id)
        )
        self.credentials.clear()
        return bool(done)

    async def revoke_account_tokens(self, account_id: str) -> int:
        done = (
            await AccessToken.update({AccessToken.revoked_at: clock.now()})
            .where((AccessToken.account_id == account_id) & AccessToken.revoked_at.is_null())
            .returning(AccessToken.id)
        )
        self.credentials.clear()
        return len(done)

    async def principal_from_token(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        token_hash = digest(token)
        found, principal = self.credentials.get(token_hash)
        if found:
            return principal
        generation = self.credentials.generation
        row = await self._tokens.load(token_hash)
        principal, expires_at = _token_principal(row) if row is not None else (None, None)
        self.credentials.put(token_hash, principal, expires_at, generation)
        return principal

    async def _fetch_tokens(self, hashes: list[str]) -> dict[str, Any]:
        """Tokens by digest and, for staff, the accounts they belong to: one round trip for many requests."""
        db = self._platform.db
        condition, args = db.any_of("t.token_hash", hashes)
        rows = await db.fetch(_TOKENS_WHERE + condition, *args)
        return {row["token_hash"]: row for row in rows}

    # -- API keys --------------------------------------------------------------

    async def create_api_key(
        self,
        *,
        name: str,
        roles: list[str],
        created_by: str,
        kind: Literal["device", "service"] = "device",
        province: str | None = None,
        site: str | None = None,
        lab: str | None = None,
        expires_at: datetime | None = None,
    ) -> IssuedKey:
        self._platform.roles.validate_assignment(roles, province=province, site=site, lab=lab)
        key = new_secret(KEY_PREFIX)
        key_id = uuid.uuid4()
        await ApiKey.insert(
            ApiKey(
                id=key_id,
                key_hash=digest(key),
                prefix=key[:12],
                name=name,
                kind=kind,
                roles=roles,
                province=province,
                site=site,
                lab=lab,
                created_by=created_by,
                created_at=clock.now(),
                expires_at=expires_at,
            )
        )
        return IssuedKey(id=str(key_id), key=key, prefix=key[:12])

    async def revoke_api_key(self, key_id: str) -> bool:
        done = (
            await ApiKey.update({ApiKey.revoked_at: clock.now()})
            .where((ApiKey.id == key_id) & ApiKey.revoked_at.is_null())
            .returning(ApiKey.id)
        )
        self.credentials.clear()
        return bool(done)

    async def principal_from_api_key(self, key: str) -> Principal | None:
        if not key.startswith(KEY_PREFIX):
            return None
        key_hash = digest(key)
        found, principal = self.credentials.get(key_hash)
        if found:
            return principal
        generation = self.credentials.generation
        row = await self._keys.load(key_hash)
        principal, expires_at = None, None
        if row is not None and row["revoked_at"] is None:
            expires_at = _as_datetime(row["expires_at"]) if row["expires_at"] is not None else None
            if expires_at is None or expires_at > clock.now():
                principal = Principal(
                    id=f"key:{row['id']}",
                    kind=row["kind"],
                    roles=frozenset(_roles(row["roles"])),
                    province=row["province"],
                    site=row["site"],
                    lab=row["lab"],
                    credential_id=str(row["id"]),
                )
        self.credentials.put(key_hash, principal, expires_at, generation)
        return principal

    async def _fetch_keys(self, hashes: list[str]) -> dict[str, Any]:
        db = self._platform.db
        condition, args = db.any_of("key_hash", hashes)
        rows = await db.fetch(_KEYS_WHERE + condition, *args)
        return {row["key_hash"]: row for row in rows}

    # -- citizens: one-time codes ----------------------------------------------

    async def request_otp(self, phone: str, client: str) -> datetime:
        """Send a fresh code to ``phone``; returns when it expires."""
        phone = normalize_phone(phone)
        limiter = self._platform.limiter
        await limiter.enforce(
            f"otp:client:{client}",
            limit=self._settings.otp_per_client_per_hour,
            window=HOUR,
            what="code requests from this address",
        )
        await limiter.enforce(
            f"otp:phone:{phone}",
            limit=self._settings.otp_per_phone_per_hour,
            window=HOUR,
            what="code requests for this phone number",
        )
        code = f"{secrets.randbelow(10**6):06d}"
        now = clock.now()
        expires = now + timedelta(minutes=self._settings.otp_ttl_minutes)
        async with self._platform.db.transaction():
            # A new code replaces any earlier one, so only the latest can be guessed at.
            await OtpChallenge.update({OtpChallenge.consumed_at: now}).where(
                (OtpChallenge.phone == phone) & OtpChallenge.consumed_at.is_null()
            )
            await OtpChallenge.insert(
                OtpChallenge(
                    id=uuid.uuid4(),
                    phone=phone,
                    code_hash=self._code_hash(phone, code),
                    created_at=now,
                    expires_at=expires,
                    attempts=0,
                )
            )
            minutes = self._settings.otp_ttl_minutes
            await self._platform.messages.send(
                Message(
                    channel="sms",
                    recipient=phone,
                    kind="core.otp",
                    body_vi=f"Ma xac thuc phongdich cua ban la {code}. Ma het han sau {minutes} phut. "
                    "Khong chia se ma nay.",
                    body_en=f"Your phongdich code is {code}. It expires in {minutes} minutes. Do not share it.",
                )
            )
        return expires

    async def verify_otp(self, phone: str, code: str, client: str) -> IssuedToken:
        phone = normalize_phone(phone)
        await self._platform.limiter.enforce(
            f"otp-verify:client:{client}",
            limit=self._settings.otp_per_client_per_hour * 5,
            window=HOUR,
            what="code attempts from this address",
        )
        wrong = NotAuthorizedException("The code is wrong or expired. Request a new code.")
        async with self._platform.db.transaction():
            challenge = (
                await OtpChallenge.select()
                .where((OtpChallenge.phone == phone) & OtpChallenge.consumed_at.is_null())
                .order_by(OtpChallenge.created_at, ascending=False)
                .first()
            )
            if challenge is None or clock.as_utc(challenge["expires_at"]) <= clock.now():
                raise wrong
            if challenge["attempts"] >= self._settings.otp_max_attempts:
                raise NotAuthorizedException("Too many wrong codes. Request a new code.")
            await OtpChallenge.update({OtpChallenge.attempts: OtpChallenge.attempts + 1}).where(
                OtpChallenge.id == challenge["id"]
            )
            ok = hmac.compare_digest(challenge["code_hash"], self._code_hash(phone, code))
            if ok:
                await OtpChallenge.update({OtpChallenge.consumed_at: clock.now()}).where(
                    OtpChallenge.id == challenge["id"]
                )
        # The failed attempt must be counted, so the error is raised after the commit.
        if not ok:
            raise wrong
        citizen_id = await self.citizen_for(phone)
        return await self.issue_token(
            "citizen", citizen_id, timedelta(minutes=self._settings.citizen_token_ttl_minutes)
        )

    async def citizen_for(self, phone: str) -> Any:
        """The citizen id for a normalised phone number, creating the citizen on first use."""
        await Citizen.insert(Citizen(id=uuid.uuid4(), phone=phone, created_at=clock.now())).on_conflict(
            target=Citizen.phone, action="DO NOTHING"
        )
        row = await Citizen.select(Citizen.id).where(Citizen.phone == phone).first()
        assert row is not None
        return row["id"]

    def _code_hash(self, phone: str, code: str) -> str:
        key = self._settings.secret_key.encode()
        return hmac.new(key, f"otp:{phone}:{code}".encode(), hashlib.sha256).hexdigest()


def _token_principal(row: Any) -> tuple[Principal | None, datetime | None]:
    """The principal an access-token row stands for (None when revoked, expired or inactive), and its expiry."""
    expires_at = _as_datetime(row["expires_at"])
    if row["revoked_at"] is not None or expires_at <= clock.now():
        return None, None
    if row["account_kind"] == "citizen":
        principal = Principal(
            id=f"citizen:{row['account_id']}",
            kind="citizen",
            roles=frozenset({CITIZEN}),
            subject_id=str(row["account_id"]),
            credential_id=str(row["id"]),
        )
        return principal, expires_at
    if not row["active"]:
        return None, None
    principal = Principal(
        id=f"staff:{row['account_id']}",
        kind="staff",
        roles=frozenset(_roles(row["roles"])),
        province=row["province"],
        site=row["site"],
        lab=row["lab"],
        credential_id=str(row["id"]),
    )
    return principal, expires_at


def _as_datetime(value: Any) -> datetime:
    """Raw queries on SQLite hand timestamps back as ISO text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return clock.as_utc(value)


def _roles(value: Any) -> list[str]:
    if isinstance(value, str):
        return list(msgspec.json.decode(value or "[]"))
    return list(value or [])
