"""The signed-in principal's own view: who they are, their consents, who read their data."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get, put
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, JSONBody, Parameter

from core.audit import AuditRecord
from core.consent import ConsentState, UnknownPurpose
from core.errors import NotFound
from core.web.guard import PlatformDep, PrincipalDep
from core.web.menu import MenuItem


class MeView(msgspec.Struct):
    id: str
    kind: str
    roles: list[str]
    province: str | None
    site: str | None
    lab: str | None


class ConsentBody(msgspec.Struct, forbid_unknown_fields=True):
    granted: bool


@get("/api/me", opt={"action": "core.me.read"}, tags=["me"], summary="Who am I")
async def me(principal: PrincipalDep) -> MeView:
    return MeView(
        id=principal.id,
        kind=principal.kind,
        roles=sorted(principal.roles),
        province=principal.province,
        site=principal.site,
        lab=principal.lab,
    )


@get(
    "/api/me/access-log",
    opt={"action": "core.audit.read_own", "purpose": "core.transparency"},
    tags=["me"],
    summary="Who accessed my personal data, newest first",
)
async def access_log(
    principal: PrincipalDep,
    platform: PlatformDep,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    # Audit ids are 64-bit; a larger number would overflow the database driver (a 500).
    before_id: Annotated[int | None, Parameter(ge=1, le=2**63 - 1)] = None,
) -> list[AuditRecord]:
    if principal.subject_id is None:
        raise PermissionDeniedException("Only a person can list access to their own data.")
    return await platform.audit.for_subject(principal.subject_id, limit=limit, before_id=before_id)


@get("/api/me/consents", opt={"action": "core.consent.manage"}, tags=["me"], summary="My consents, per purpose")
async def consents(principal: PrincipalDep, platform: PlatformDep) -> list[ConsentState]:
    assert principal.subject_id is not None
    return await platform.consent.states(principal.subject_id)


@put(
    "/api/me/consents/{purpose:str}",
    opt={"action": "core.consent.manage"},
    tags=["me"],
    summary="Grant or withdraw consent for a purpose (takes effect at once)",
)
async def set_consent(
    purpose: FromPath[str], data: JSONBody[ConsentBody], principal: PrincipalDep, platform: PlatformDep
) -> ConsentState:
    assert principal.subject_id is not None
    try:
        return await platform.consent.record(principal.subject_id, purpose, granted=data.granted, by=principal.id)
    except UnknownPurpose:
        raise NotFound(f"purpose: no purpose named {purpose!r}") from None


@get("/api/me/menu", opt={"action": "core.me.read"}, tags=["me"], summary="Menu entries for me")
async def menu(principal: PrincipalDep, platform: PlatformDep) -> list[MenuItem]:
    items = await platform.hooks.collect("register_menu_items", province=principal.province, principal=principal)
    flat = [item for group in items for item in group]
    return sorted(flat, key=lambda item: (item.order, item.label_en))


ROUTES = [me, access_log, consents, set_consent, menu]
