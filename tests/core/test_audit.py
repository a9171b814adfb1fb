"""The audit trail: append-only in the database, and a hash chain that finds tampering."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from core import Principal, Resource
from core.cli import Context, cli
from core.platform import Platform
from core.tables import AuditLog
from core.testing import citizen_headers, staff_headers

AUDITOR = Principal(id="staff:auditor", kind="staff", roles=frozenset({"national_admin"}))


async def write_rows(platform: Platform, count: int = 5) -> list[int]:
    for index in range(count):
        await platform.audit.record(
            AUDITOR,
            "example.record.read",
            Resource(kind="record", id=f"r{index}", province="01", subject_id=f"subject-{index % 2}"),
            purpose="core.identity",
            detail=f"read number {index}",
        )
    rows = await AuditLog.select(AuditLog.id).order_by(AuditLog.id)
    return [row["id"] for row in rows]


async def bypass_append_only(platform: Platform, statement: str) -> None:
    """Run ``statement`` on audit_log the way an attacker with the database owner's rights could."""
    if platform.db.kind == "postgres":
        await platform.db.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        await platform.db.execute(statement)
        await platform.db.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")
    else:
        await platform.db.execute("DROP TRIGGER audit_log_no_update")
        await platform.db.execute("DROP TRIGGER audit_log_no_delete")
        await platform.db.execute(statement)


async def test_intact_chain_verifies(platform):
    ids = await write_rows(platform)
    result = await platform.audit.verify()
    assert result.ok
    assert result.checked == len(ids) == 5
    # Several resources in one call are chained too, one row each.
    await platform.audit.record(
        AUDITOR,
        "x",
        [Resource(kind="a", subject_id="s1"), Resource(kind="b", subject_id="s2")],
        purpose="core.identity",
    )
    assert (await platform.audit.verify(batch=2)).checked == 7


async def test_altered_row_is_found(platform):
    ids = await write_rows(platform)
    await bypass_append_only(platform, f"UPDATE audit_log SET action = 'example.record.export' WHERE id = {ids[2]}")
    assert (await AuditLog.select(AuditLog.action).where(AuditLog.id == ids[2]).first())["action"].endswith("export")
    result = await platform.audit.verify()
    assert not result.ok
    assert result.first_broken_id == ids[2]
    assert result.checked == 2
    assert "altered" in result.reason


async def test_altered_subject_is_found(platform):
    ids = await write_rows(platform)
    await bypass_append_only(platform, f"UPDATE audit_log SET subject_id = 'someone-else' WHERE id = {ids[4]}")
    result = await platform.audit.verify(batch=2)
    assert not result.ok
    assert result.first_broken_id == ids[4]


async def test_deleted_row_is_found(platform):
    ids = await write_rows(platform)
    await bypass_append_only(platform, f"DELETE FROM audit_log WHERE id = {ids[1]}")
    result = await platform.audit.verify()
    assert not result.ok
    assert result.first_broken_id == ids[2]
    assert result.checked == 1
    assert "removed" in result.reason


async def test_removing_the_newest_rows_is_found(platform):
    ids = await write_rows(platform)
    await bypass_append_only(platform, f"DELETE FROM audit_log WHERE id >= {ids[3]}")
    result = await platform.audit.verify()
    assert not result.ok
    assert result.checked == 3
    assert result.first_broken_id == ids[3]
    assert "newest rows were removed" in result.reason


async def test_a_write_after_the_newest_rows_were_removed_still_shows_the_gap(platform):
    ids = await write_rows(platform)
    await bypass_append_only(platform, f"DELETE FROM audit_log WHERE id >= {ids[3]}")
    if platform.db.kind == "sqlite":
        # SQLite hands the removed ids out again, and the head refuses to move back: no write goes on.
        with pytest.raises(Exception, match="only moves forward"):
            await write_rows(platform, 1)
        return
    await write_rows(platform, 1)  # the chain goes on from the last hash written, not from what is left
    result = await platform.audit.verify()
    assert not result.ok
    assert result.checked == 3
    assert "removed" in result.reason


