"""The plugins the benchmarks load: one extension with two routes, and province plugins.

``BenchPlugin`` is written with the same API as any outside plugin (routes
with an ``action`` and ``purpose`` in ``opt``, roles, a table of its own), so
the request it serves goes through the platform's real pipeline: identity,
the guard, the ``authorize`` vote, the audit trail and the JSON response.

``province_plugins()`` builds small province plugins for several provinces,
each voting on ``authorize`` the way a province rule would (a deny for some
actions at some sites, no opinion otherwise), so that a province-scoped hook
call has other provinces' plugins to leave out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get, post
from litestar.params import FromPath, JSONBody
from piccolo.columns import BigSerial, Boolean, Timestamptz, Varchar
from piccolo.table import Table

from core import Principal, Resource, Role, Vote, hookimpl
from core.clock import now
from core.platform import Platform
from core.web.guard import PlatformDep, PrincipalDep

PLUGIN_NAME = "bench"
READ_ACTION = "bench.read"
WRITE_ACTION = "bench.write"
BENCH_ROLE = "bench_operator"
PURPOSE = "core.identity"
# Hà Nội, TP Hồ Chí Minh, Đà Nẵng, Hải Phòng: the scoped call is made for the first.
PROVINCES = ("01", "79", "48", "31")
RULES_PER_PROVINCE = 3

ProvinceCode = Annotated[str, msgspec.Meta(pattern=r"^\d{2}$")]


class ReadReply(msgspec.Struct, frozen=True, kw_only=True):
    """What both the pipeline route and the bare handler answer, byte for byte alike."""

    ok: bool
    province: str
    record: str


class VisitBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A check-in-shaped body: who came where, and what they declared."""

    venue: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9-]{4,32}$")]
    phone: Annotated[str, msgspec.Meta(pattern=r"^0\d{9}$")]
    healthy: bool
    symptoms: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=40)]], msgspec.Meta(max_length=10)
    ] = []


class VisitReply(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    venue: str
    at: datetime


class BenchVisit(Table, tablename="bench_visit"):
    """One row per benchmarked POST; created by the harness, not by migrations."""

    id = BigSerial(primary_key=True)
    province = Varchar(length=2)
    venue = Varchar(length=32)
    phone = Varchar(length=10)
    healthy = Boolean()
    recorded_by = Varchar(length=80)
    at = Timestamptz()


@get("/{province:str}/read", opt={"action": READ_ACTION, "purpose": PURPOSE}, summary="Benchmark: audited read")
async def audited_read(province: FromPath[str], principal: PrincipalDep, platform: PlatformDep) -> ReadReply:
    await platform.audit.record(
        principal, READ_ACTION, Resource(kind="bench_record", id="1", province=province), purpose=PURPOSE
    )
    return ReadReply(ok=True, province=province, record="1")


@get("/{province:str}/check", opt={"action": READ_ACTION, "purpose": PURPOSE}, summary="Benchmark: guarded, no audit")
async def guarded_read(province: FromPath[str]) -> ReadReply:
    return ReadReply(ok=True, province=province, record="1")


@post(
    "/{province:str}/visits",
    opt={"action": WRITE_ACTION, "purpose": PURPOSE},
    status_code=201,
    summary="Benchmark: validated, audited write",
)
async def record_visit(
    province: FromPath[str], data: JSONBody[VisitBody], principal: PrincipalDep, platform: PlatformDep
) -> VisitReply:
    at = now()
    async with platform.db.transaction():
        rows = await BenchVisit.insert(
            BenchVisit(
                province=province,
                venue=data.venue,
                phone=data.phone,
                healthy=data.healthy,
                recorded_by=principal.id,
                at=at,
            )
        ).returning(BenchVisit.id)
        visit_id = rows[0]["id"]
        await platform.audit.record(
            principal,
            WRITE_ACTION,
            Resource(kind="bench_visit", id=str(visit_id), province=province),
            purpose=PURPOSE,
        )
    return VisitReply(id=visit_id, venue=data.venue, at=at)


@get("/api/bench/{province:str}/read", summary="Benchmark baseline: the same JSON, no platform")
async def bare_read(province: str) -> ReadReply:
    return ReadReply(ok=True, province=province, record="1")


class BenchPlugin:
    """An extension plugin contributing the benchmark routes, the role that may use them, and its table."""

    @hookimpl
    def register_routes(self) -> list[object]:
        return [audited_read, guarded_read, record_visit]

    @hookimpl
    def register_roles(self) -> list[Role]:
        return [
            Role(
                name=BENCH_ROLE,
                scope="province",
                grants=frozenset({READ_ACTION, WRITE_ACTION}),
                description="Benchmark operator (bench/ only)",
            )
        ]

    @hookimpl
    def startup(self, platform: Platform) -> None:
        BenchVisit._meta.db = platform.db.engine


async def create_bench_tables(platform: Platform) -> None:
    """Create the bench table once, before any server starts (servers only bind it)."""
    BenchVisit._meta.db = platform.db.engine
    await BenchVisit.create_table(if_not_exists=True)


class ProvinceRule:
    """A province plugin: denies actions under ``prefix`` at ``closed_sites``, no opinion otherwise."""

    def __init__(self, province: str, prefix: str, closed_sites: frozenset[str]) -> None:
        self.PROVINCE = province
        self.prefix = prefix
        self.closed_sites = closed_sites

    @hookimpl
    def authorize(self, principal: Principal, action: str, resource: Resource) -> Vote | None:
        if action.startswith(self.prefix) and resource.site in self.closed_sites:
            return Vote.deny(f"province {self.PROVINCE} closed site {resource.site} for {self.prefix}*")
        return None


def province_plugins() -> list[tuple[str, ProvinceRule]]:
    """``RULES_PER_PROVINCE`` province plugins for each of ``PROVINCES``, named for registration."""
    prefixes = ("checkin.", "testing.", "vaccination.")
    return [
        (
            f"bench_p{code}_{prefix.rstrip('.')}",
            ProvinceRule(code, prefix, frozenset({f"{code}-closed-{i}" for i in range(3)})),
        )
        for code in PROVINCES
        for prefix in prefixes[:RULES_PER_PROVINCE]
    ]


def bench_plugins() -> list[tuple[str, object]]:
    """Every plugin a benchmark platform loads: the bench extension and the province plugins."""
    return [(PLUGIN_NAME, BenchPlugin()), *province_plugins()]
