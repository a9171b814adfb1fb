"""Sample and pool labels, result codes and pre-registration codes: random, typeable, checked.

Labels carry 128 random bits (a tube label must not be guessable or
collide), written in Crockford base32 so a QR code holds them in its
compact alphanumeric mode and a person can read them aloud. Result codes
are shorter (60 bits) because people type them; the second factor, the
per-code attempt limit and the per-address rate budget protect them. Only
keyed digests of result codes are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Literal

from core import InvalidInput

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
LABEL_BITS = 128
LABEL_DIGITS = 26  # ceil(128 / 5)
CODE_DIGITS = 12  # 60 bits
SAMPLE_PREFIX = "S-"
POOL_PREFIX = "P-"
LabelKind = Literal["sample", "pool"]

_LABEL = re.compile(rf"^([SP])-([{ALPHABET}]{{{LABEL_DIGITS}}})$")
_TYPO = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_label(kind: LabelKind) -> str:
    """A fresh label: ``S-`` or ``P-`` and 26 Crockford digits from 128 random bits."""
    prefix = SAMPLE_PREFIX if kind == "sample" else POOL_PREFIX
    return prefix + _encode(secrets.randbits(LABEL_BITS), LABEL_DIGITS)


def parse_label(raw: str, field: str = "label") -> tuple[LabelKind, str]:
    """What a scanned or typed label is (sample or pool) and its canonical form; 400 when malformed."""
    if _LABEL.match(raw):  # already canonical, as in uploads: skip the clean-up
        return ("sample" if raw[0] == "S" else "pool"), raw
    cleaned = (raw or "").strip().upper().replace(" ", "")
    match = _LABEL.match(cleaned)
    if match is None:
        raise InvalidInput(
            f"{field}: {raw[:40]!r} is not a phongdich label (S- or P- followed by {LABEL_DIGITS} letters and digits)"
        )
    return ("sample" if match.group(1) == "S" else "pool"), cleaned


def new_code() -> str:
    """A result or registration code for people to type: 12 digits shown as ``XXXX-XXXX-XXXX``."""
    raw = _encode(secrets.randbits(CODE_DIGITS * 5), CODE_DIGITS)
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalize_code(raw: str) -> str | None:
    """The canonical code from what a person typed (any case, dashes, O for 0...), or None."""
    cleaned = re.sub(r"[\s\-]", "", raw or "").upper().translate(_TYPO)
    if len(cleaned) != CODE_DIGITS or any(char not in ALPHABET for char in cleaned):
        return None
    return cleaned


def code_digest(secret_key: str, purpose: str, code: str) -> str:
    """The keyed digest stored instead of a code (``purpose`` keeps kinds of code apart)."""
    return hmac.new(secret_key.encode(), f"testing:{purpose}:{code}".encode(), hashlib.sha256).hexdigest()


def _encode(value: int, digits: int) -> str:
    chars = []
    for _ in range(digits):
        value, index = divmod(value, 32)
        chars.append(ALPHABET[index])
    return "".join(reversed(chars))
