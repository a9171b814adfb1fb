"""Hà Nội's settings section, ``[plugin.hanoi]`` (or ``PHONGDICH_PLUGIN__HANOI__<FIELD>``).

Hooks read them from the platform they are given:
``platform.plugin_config("hanoi")``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class HanoiSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # During social distancing (Directive 16) everyone out of home needed a travel permit.
    travel_permit_required: bool = False
    # The sender name the city's SMS contract shows; carriers allow 11 letters, digits or spaces at most.
    sms_brandname: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,10}$")] = "SYT HANOI"
