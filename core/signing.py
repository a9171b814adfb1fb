"""Signed, URL-safe, expiring tokens: venue QR codes, personal QR codes, sample labels.

A token is ``<key version>.<claims>.<mac>``: the claims are a JSON object in
unpadded URL-safe base64, and the MAC is HMAC-SHA256 over the version and
the claims. The MAC key is derived from ``settings.secret_key`` and a
*context* string (``checkin.venue``, ``checkin.personal``...), so a token
made for one use never verifies for another.

Key rotation: ``settings.secret_key`` signs, under version
``settings.secret_key_version``; the keys it replaced stay listed in
``settings.previous_secret_keys`` (``"VERSION:KEY"``) so that tokens signed
before the rotation keep verifying until those keys are dropped.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from core import clock
from core.errors import InvalidInput

if TYPE_CHECKING:
    from core.settings import Settings

EXPIRES = "exp"  # the one claim name the signer owns
_SHAPE = re.compile(r"[0-9]{1,6}\.[A-Za-z0-9_-]{2,4000}\.[A-Za-z0-9_-]{43}")
_DERIVATION_LABEL = b"phongdich.signing:"


class InvalidToken(InvalidInput):
    """The token is malformed, altered, signed with an unknown key, or for another context."""


class ExpiredToken(InvalidToken):
    """The token's signature is good but its time is up."""


class Signer:
    """Signs and verifies tokens for one context with a ring of versioned keys."""

    def __init__(self, context: str, keys: Mapping[int, str], current: int) -> None:
        if not context:
            raise ValueError("a signing context is required")
        if current not in keys:
            raise ValueError(f"signing key version {current} is not in the key ring")
        self.context = context
        self.current = current
        self._keys = {version: _derive(secret, context) for version, secret in keys.items()}

    @classmethod
    def from_settings(cls, settings: Settings, context: str) -> Signer:
        """The signer for ``context`` with the deployment's current and previous keys (kept, not re-derived)."""
        ring = key_ring(settings)
        cache_key = (context, settings.secret_key_version, tuple(sorted(ring.items())))
        signer = _SIGNERS.get(cache_key)
        if signer is None:
            if len(_SIGNERS) > 256:
                _SIGNERS.clear()
            signer = _SIGNERS[cache_key] = cls(context, ring, settings.secret_key_version)
        return signer

    def sign(self, claims: Mapping[str, Any], *, ttl: timedelta | None) -> str:
        """A token carrying ``claims``; it expires after ``ttl`` (``None``: only when revoked elsewhere)."""
        if EXPIRES in claims:
            raise ValueError(f"claim {EXPIRES!r} is set by the signer")
        body = dict(claims)
        if ttl is not None:
            body[EXPIRES] = int((clock.now() + ttl).timestamp())
        encoded = _b64encode(msgspec.json.encode(body))
        signed = f"{self.current}.{encoded}"
        return f"{signed}.{_b64encode(self._mac(self.current, signed))}"

    def verify(self, token: str, *, field: str = "token") -> dict[str, Any]:
        """The claims of a genuine, unexpired token; ``InvalidToken`` naming ``field`` otherwise."""
        if not isinstance(token, str) or not _SHAPE.fullmatch(token):
            raise InvalidToken(f"{field}: not a phongdich code (malformed)")
        parts = token.split(".")
        version = int(parts[0])
        if version not in self._keys:
            raise InvalidToken(f"{field}: signed with a key that is no longer accepted")
        # Compared as text, so that no second spelling of the same MAC is accepted.
        expected = _b64encode(self._mac(version, f"{parts[0]}.{parts[1]}"))
        if not hmac.compare_digest(expected, parts[2]):
            raise InvalidToken(f"{field}: the signature does not match (altered, forged, or for another use)")
        try:
            claims = msgspec.json.decode(_b64decode(parts[1]))
        except (ValueError, msgspec.DecodeError):
            raise InvalidToken(f"{field}: not a phongdich code (malformed)") from None
        if not isinstance(claims, dict):
            raise InvalidToken(f"{field}: not a phongdich code (malformed)")
        expires = claims.pop(EXPIRES, None)
        if expires is not None and clock.now().timestamp() >= expires:
            raise ExpiredToken(f"{field}: this code has expired; ask for a fresh one")
        return claims

    def _mac(self, version: int, signed: str) -> bytes:
        return hmac.digest(self._keys[version], signed.encode(), "sha256")  # one-shot, in C


_SIGNERS: dict[tuple[str, int, tuple[tuple[int, str], ...]], Signer] = {}


def key_ring(settings: Settings) -> dict[int, str]:
    """Every accepted secret by version: the current key and the previous ones."""
    ring: dict[int, str] = {}
    for entry in settings.previous_secret_keys:
        version, _, secret = entry.partition(":")
        ring[int(version)] = secret
    ring[settings.secret_key_version] = settings.secret_key
    return ring


def _derive(secret: str, context: str) -> bytes:
    # One derived key per context: a venue code can never pass as a personal code.
    return hmac.digest(secret.encode(), _DERIVATION_LABEL + context.encode(), "sha256")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64") from exc
