"""Who is making a request: the `Principal`, and the roles a principal can hold."""

from __future__ import annotations

from typing import Literal

import msgspec

PrincipalKind = Literal["citizen", "staff", "device", "service"]
RoleScope = Literal["national", "province", "site", "lab", "self"]

NATIONAL_ADMIN = "national_admin"
PROVINCE_ADMIN = "province_admin"
VENUE_OPERATOR = "venue_operator"
SAMPLE_COLLECTOR = "sample_collector"
LAB_TECHNICIAN = "lab_technician"
VACCINATOR = "vaccinator"
EPIDEMIOLOGIST = "epidemiologist"
CITIZEN = "citizen"
DEVICE = "device"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated party behind a request.

    ``id`` is an opaque, non-personal identifier (``staff:…``, ``citizen:…``,
    ``key:…``) that is safe to log. ``subject_id`` is set for citizens: it is
    the person whose data they own. ``province``, ``site`` and ``lab`` narrow
    what a scoped role may reach.
    """

    id: str
    kind: PrincipalKind
    roles: frozenset[str] = frozenset()
    province: str | None = None
    site: str | None = None
    lab: str | None = None
    subject_id: str | None = None
    credential_id: str | None = None

    def has_role(self, *roles: str) -> bool:
        return any(role in self.roles for role in roles)


class Role(msgspec.Struct, frozen=True, kw_only=True):
    """A role and the actions it grants.

    Plugins return roles from ``register_roles``. Two plugins may name the
    same role: their grants are merged, and their scopes must agree.
    ``scope`` says what narrows the role: ``national`` (nothing), ``province``
    (the principal's province), ``site``, ``lab``, or ``self`` (the citizen's
    own records).
    """

    name: str
    scope: RoleScope
    grants: frozenset[str] = frozenset()
    description: str = ""


CORE_ROLES: tuple[Role, ...] = (
    Role(name=NATIONAL_ADMIN, scope="national", description="Ministry of Health administrator"),
    Role(name=PROVINCE_ADMIN, scope="province", description="Provincial health department admin"),
    Role(name=VENUE_OPERATOR, scope="site", description="Runs a public place's check-in"),
    Role(name=SAMPLE_COLLECTOR, scope="site", description="Collects samples at a site"),
    Role(name=LAB_TECHNICIAN, scope="lab", description="Receives samples and enters results"),
    Role(name=VACCINATOR, scope="site", description="Screens people and records doses"),
    Role(name=EPIDEMIOLOGIST, scope="province", description="Traces contacts in a province"),
    Role(name=CITIZEN, scope="self", description="A person using the platform for themselves"),
    Role(name=DEVICE, scope="site", description="A venue scanner or lab system (API key)"),
)
