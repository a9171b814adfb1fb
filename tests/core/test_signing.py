"""Signed tokens: contexts keep uses apart, expiry, key rotation by version, and tampering refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import clock
from core.settings import load_settings
from core.signing import ExpiredToken, InvalidToken, Signer, key_ring
from core.testing import TEST_SECRET

OLD_KEY = "an-older-secret-key-that-is-long-enough-000"


def signer(context: str = "test.labels", **settings) -> Signer:
    values = {"secret_key": TEST_SECRET, **settings}
    return Signer.from_settings(load_settings(env={}, **values), context)


def test_round_trip_and_url_safety():
    token = signer().sign({"s": "sample-1", "n": 3}, ttl=timedelta(hours=1))
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert signer().verify(token) == {"s": "sample-1", "n": 3}


def test_context_separates_uses():
    token = signer("checkin.venue").sign({"c": "x"}, ttl=None)
    with pytest.raises(InvalidToken, match="signature"):
        signer("checkin.personal").verify(token)


@pytest.mark.parametrize("position", [0, 2, 5, -1, -5])
def test_any_altered_character_is_refused(position):
    token = signer().sign({"s": "sample-1"}, ttl=None)
    chars = list(token)
    index = position if position >= 0 else len(chars) + position
    if chars[index] == ".":
        index += 1
    chars[index] = "A" if chars[index] != "A" else "B"
    with pytest.raises(InvalidToken):
        signer().verify("".join(chars))


@pytest.mark.parametrize(
    "bad", ["", "1.2", "x.abc.def", "1.e30." + "A" * 43 + "\n", "1." + "A" * 5000 + "." + "A" * 43]
)
def test_malformed_tokens_are_refused_naming_the_field(bad):
    with pytest.raises(InvalidToken, match=r"^label:"):
        signer().verify(bad, field="label")


def test_expiry(monkeypatch):
    token = signer().sign({"s": 1}, ttl=timedelta(minutes=5))
    later = clock.now() + timedelta(minutes=6)
    monkeypatch.setattr(clock, "now", lambda: later)
    with pytest.raises(ExpiredToken, match="expired"):
        signer().verify(token)


def test_signer_owns_the_expiry_claim():
    with pytest.raises(ValueError, match="exp"):
        signer().sign({"exp": 1}, ttl=None)


def test_rotation_keeps_old_tokens_until_their_key_is_dropped():
    old = Signer.from_settings(load_settings(env={}, secret_key=OLD_KEY, secret_key_version=1), "t").sign(
        {"v": 1}, ttl=None
    )
    rotated = {"secret_key": TEST_SECRET, "secret_key_version": 2, "previous_secret_keys": [f"1:{OLD_KEY}"]}
    assert signer("t", **rotated).verify(old) == {"v": 1}
    fresh = signer("t", **rotated).sign({"v": 2}, ttl=None)
    assert fresh.startswith("2.")
    with pytest.raises(InvalidToken, match="no longer accepted"):
        signer("t", secret_key_version=2).verify(old)
    assert key_ring(load_settings(env={}, **rotated)) == {1: OLD_KEY, 2: TEST_SECRET}


def test_previous_keys_come_from_the_environment_and_are_redacted():
    settings = load_settings(
        env={"PHONGDICH_SECRET_KEY": TEST_SECRET, "PHONGDICH_PREVIOUS_SECRET_KEYS": f"1:{OLD_KEY}, 3:{OLD_KEY}x"},
        secret_key_version=4,
    )
    assert sorted(key_ring(settings)) == [1, 3, 4]
    assert OLD_KEY not in repr(settings)
