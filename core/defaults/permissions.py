"""Role-based access rules: the default ``authorize`` votes and ``scope_filter`` scopes.

A role that grants the action allows it when the resource lies in the
principal's scope: anywhere (national), their province, their site or lab,
or their own records (citizens). A role that grants the action but whose
scope does not cover the resource votes deny with the reason.
"""

from __future__ import annotations

from core.access import Resource, Scope, Vote
from core.markers import hookimpl
from core.principal import Principal, Role
from core.roles import RoleRegistry


class RoleRules:
    def __init__(self, registry: RoleRegistry) -> None:
        self._registry = registry
        # (roles, action) -> the roles granting it: the registry does not change once built.
        self._granted: dict[tuple[frozenset[str], str], list[Role]] = {}

    @hookimpl
    def authorize(self, principal: Principal, action: str, resource: Resource) -> Vote | None:
        refusals = []
        for role in self._granting(principal, action):
            reason = _outside_scope(role, principal, resource)
            if reason is None:
                return Vote.allow(f"role {role.name} grants {action}")
            refusals.append(reason)
        if refusals:
            return Vote.deny("; ".join(refusals))
        return None

    @hookimpl
    def scope_filter(self, principal: Principal, action: str) -> Scope | None:
        scope = Scope()
        for role in self._granting(principal, action):
            scope = scope | _scope_of(role, principal)
        return None if scope.empty else scope

    def _granting(self, principal: Principal, action: str) -> list[Role]:
        key = (principal.roles, action)
        granting = self._granted.get(key)
        if granting is None:
            roles = (self._registry.get(name) for name in sorted(principal.roles))
            granting = [r for r in roles if r is not None and self._registry.grants(r, action)]
            if len(self._granted) >= 10_000:  # roles x actions: bounded in practice; never unbounded
                self._granted.clear()
            self._granted[key] = granting
        return granting


def _outside_scope(role: Role, principal: Principal, resource: Resource) -> str | None:
    """None when ``resource`` lies within what ``role`` covers for ``principal``; else why not."""
    if role.scope == "national":
        return None
    if role.scope == "self":
        if resource.subject_id is not None and resource.subject_id != principal.subject_id:
            return f"{role.name} may only reach their own records"
        return None
    if principal.province is None:
        return f"{role.name} has no province assigned"
    if resource.province is not None and resource.province != principal.province:
        return f"{role.name} of province {principal.province} cannot act in province {resource.province}"
    if role.scope == "site" and resource.site is not None and resource.site != principal.site:
        return f"{role.name} of site {principal.site} cannot act at site {resource.site}"
    if role.scope == "lab" and resource.lab is not None and resource.lab != principal.lab:
        return f"{role.name} of lab {principal.lab} cannot act for lab {resource.lab}"
    return None


def _scope_of(role: Role, principal: Principal) -> Scope:
    match role.scope:
        case "national":
            return Scope(everything=True)
        case "province" if principal.province:
            return Scope(provinces=frozenset({principal.province}))
        case "site" if principal.site:
            return Scope(sites=frozenset({principal.site}))
        case "lab" if principal.lab:
            return Scope(labs=frozenset({principal.lab}))
        case "self" if principal.subject_id:
            return Scope(subjects=frozenset({principal.subject_id}))
    return Scope()
