"""An extension plugin reached through an entry point (see ``test_plugins``)."""

from __future__ import annotations

from core import MenuItem, Principal, hookimpl


@hookimpl
def register_menu_items(principal: Principal) -> list[MenuItem]:
    return [MenuItem(label_vi="Mở rộng", label_en="Extension", href="/extension")]
