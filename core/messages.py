"""Outgoing messages (SMS, e-mail, in-app notices) through the ``send_message`` hook."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:
    from core.platform import Platform

Channel = Literal["sms", "email", "app"]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A message to one recipient, in Vietnamese and English.

    ``kind`` names what it is (``core.otp``, ``testing.result``...) so that
    gateways and tests can tell messages apart. ``province`` routes it to
    that province's channel plugins, if any.
    """

    channel: Channel
    recipient: str
    kind: str
    body_vi: str
    body_en: str
    province: str | None = None


class Receipt(msgspec.Struct, frozen=True, kw_only=True):
    """Proof that a channel took a message: which channel, its id there, and status."""

    channel: str
    id: str
    status: str = "queued"


class Messenger:
    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    async def send(self, message: Message) -> Receipt:
        receipt = await self._platform.hooks.first(
            "send_message", province=message.province, message=message, platform=self._platform
        )
        if not isinstance(receipt, Receipt):
            raise RuntimeError(f"no channel took message {message.kind!r}")
        return receipt
