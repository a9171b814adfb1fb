"""The default message channel: the durable ``message_outbox`` table.

It runs last, so any gateway plugin (SMS, e-mail) answers first; when none
is configured or none takes the message, it is kept here for the CLI
(``phongdich messages list``), tests and a later gateway.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from core import clock
from core.markers import hookimpl
from core.messages import Message, Receipt
from core.tables import MessageOutbox

if TYPE_CHECKING:
    from core.platform import Platform


@hookimpl(trylast=True)
async def send_message(message: Message, platform: Platform) -> Receipt:
    message_id = uuid.uuid4()
    await MessageOutbox.insert(
        MessageOutbox(
            id=message_id,
            channel=message.channel,
            recipient=message.recipient,
            kind=message.kind,
            body_vi=message.body_vi,
            body_en=message.body_en,
            province=message.province,
            created_at=clock.now(),
            status="queued",
        )
    )
    return Receipt(channel="outbox", id=str(message_id), status="queued")
