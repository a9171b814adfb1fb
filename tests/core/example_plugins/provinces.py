"""A province extension plugin, as a province's IT team would write one.

It votes on a local action, adds a menu entry and sends its province's SMS
through its own gateway, and records every call so that tests can prove it
never ran on behalf of another province.
"""

from __future__ import annotations

from typing import Any

from core import MenuItem, Message, Principal, Receipt, Resource, Vote, hookimpl

LOCAL_ACTION = "example.local.act"
# Menu entries of these example plugins; national plugins add entries of their own.
PROVINCE_HREFS = frozenset({"/hanoi", "/saigon"})


class ProvinceExtension:
    """The extension of one province (``PROVINCE`` is its two-digit code)."""

    def __init__(self, code: str, slug: str) -> None:
        self.PROVINCE = code
        self.slug = slug
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def authorize(self, principal: Principal, action: str, resource: Resource) -> Vote | None:
        self.calls.append(("authorize", resource.province))
        if action == LOCAL_ACTION:
            return Vote.allow(f"{self.slug} allows its local action")
        return None

    @hookimpl
    def register_menu_items(self, principal: Principal) -> list[MenuItem]:
        self.calls.append(("register_menu_items", principal.province))
        return [MenuItem(label_vi=f"Tiện ích {self.slug}", label_en=f"{self.slug} tools", href=f"/{self.slug}")]

    @hookimpl
    def send_message(self, message: Message, platform: Any) -> Receipt:
        self.calls.append(("send_message", message.province))
        return Receipt(channel=f"{self.slug}-sms", id=f"{self.slug}-1", status="sent")


def hanoi() -> ProvinceExtension:
    return ProvinceExtension("01", "hanoi")


def saigon() -> ProvinceExtension:
    return ProvinceExtension("79", "saigon")
