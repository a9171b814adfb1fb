"""The city's API, under ``/api/hcmc``."""

from __future__ import annotations

from typing import Annotated

from litestar import get, put
from litestar.params import JSONBody, Parameter

from core.web.guard import PlatformDep, PrincipalDep
from provinces.hcmc import zones
from provinces.hcmc.schemas import AREA_PATTERN, ZoneBody, ZoneView

TAGS = ["hcmc"]
AreaPath = Annotated[str, Parameter(pattern=AREA_PATTERN)]


@get("/zones", opt={"public": True}, tags=TAGS, summary="The city's risk-zone map (published, no personal data)")
async def list_zones(platform: PlatformDep) -> list[ZoneView]:
    return await zones.zone_views(platform)


@put(
    "/zones/{area:str}",
    opt={"action": zones.MANAGE_ZONES},
    tags=TAGS,
    summary="Grade a district (3-digit code) or ward (5-digit code) green, yellow, orange or red",
)
async def set_zone(
    area: AreaPath, data: JSONBody[ZoneBody], principal: PrincipalDep, platform: PlatformDep
) -> ZoneView:
    return await zones.set_level(platform, principal, area, data)


ROUTES = [list_zones, set_zone]
