"""Hà Nội's own tables."""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class SmsQueue(Table, tablename="hanoi_sms"):
    """SMS taken by the city's brandname gateway: the carrier's link reads ``queued`` rows and sends them."""

    id = UUID(primary_key=True)
    brandname = Varchar(length=11)
    recipient = Varchar(length=20, index=True)
    kind = Varchar(length=60, index=True)
    body = Text()
    segments = Integer()
    status = Varchar(length=12, default="queued", index=True)
    created_at = Timestamptz()


TABLES = (SmsQueue,)
