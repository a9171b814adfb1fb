"""Request and response bodies of the city's API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.fields import pattern

Level = Literal["green", "yellow", "orange", "red"]
# A district (3 digits) or a ward (5 digits), by the General Statistics Office's codes.
AREA_PATTERN = r"^([0-9]{3}|[0-9]{5})$"
NOTE_PATTERN = pattern(r"^[^\x00-\x1f\x7f]*$", "must not contain control characters")


class ZoneBody(msgspec.Struct, forbid_unknown_fields=True):
    level: Level
    # Why: the steering committee's decision, e.g. "Quyết định 3052/QĐ-UBND".
    note: Annotated[str, msgspec.Meta(max_length=200, pattern=NOTE_PATTERN)] = ""


class ZoneView(msgspec.Struct, frozen=True):
    area: str
    kind: Literal["district", "ward"]
    level: Level
    weight: float
    note: str
    set_at: datetime