async def test_two_workers_appending_at_once_keep_one_chain(start_platform, databases):
    import asyncio

    if databases.kind == "sqlite":
        pytest.skip("two workers are two processes; on SQLite in one process their write transactions collide")
    # Two platforms on one fresh database (no audit_head row yet): both may be the chain's first writer.
    first = await start_platform()
    second = await start_platform(url=first.settings.database_url)

    async def read(platform: Platform, n: int) -> None:
        resource = Resource(kind="record", id=f"r{n}", province="01", subject_id=f"subject-{n}")
        await platform.audit.record(AUDITOR, "example.record.read", resource, purpose="core.identity")

    await asyncio.gather(*(read(platform, n) for n in range(30) for platform in (first, second)))
    result = await first.audit.verify()
    assert result.ok and result.checked == 60


async def test_the_head_only_moves_forward(platform):
    await write_rows(platform, 3)
    with pytest.raises(Exception, match="only moves forward"):
        await platform.db.execute("UPDATE audit_head SET last_id = 1")
    with pytest.raises(Exception, match="only moves forward"):
        await platform.db.execute("DELETE FROM audit_head")
    assert (await platform.audit.verify()).ok


async def test_database_refuses_update_and_delete(platform):
    ids = await write_rows(platform, 2)
    with pytest.raises(Exception, match="append-only"):
        await AuditLog.update({AuditLog.action: "forged"}).where(AuditLog.id == ids[0])
    with pytest.raises(Exception, match="append-only"):
        await AuditLog.delete().where(AuditLog.id == ids[1])
    with pytest.raises(Exception, match="append-only"):
        await platform.db.execute("DELETE FROM audit_log")
    if platform.db.kind == "postgres":
        with pytest.raises(Exception, match="append-only"):
            await platform.db.execute("TRUNCATE audit_log")
    assert await AuditLog.count() == 2
    assert (await platform.audit.verify()).ok


def test_cli_verify_exits_1_on_a_broken_chain(sync_database):
    altered: list[int] = []

    async def tamper(platform: Platform) -> None:
        ids = await write_rows(platform, 3)
        altered.append(ids[1])
        await bypass_append_only(platform, f"UPDATE audit_log SET detail = 'nothing to see' WHERE id = {ids[1]}")

    async def intact(platform: Platform) -> None:
        await write_rows(platform, 3)

    runner = CliRunner()
    good = runner.invoke(cli, ["audit", "verify"], obj=Context(sync_database(intact)))
    assert good.exit_code == 0, good.output
    assert "intact: 3 rows" in good.output

    broken_settings = sync_database(tamper)
    broken = runner.invoke(cli, ["audit", "verify"], obj=Context(broken_settings))
    assert broken.exit_code == 1, broken.output
    assert f"BROKEN at row {altered[0]} " in broken.output
    assert "1 rows before it are intact" in broken.output


# -- who read my data -----------------------------------------------------------------


async def test_citizen_sees_only_accesses_to_their_own_data(platform, client):
    me, my_subject = await citizen_headers(platform, "0912345678")
    other, other_subject = await citizen_headers(platform, "0987654321")
    await platform.audit.record(
        AUDITOR,
        "example.record.read",
        [
            Resource(kind="record", id="mine-1", province="01", subject_id=my_subject),
            Resource(kind="record", id="theirs", province="01", subject_id=other_subject),
            Resource(kind="record", id="mine-2", province="79", subject_id=my_subject),
        ],
        purpose="core.identity",
    )
    response = await client.get("/api/me/access-log", headers=me)
    assert response.status_code == 200, response.text
    entries = response.json()
    assert [e["resource_id"] for e in entries] == ["mine-2", "mine-1"]  # newest first
    assert {e["actor_id"] for e in entries} == {AUDITOR.id}
    # The endpoint takes no subject: asking for someone else's still returns one's own.
    sneaky = await client.get(f"/api/me/access-log?subject_id={other_subject}", headers=me)
    assert [e["resource_id"] for e in sneaky.json()] == ["mine-2", "mine-1"]
    theirs = await client.get("/api/me/access-log", headers=other)
    assert [e["resource_id"] for e in theirs.json()] == ["theirs"]
    # Paging goes back in time.
    older = await client.get(f"/api/me/access-log?before_id={entries[0]['id']}", headers=me)
    assert [e["resource_id"] for e in older.json()] == ["mine-1"]


