"""Plugins that misbehave on purpose: hooks that raise, misspelt hooks, wrong arguments."""

from __future__ import annotations

from typing import Any

from core import MenuItem, Principal, Resource, Scope, Vote, hookimpl


class RaisingMenu:
    @hookimpl
    def register_menu_items(self, principal: Principal) -> list[MenuItem]:
        raise RuntimeError("menu backend is down")


class RaisingScope:
    @hookimpl
    def scope_filter(self, principal: Principal, action: str) -> Scope | None:
        raise RuntimeError("scope backend is down")


class RaisingStartup:
    @hookimpl
    def startup(self, platform: Any) -> None:
        raise RuntimeError("cannot warm the cache")


class RaisingVoter:
    @hookimpl
    def authorize(self, principal: Principal, action: str, resource: Resource) -> Vote | None:
        raise RuntimeError("policy engine unreachable")


class RaisingIdentity:
    @hookimpl
    def identify(self, connection: Any, platform: Any) -> Principal | None:
        raise RuntimeError("identity provider unreachable")


class Allower:
    """Allows ``action`` for anyone, to show that a deny or a failure still wins."""

    def __init__(self, action: str) -> None:
        self.action = action

    @hookimpl
    def authorize(self, principal: Principal, action: str, resource: Resource) -> Vote | None:
        return Vote.allow("allower says yes") if action == self.action else None


class Vetoer:
    def __init__(self, action: str) -> None:
        self.action = action

    @hookimpl
    def authorize(self, principal: Principal, action: str, resource: Resource) -> Vote | None:
        return Vote.deny("vetoer says no") if action == self.action else None


class MisspeltHook:
    @hookimpl
    def register_menu_item(self, principal: Principal) -> list[MenuItem]:  # the spec is register_menu_items
        return []


class ExtraArgument:
    @hookimpl
    def authorize(self, principal: Principal, action: str, resource: Resource, request: Any) -> Vote | None:
        return None
