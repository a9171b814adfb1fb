"""Hà Nội's API, under ``/api/hanoi``."""

from __future__ import annotations

from litestar import get

from core import Resource
from core.web.guard import PlatformDep, PrincipalDep
from provinces.hanoi import PROVINCE
from provinces.hanoi.sms import SmsSummary, summary

READ_SMS = "hanoi.sms.read"


@get(
    "/sms/summary",
    opt={"action": READ_SMS},
    tags=["hanoi"],
    summary="SMS the city's brandname gateway holds, counted by kind and status",
)
async def sms_summary(principal: PrincipalDep, platform: PlatformDep) -> list[SmsSummary]:
    await platform.access.check(principal, READ_SMS, Resource(kind="hanoi_sms", province=PROVINCE))
    return await summary()


ROUTES = [sms_summary]
