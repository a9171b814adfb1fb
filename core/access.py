"""Data access: votes on actions, and scope filters that narrow list queries in SQL.

A route or a domain function asks ``Access.check`` whether a principal may
perform an action on a resource. Every plugin that implements ``authorize``
votes allow, deny or nothing; a deny wins, and no allow at all means deny.
List queries never check rows one by one: ``Access.scope`` gathers the scopes
that ``scope_filter`` hookimpls grant and ``Scope.where`` turns them into a
Piccolo ``WHERE`` clause.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import structlog
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from core.principal import Principal

if TYPE_CHECKING:
    from piccolo.columns import Column
    from piccolo.columns.combination import Combinable

    from core.plugins import Hooks

log = structlog.get_logger("core.access")


class Resource(msgspec.Struct, frozen=True, kw_only=True):
    """What an action is performed on.

    ``kind`` names the type (``venue``, ``sample``, ``audit_log``...). ``id``
    is the record, or None for a collection or a whole route. ``province``,
    ``site``, ``lab`` and ``subject_id`` say where the record belongs and
    whose it is, so that scoped roles can be checked without plugin code.
    """

    kind: str
    id: str | None = None
    province: str | None = None
    site: str | None = None
    lab: str | None = None
    subject_id: str | None = None


ROUTE = Resource(kind="route")


class Vote(msgspec.Struct, frozen=True, kw_only=True):
    """One plugin's opinion on an action: ``allow`` or ``deny``, with a reason."""

    decision: Literal["allow", "deny"]
    reason: str

    @classmethod
    def allow(cls, reason: str) -> Vote:
        return cls(decision="allow", reason=reason)

    @classmethod
    def deny(cls, reason: str) -> Vote:
        return cls(decision="deny", reason=reason)


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a vote: allowed or not, and the reasons that decided it."""

    allowed: bool
    reasons: tuple[str, ...]


class Scope(msgspec.Struct, frozen=True, kw_only=True):
    """The records a principal may list for an action.

    ``everything`` grants all rows. Otherwise a row is visible when its
    province, site, lab or subject is in the matching set. Scopes from
    several plugins are merged with ``|`` (a union); an empty scope shows
    nothing.
    """

    everything: bool = False
    provinces: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    labs: frozenset[str] = frozenset()
    subjects: frozenset[str] = frozenset()

    def __or__(self, other: Scope) -> Scope:
        return Scope(
            everything=self.everything or other.everything,
            provinces=self.provinces | other.provinces,
            sites=self.sites | other.sites,
            labs=self.labs | other.labs,
            subjects=self.subjects | other.subjects,
        )

    @property
    def empty(self) -> bool:
        return not (self.everything or self.provinces or self.sites or self.labs or self.subjects)

    def where(
        self,
        *,
        province: Column | None = None,
        site: Column | None = None,
        lab: Column | None = None,
        subject: Column | None = None,
    ) -> Combinable | None:
        """A Piccolo clause restricting rows to this scope.

        Returns None when the scope is ``everything`` (no filter needed).
        When the scope grants nothing that the given columns can match, the
        clause matches no row, so callers never leak by forgetting a column.
        """
        if self.everything:
            return None
        clauses: list[Any] = []
        for column, values in (
            (province, self.provinces),
            (site, self.sites),
            (lab, self.labs),
            (subject, self.subjects),
        ):
            if column is not None and values:
                clauses.append(column.is_in(sorted(values)))
        if not clauses:
            anchor = next(c for c in (province, site, lab, subject) if c is not None)
            return anchor._meta.table._meta.primary_key.is_null()  # matches no row
        combined = clauses[0]
        for clause in clauses[1:]:
            combined = combined | clause
        return combined


NOTHING = Scope()


class Access:
    """Runs the ``authorize`` and ``scope_filter`` hooks for the platform."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks

    async def decide(self, principal: Principal, action: str, resource: Resource) -> Decision:
        votes = await self._hooks.vote(
            "authorize",
            province=resource.province,
            principal=principal,
            action=action,
            resource=resource,
        )
        denies: list[str] = []
        allows: list[str] = []
        for vote in votes:
            if vote.decision == "deny":
                denies.append(vote.reason)
            elif vote.decision == "allow":
                allows.append(vote.reason)
        if denies:
            return Decision(allowed=False, reasons=tuple(denies))
        if allows:
            return Decision(allowed=True, reasons=tuple(allows))
        return Decision(allowed=False, reasons=(f"no rule allows {action}",))

    async def check(self, principal: Principal | None, action: str, resource: Resource) -> None:
        """Raise 401 without a principal and 403 unless the vote allows the action."""
        if principal is None:
            raise NotAuthorizedException("Authentication required: send a bearer token or API key.")
        decision = await self.decide(principal, action, resource)
        if not decision.allowed:
            log.info("access.denied", action=action, resource=resource.kind, reasons=decision.reasons)
            raise PermissionDeniedException(f"Not allowed to {action}: {'; '.join(decision.reasons)}")

    async def scope(self, principal: Principal, action: str) -> Scope:
        """The union of scopes every plugin grants ``principal`` for listing ``action``."""
        scopes = await self._hooks.collect("scope_filter", principal=principal, action=action)
        merged = NOTHING
        for scope in scopes:
            merged = merged | scope
        return merged


async def resolve(value: Any) -> Any:
    """Await ``value`` when a hookimpl returned an awaitable."""
    if inspect.isawaitable(value):
        return await value
    return value
