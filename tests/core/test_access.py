"""Default deny, deny over allow, and scope filters applied in SQL."""

from __future__ import annotations

import pytest
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from core import Principal, Resource
from core.access import Scope
from core.tables import AuditLog
from core.testing import citizen_headers, device_headers, http_client, staff_headers
from tests.core.example_plugins import faulty
from tests.core.example_plugins.research import CASE_LIST, NOBODY, Research

SYSTEM = Principal(id="staff:recorder", kind="staff", roles=frozenset({"national_admin"}))


async def test_action_no_role_grants_is_denied_for_every_kind_of_principal(start_platform):
    platform = await start_platform(("research", Research()))
    every_kind = {
        "national admin": await staff_headers(platform, ["national_admin"]),
        "province admin": await staff_headers(platform, ["province_admin"], province="01"),
        "citizen": (await citizen_headers(platform))[0],
        "device": await device_headers(platform, province="01", site="venue-1"),
    }
    async with http_client(platform) as client:
        for kind, headers in every_kind.items():
            assert (await client.get("/api/me", headers=headers)).status_code == 200, kind
            response = await client.get("/api/research/nobody", headers=headers)
            assert response.status_code == 403, (kind, response.text)
            assert f"no rule allows {NOBODY}" in response.json()["detail"]
            assert "leaked_to" not in response.text
        anonymous = await client.get("/api/research/nobody")
        assert anonymous.status_code == 401


async def test_no_principal_is_401_and_denied_action_is_403_in_code(start_platform):
    platform = await start_platform()
    with pytest.raises(NotAuthorizedException):
        await platform.access.check(None, "core.me.read", Resource(kind="route"))
    with pytest.raises(PermissionDeniedException):
        await platform.access.check(SYSTEM, "example.never.granted", Resource(kind="thing"))
    await platform.access.check(SYSTEM, "core.audit.read", Resource(kind="audit_log"))


async def test_deny_wins_over_allow(start_platform):
    action = "research.outbreak.read"
    platform = await start_platform(("research", Research()), ("allower", faulty.Allower(action)))
    citizen, _subject = await citizen_headers(platform)
    async with http_client(platform) as client:
        assert (await client.get("/api/research/outbreak", headers=citizen)).status_code == 200

    vetoed = await start_platform(
        ("research", Research()), ("allower", faulty.Allower(action)), ("vetoer", faulty.Vetoer(action))
    )
    decision = await vetoed.access.decide(SYSTEM, action, Resource(kind="route"))
    assert not decision.allowed
    assert decision.reasons == ("vetoer says no",)
    citizen, _subject = await citizen_headers(vetoed)
    async with http_client(vetoed) as client:
        response = await client.get("/api/research/outbreak", headers=citizen)
    assert response.status_code == 403
    assert "vetoer says no" in response.json()["detail"]


async def test_scoped_role_outside_its_province_is_denied(start_platform):
    platform = await start_platform(("research", Research()))
    epi = Principal(id="staff:e", kind="staff", roles=frozenset({"epidemiologist"}), province="01")
    assert (await platform.access.decide(epi, CASE_LIST, Resource(kind="case", province="01"))).allowed
    decision = await platform.access.decide(epi, CASE_LIST, Resource(kind="case", province="79"))
    assert not decision.allowed
    assert "cannot act in province 79" in decision.reasons[0]


async def test_scope_filters_rows_in_sql(start_platform):
    platform = await start_platform(("research", Research()))
    rows = [
        Resource(kind="case", id="a", province="01", subject_id="subject-a"),
        Resource(kind="case", id="b", province="01", subject_id="subject-b"),
        Resource(kind="case", id="c", province="79", subject_id="subject-a"),
        Resource(kind="case", id="d", province=None, subject_id="subject-c"),
    ]
    await platform.audit.record(SYSTEM, "research.case.create", rows, purpose="core.identity")

    async def visible(principal: Principal) -> list[str]:
        scope = await platform.access.scope(principal, CASE_LIST)
        query = AuditLog.select(AuditLog.resource_id).order_by(AuditLog.resource_id)
        where = scope.where(province=AuditLog.province, subject=AuditLog.subject_id)
        if where is not None:
            query = query.where(where)
        return [row["resource_id"] for row in await query]

    hanoi_epi = Principal(id="staff:1", kind="staff", roles=frozenset({"epidemiologist"}), province="01")
    saigon_epi = Principal(id="staff:2", kind="staff", roles=frozenset({"epidemiologist"}), province="79")
    national = Principal(id="staff:3", kind="staff", roles=frozenset({"national_admin"}))
    operator = Principal(id="staff:4", kind="staff", roles=frozenset({"venue_operator"}), province="01", site="v1")
    assert await visible(hanoi_epi) == ["a", "b"]
    assert await visible(saigon_epi) == ["c"]
    assert await visible(national) == ["a", "b", "c", "d"]
    # A role that does not grant the listing action gives an empty scope: no rows, not all rows.
    assert (await platform.access.scope(operator, CASE_LIST)).empty
    assert await visible(operator) == []


def test_scope_where_without_matching_column_matches_nothing():
    only_sites = Scope(sites=frozenset({"v1"}))
    clause = only_sites.where(province=AuditLog.province)
    assert clause is not None
    assert "IS NULL" in str(clause).upper()
    assert Scope(everything=True).where(province=AuditLog.province) is None
    merged = Scope(provinces=frozenset({"01"})) | Scope(subjects=frozenset({"s"}))
    assert merged.provinces == frozenset({"01"}) and merged.subjects == frozenset({"s"})


async def test_subject_scope_in_sql(start_platform):
    platform = await start_platform()
    await platform.audit.record(
        SYSTEM,
        "x.read",
        [Resource(kind="r", id="mine", subject_id="me"), Resource(kind="r", id="theirs", subject_id="them")],
        purpose="core.identity",
    )
    where = Scope(subjects=frozenset({"me"})).where(subject=AuditLog.subject_id)
    rows = await AuditLog.select(AuditLog.resource_id).where(where)
    assert [row["resource_id"] for row in rows] == ["mine"]
    empty = Scope().where(subject=AuditLog.subject_id)
    assert await AuditLog.select(AuditLog.resource_id).where(empty) == []
