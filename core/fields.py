"""Field types shared by request bodies, and patterns that say what they mean.

msgspec refuses a string that does not match a field's pattern with the
regex itself ("Expected `str` matching regex '^[0-9]{2}$'"): exact, but not
what a client developer, or the person whose app shows it, can act on. A
pattern made with :func:`pattern` carries a sentence instead, and the app's
error handler puts that sentence in the 400 in place of the regex (the
field's key and source stay as they are)::

    Code = Annotated[str, msgspec.Meta(pattern=pattern(r"^[A-Z]{3}$", "three capital letters"))]

The sentence belongs to the regex, wherever it is used: a plugin that
declares the same regex again gets the first sentence given for it.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# msgspec's message for a string that does not match, by its regex's repr; the sentence to show instead.
_MEANINGS: dict[str, str] = {}


def pattern(regex: str, means: str) -> str:
    """``regex``, for ``msgspec.Meta(pattern=...)``; a value that does not match is told ``means``."""
    _MEANINGS.setdefault(f"Expected `str` matching regex {regex!r}", means)
    return regex


def explained(errors: Any) -> Any:
    """Litestar's validation errors (``[{"message", "key", "source"}]``) with patterns' regexes put in words."""
    if not isinstance(errors, list):
        return errors
    return [
        {**error, "message": _MEANINGS.get(error["message"], error["message"])}
        if isinstance(error, dict) and isinstance(error.get("message"), str)
        else error
        for error in errors
    ]


# Names and free text that end up in exports: the first character may not be one a spreadsheet would run
# as a formula (= + - @, their full-width forms, a space, tab or line break), and no control characters.
SAFE_TEXT = pattern(
    r"^[^=+\-@\s\x00-\x1f\x7f\uff1d\uff0b\uff0d\uff20][^\x00-\x1f\x7f]*$",
    "must not start with = + - @ or a space (a spreadsheet would run it as a formula) "
    "and must not contain control characters",
)
Phone = Annotated[
    str,
    msgspec.Meta(
        min_length=9,
        max_length=20,
        pattern=pattern(
            r"^\+?[0-9 .\-()]+$",
            "a phone number: digits, with spaces, dots, dashes or brackets between them and + first if need be "
            "(0912345678, +84 912 345 678)",
        ),
    ),
]
ProvinceCode = Annotated[
    str, msgspec.Meta(pattern=pattern(r"^[0-9]{2}$", "a province code: two digits (01 Hà Nội, 79 Hồ Chí Minh City)"))
]
Username = Annotated[
    str,
    msgspec.Meta(
        min_length=3, max_length=64, pattern=pattern(r"^[A-Za-z0-9_.@-]+$", "letters, digits and _ . @ - only")
    ),
]
SixDigits = Annotated[str, msgspec.Meta(pattern=pattern(r"^[0-9]{6}$", "six digits"))]
# A site (a clinic, a venue's operator, a vaccination point) or any other scope a principal can be bound to.
SiteId = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=64, pattern=pattern(r"^[A-Za-z0-9_.:-]+$", "letters, digits and _ . : - only")
    ),
]
