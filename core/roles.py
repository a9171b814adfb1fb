"""The role registry: core roles merged with what plugins contribute."""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import InvalidInput
from core.principal import (
    CITIZEN,
    CORE_ROLES,
    NATIONAL_ADMIN,
    PROVINCE_ADMIN,
    Role,
)

# What the core itself lets each role do; plugins add their own actions.
CORE_GRANTS: dict[str, frozenset[str]] = {
    NATIONAL_ADMIN: frozenset(
        {
            "core.staff.manage",
            "core.apikey.manage",
            "core.audit.read",
            "core.province_plugins.manage",
            "core.events.read",
        }
    ),
    PROVINCE_ADMIN: frozenset({"core.staff.manage", "core.apikey.manage", "core.province_plugins.manage"}),
    CITIZEN: frozenset({"core.consent.manage", "core.audit.read_own"}),
}
EVERYONE = frozenset({"core.me.read"})


class RoleRegistry:
    def __init__(self, contributed: Iterable[Role]) -> None:
        roles: dict[str, Role] = {}
        core = [
            Role(
                name=r.name,
                scope=r.scope,
                description=r.description,
                grants=CORE_GRANTS.get(r.name, frozenset()) | EVERYONE,
            )
            for r in CORE_ROLES
        ]
        for role in [*core, *contributed]:
            known = roles.get(role.name)
            if known is None:
                roles[role.name] = role
                continue
            if known.scope != role.scope:
                raise InvalidInput(
                    f"role {role.name!r} is declared with scope {known.scope!r} and {role.scope!r}; "
                    "plugins that extend a role must keep its scope"
                )
            roles[role.name] = Role(
                name=role.name,
                scope=known.scope,
                grants=known.grants | role.grants,
                description=known.description or role.description,
            )
        # Every role, including those plugins add, may see who it is signed in as.
        self.roles = {
            name: Role(name=r.name, scope=r.scope, grants=r.grants | EVERYONE, description=r.description)
            for name, r in roles.items()
        }

    def get(self, name: str) -> Role | None:
        return self.roles.get(name)

    def grants(self, role: Role, action: str) -> bool:
        if action in role.grants:
            return True
        # "checkin.*" grants every checkin action.
        return any(g.endswith(".*") and action.startswith(g[:-1]) for g in role.grants)

    def validate_assignment(self, roles: list[str], *, province: str | None, site: str | None, lab: str | None) -> None:
        """Raise ``ValueError`` unless each role exists and has the scope it needs."""
        if not roles:
            raise InvalidInput("roles: give at least one role")
        for name in roles:
            role = self.roles.get(name)
            if role is None:
                raise InvalidInput(f"roles: unknown role {name!r}; known: {', '.join(sorted(self.roles))}")
            if role.scope == "self":
                raise InvalidInput(f"roles: {name!r} is for citizens, who sign in by phone")
            if role.scope in ("province", "site", "lab") and not province:
                raise InvalidInput(f"province: role {name!r} is scoped to a province; give its code")
            if role.scope == "site" and not site:
                raise InvalidInput(f"site: role {name!r} is scoped to a site; give the site id")
            if role.scope == "lab" and not lab:
                raise InvalidInput(f"lab: role {name!r} is scoped to a lab; give the lab id")
