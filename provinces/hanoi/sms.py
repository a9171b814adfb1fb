"""Hà Nội's SMS channel: messages sent on the city's behalf go out under its own brandname.

The core routes a message to this channel only when it is sent for province
01 (a booking at a Hà Nội site, a result from a Hà Nội lab...). SMS are
queued in ``hanoi_sms`` for the carrier's link; other channels (e-mail, app)
are left to the next channel, in the end the core's outbox.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import msgspec
from piccolo.query.functions.aggregate import Count, Sum

from core import Message, Receipt, clock
from provinces.hanoi.tables import SmsQueue

if TYPE_CHECKING:
    from core.platform import Platform

CHANNEL = "hanoi-sms"
# GSM 03.38 basic characters: a message of these alone packs 160 to an SMS, anything else 70 (UCS-2).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


class SmsSummary(msgspec.Struct, frozen=True):
    """How many SMS the gateway holds, by kind and status: counts only, never a number or text."""

    kind: str
    status: str
    messages: int
    segments: int


async def take(message: Message, platform: Platform) -> Receipt | None:
    if message.channel != "sms":
        return None
    config = platform.plugin_config("hanoi")
    # Vietnamese SMS go out without diacritics, as the national plugins write body_vi.
    body = message.body_vi
    message_id = uuid.uuid4()
    await SmsQueue.insert(
        SmsQueue(
            id=message_id,
            brandname=config.sms_brandname,
            recipient=message.recipient,
            kind=message.kind,
            body=body,
            segments=segments(body),
            status="queued",
            created_at=clock.now(),
        )
    )
    return Receipt(channel=CHANNEL, id=str(message_id), status="queued")


def segments(text: str) -> int:
    """How many SMS a text takes: 160 (or 153 when split) GSM characters, else 70 (or 67) UCS-2."""
    if all(ch in GSM_BASIC for ch in text):
        single, part = 160, 153
    else:
        single, part = 70, 67
    if len(text) <= single:
        return 1
    return -(-len(text) // part)


async def summary() -> list[SmsSummary]:
    rows = await (
        SmsQueue.select(
            SmsQueue.kind,
            SmsQueue.status,
            Count(SmsQueue.id, alias="messages"),
            Sum(SmsQueue.segments, alias="segments"),
        )
        .group_by(SmsQueue.kind, SmsQueue.status)
        .order_by(SmsQueue.kind, SmsQueue.status)
    )
    return [
        SmsSummary(kind=row["kind"], status=row["status"], messages=int(row["messages"]), segments=int(row["segments"]))
        for row in rows
    ]