async def test_staff_cannot_read_a_persons_log_through_the_citizen_endpoint(platform, client):
    _citizen, subject = await citizen_headers(platform)
    await platform.audit.record(
        AUDITOR, "example.record.read", Resource(kind="record", subject_id=subject), purpose="core.identity"
    )
    for roles, province in ((["national_admin"], None), (["epidemiologist"], "01"), (["province_admin"], "01")):
        headers = await staff_headers(platform, roles, province=province)
        response = await client.get(f"/api/me/access-log?subject_id={subject}", headers=headers)
        assert response.status_code == 403, (roles, response.text)
        assert "record" not in response.text


async def test_admin_audit_search_needs_audit_read_and_is_audited(platform, client):
    citizen, subject = await citizen_headers(platform)
    await platform.audit.record(
        AUDITOR, "example.record.read", Resource(kind="record", id="r1", subject_id=subject), purpose="core.identity"
    )
    url = f"/api/admin/audit?subject_id={subject}"
    province_admin = await staff_headers(platform, ["province_admin"], province="01")
    assert (await client.get(url, headers=province_admin)).status_code == 403
    assert (await client.get(url, headers=citizen)).status_code == 403
    assert (await client.get(url)).status_code == 401
    # Access is decided before the query is even read.
    assert (await client.get("/api/admin/audit", headers=province_admin)).status_code == 403

    national = await staff_headers(platform, ["national_admin"])
    me = (await client.get("/api/me", headers=national)).json()
    response = await client.get(url, headers=national)
    assert response.status_code == 200, response.text
    found = response.json()
    # The search itself is recorded against the subject, before the answer is built.
    assert found[0]["action"] == "core.audit.read" and found[0]["actor_id"] == me["id"]
    assert [e["resource_id"] for e in found[1:]] == ["r1"]
    # The citizen sees that the national admin searched their trail.
    own = (await client.get("/api/me/access-log", headers=citizen)).json()
    assert (own[0]["actor_id"], own[0]["action"]) == (me["id"], "core.audit.read")
    assert (await platform.audit.verify()).ok
    # A missing subject is a 400 naming it, not a 500.
    missing = await client.get("/api/admin/audit", headers=national)
    assert missing.status_code == 400
    assert "subject_id" in missing.text


async def test_concurrent_records_share_one_chain_append_and_the_chain_holds(platform: Platform):
    import asyncio

    commits = platform.audit.group_commit
    assert commits is not None
    batches_before = commits.batches
    await asyncio.gather(
        *(
            platform.audit.record(
                AUDITOR,
                "example.record.read",
                [
                    Resource(kind="record", id=f"r{n}", province="01", subject_id=f"subject-{n}"),
                    Resource(kind="record", id=f"r{n}b", province="01", subject_id=f"subject-{n}"),
                ],
                purpose="core.identity",
            )
            for n in range(40)
        )
    )
    assert commits.batches - batches_before < 40  # records were grouped
    rows = await AuditLog.select(AuditLog.resource_id).order_by(AuditLog.id)
    assert len(rows) == 80
    # A record's rows stay next to each other, in the order given.
    ids = [row["resource_id"] for row in rows]
    assert all(ids[i + 1] == ids[i] + "b" for i in range(0, 80, 2))
    result = await platform.audit.verify()
    assert result.ok and result.checked == 80
