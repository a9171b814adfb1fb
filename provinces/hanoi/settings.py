"""Hà Nội's settings section, ``[plugin.hanoi]`` (or ``PHONGDICH_PLUGIN__HANOI__<FIELD>``).

Some of the national plugins' hooks (the declaration questions) get no
platform, so the settings are also kept per database at start-up: a hook
reads the settings of the platform whose database is active, the same rule
by which Piccolo's tables find their database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated
from weakref import WeakKeyDictionary

import msgspec

from core import storage

if TYPE_CHECKING:
    from core.platform import Platform


class HanoiSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # During social distancing (Directive 16) everyone out of home needed a travel permit.
    travel_permit_required: bool = False
    # The sender name the city's SMS contract shows; carriers allow 11 letters, digits or spaces at most.
    sms_brandname: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,10}$")] = "SYT HANOI"


_by_database: WeakKeyDictionary[storage.Database, HanoiSettings] = WeakKeyDictionary()


def remember(platform: Platform) -> None:
    _by_database[platform.db] = platform.plugin_config("hanoi")


def current() -> HanoiSettings:
    """The settings of the platform whose database is active (defaults before any start-up)."""
    return _by_database.get(storage.active()) or HanoiSettings()
