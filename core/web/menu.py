"""Menu entries that plugins contribute for the principal's navigation."""

import msgspec


class MenuItem(msgspec.Struct, frozen=True, kw_only=True):
    label_vi: str
    label_en: str
    href: str
    order: int = 100
