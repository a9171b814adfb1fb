"""Administration: staff accounts, API keys, the audit trail, and province plugin switches."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec
from litestar import delete, get, post, put
from litestar.params import FromPath, JSONBody, Parameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from core.access import Resource
from core.audit import AuditRecord
from core.errors import InvalidInput, NotFound
from core.fields import ProvinceCode, SiteId, Username, pattern
from core.identity import IssuedKey
from core.platform import Platform
from core.principal import NATIONAL_ADMIN, Principal
from core.tables import ApiKey
from core.web.guard import PlatformDep, PrincipalDep

ScopeId = SiteId
RoleName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=40, pattern=pattern(r"^[a-z_]+$", "lower-case letters and _ only"))
]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class StaffBody(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    password: Annotated[str, msgspec.Meta(min_length=12, max_length=256)]
    display_name: Text
    roles: Annotated[list[RoleName], msgspec.Meta(min_length=1, max_length=10)]
    province: ProvinceCode | None = None
    site: ScopeId | None = None
    lab: ScopeId | None = None


class StaffCreated(msgspec.Struct):
    id: str
    username: str


class ApiKeyBody(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    roles: Annotated[list[RoleName], msgspec.Meta(min_length=1, max_length=10)]
    kind: Literal["device", "service"] = "device"
    province: ProvinceCode | None = None
    site: ScopeId | None = None
    lab: ScopeId | None = None


class ProvincePluginBody(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool


class ProvincePluginView(msgspec.Struct):
    name: str
    province: str
    enabled: bool


@post("/api/admin/staff", opt={"action": "core.staff.manage"}, tags=["admin"], summary="Create a staff account")
async def create_staff(data: JSONBody[StaffBody], principal: PrincipalDep, platform: PlatformDep) -> StaffCreated:
    await _check_delegation(platform, principal, "core.staff.manage", data.roles, data.province)
    account_id = await platform.identity.create_staff(
        username=data.username,
        password=data.password,
        display_name=data.display_name,
        roles=list(data.roles),
        province=data.province,
        site=data.site,
        lab=data.lab,
    )
    return StaffCreated(id=account_id, username=data.username)


@post("/api/admin/api-keys", opt={"action": "core.apikey.manage"}, tags=["admin"], summary="Issue an API key")
async def create_api_key(data: JSONBody[ApiKeyBody], principal: PrincipalDep, platform: PlatformDep) -> IssuedKey:
    await _check_delegation(platform, principal, "core.apikey.manage", data.roles, data.province)
    return await platform.identity.create_api_key(
        name=data.name,
        roles=list(data.roles),
        kind=data.kind,
        created_by=principal.id,
        province=data.province,
        site=data.site,
        lab=data.lab,
    )


@delete(
    "/api/admin/api-keys/{key_id:uuid}",
    opt={"action": "core.apikey.manage"},
    status_code=HTTP_204_NO_CONTENT,
    tags=["admin"],
    summary="Revoke an API key",
)
async def revoke_api_key(key_id: FromPath[UUID], principal: PrincipalDep, platform: PlatformDep) -> None:
    row = await ApiKey.select(ApiKey.province).where(ApiKey.id == key_id).first()
    if row is None:
        raise NotFound("key_id: no such API key")
    await platform.access.check(
        principal, "core.apikey.manage", Resource(kind="api_key", id=str(key_id), province=row["province"])
    )
    await platform.identity.revoke_api_key(str(key_id))


@get(
    "/api/admin/audit",
    opt={"action": "core.audit.read", "purpose": "core.transparency"},
    tags=["admin"],
    summary="Search the audit trail by subject (this search is itself audited)",
)
async def search_audit(
    principal: PrincipalDep,
    platform: PlatformDep,
    subject_id: Annotated[str, Parameter(min_length=1, max_length=64)],
    limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
) -> list[AuditRecord]:
    await platform.audit.record(
        principal, "core.audit.read", Resource(kind="audit_log", subject_id=subject_id), purpose="core.transparency"
    )
    return await platform.audit.for_subject(subject_id, limit=limit)


@get(
    "/api/admin/province-plugins",
    opt={"action": "core.province_plugins.manage"},
    tags=["admin"],
    summary="Province plugins available to my province, and whether each is on",
)
async def list_province_plugins(principal: PrincipalDep, platform: PlatformDep) -> list[ProvincePluginView]:
    province = None if NATIONAL_ADMIN in principal.roles else principal.province
    return [
        ProvincePluginView(
            name=name, province=platform.plugins[name].province or "", enabled=name not in platform.hooks.disabled
        )
        for name in platform.hooks.province_plugins(province)
    ]


@put(
    "/api/admin/province-plugins/{name:str}",
    opt={"action": "core.province_plugins.manage"},
    tags=["admin"],
    summary="Switch a province plugin on or off in its province (audited, no restart)",
)
async def switch_province_plugin(
    name: FromPath[str], data: JSONBody[ProvincePluginBody], principal: PrincipalDep, platform: PlatformDep
) -> ProvincePluginView:
    info = platform.plugins.get(name)
    if info is None or info.province is None:
        raise NotFound(f"name: no province plugin named {name!r} is installed")
    await platform.access.check(
        principal, "core.province_plugins.manage", Resource(kind="province_plugin", id=name, province=info.province)
    )
    await platform.set_province_plugin(name, enabled=data.enabled, by=principal)
    return ProvincePluginView(name=name, province=info.province, enabled=data.enabled)


async def _check_delegation(
    platform: Platform, principal: Principal, action: str, roles: list[str], province: str | None
) -> None:
    """Admins act within their province, and only national admins create national admins."""
    if NATIONAL_ADMIN in roles and NATIONAL_ADMIN not in principal.roles:
        raise InvalidInput("roles: only a national admin can grant national_admin")
    await platform.access.check(principal, action, Resource(kind="staff", province=province))
    if province is None and NATIONAL_ADMIN not in principal.roles:
        raise InvalidInput("province: give the province code of the account")


ROUTES = [create_staff, create_api_key, revoke_api_key, search_audit, list_province_plugins, switch_province_plugin]
