"""The one guard: identity, then access, then consent, from what the route declares.

A route states in ``opt`` the ``action`` it performs and the ``purpose`` it
serves, or ``public=True``. The guard identifies the principal (once per
request), asks the ``authorize`` votes about the route (its province comes
from a ``province`` path parameter, if any), and for citizens checks consent
for the purpose. Object-level checks happen in the handler with
``platform.access.check`` once the record is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException

from core.access import Resource
from core.observability import bind_log_context
from core.platform import Platform
from core.plugins import HookFailed
from core.principal import Principal
from core.web.nul_guard import nul_checked, refuse_nul_characters

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler

_UNSET = object()
OPENAPI_PATH = "/schema"


async def platform_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    scope = connection.scope
    if not nul_checked(scope):  # the lean path looked at the whole request already
        await refuse_nul_characters(connection, handler)
    platform: Platform = scope["litestar_app"].state.platform
    opt = handler.opt
    plugin = opt.get("plugin", "core")
    province = scope.get("path_params", {}).get("province")
    bind_log_context(plugin=plugin, province=province)
    if platform.plugin_state_due():
        await platform.refresh_plugin_state()
    if plugin in platform.hooks.disabled:
        raise NotFoundException(f"The {plugin} plugin is switched off in its province.")
    public = bool(opt.get("public")) or connection.scope.get("method") == "OPTIONS"
    try:
        principal = await current_principal(connection)
    except NotAuthorizedException:
        # A failing identity provider must not take down health checks and sign-in.
        if not public:
            raise
        principal = None
    if principal is not None:
        bind_log_context(principal=principal.id)
        if province is None and principal.province:
            bind_log_context(province=principal.province)
    if public:
        return
    action = opt.get("action")
    if action is None:
        # Only the OpenAPI routes get here (create_app refuses any other route
        # without an action); everything else fails closed.
        if connection.scope["path"].startswith(OPENAPI_PATH):
            return
        raise PermissionDeniedException("This route declares no action.")
    await platform.access.check(principal, action, Resource(kind="route", province=province))
    purpose = opt.get("purpose")
    if purpose and principal is not None and principal.kind == "citizen" and principal.subject_id:
        await platform.consent.require(principal.subject_id, purpose)


async def current_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The request's principal, identified once and kept on the connection's state."""
    # The scope's state dict itself: ``connection.state`` builds a State object on every access.
    state = connection.scope.setdefault("state", {})
    cached = state.get("principal", _UNSET)
    if cached is not _UNSET:
        return cached
    platform: Platform = connection.scope["litestar_app"].state.platform
    try:
        principal = await platform.identify(connection)
    except HookFailed as exc:
        raise NotAuthorizedException("Authentication failed; try again or sign in anew.") from exc
    state["principal"] = principal
    return principal


async def provide_principal(request: Request[Any, Any, Any], platform: PlatformDep) -> Principal:
    """Dependency ``principal``: the authenticated principal (the guard has made sure of it).

    It takes ``platform`` only so that Litestar resolves the two one after the
    other: dependencies resolved side by side cost a task group per request.
    """
    principal = await current_principal(request)
    if principal is None:
        raise NotAuthorizedException("Authentication required: send a bearer token or API key.")
    return principal


def provide_platform(request: Request[Any, Any, Any]) -> Platform:
    """Dependency ``platform``: the running platform."""
    platform: Platform = request.app.state.platform
    return platform


# What handlers write: ``async def handler(principal: PrincipalDep, platform: PlatformDep)``.
PrincipalDep = NamedDependency[Principal]
PlatformDep = NamedDependency[Platform]


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else "unknown"
