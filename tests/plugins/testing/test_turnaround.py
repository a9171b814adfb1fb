"""Turnaround percentiles per lab and site, and the list of overdue samples."""

from __future__ import annotations

from datetime import timedelta

from core import clock
from plugins.testing.tables import Sample
from plugins.testing.turnaround import percentiles
from tests.plugins.testing.conftest import LAB, LAB_B, SITE, SITE_B


def test_percentiles():
    assert percentiles([]).count == 0 and percentiles([]).p50 is None
    spread = percentiles([float(h) for h in range(1, 11)])  # 1..10 hours
    assert (spread.count, spread.p50, spread.p90, spread.p95, spread.max) == (10, 5.5, 9.1, 9.55, 10.0)
    assert percentiles([4.0]).p95 == 4.0


async def _timed(world, *, collected_h, received_h, resulted_h, collector=None, lab=None):
    """A sample resulted now, whose steps are then moved to the given hours ago."""
    label = (await world.register(headers=collector or world.collector))["sample_id"]
    assert (await world.receive([label], headers=lab or world.lab)).status_code == 201
    assert (await world.result(label, "negative", headers=lab or world.lab)).status_code == 201
    now = clock.now()
    await Sample.update(
        {
            Sample.collected_at: now - timedelta(hours=collected_h),
            Sample.received_at: now - timedelta(hours=received_h),
            Sample.first_result_at: now - timedelta(hours=resulted_h),
        }
    ).where(Sample.id == label)
    return label


async def test_turnaround_per_lab_and_site(world):
    for collected, received in ((10, 8), (20, 14), (30, 24), (40, 30)):
        await _timed(world, collected_h=collected, received_h=received, resulted_h=1)
    await _timed(world, collected_h=5, received_h=4, resulted_h=1, collector=world.collector_b, lab=world.lab_b)
    await _timed(world, collected_h=24 * 30, received_h=24 * 29, resulted_h=24 * 20)  # outside the period

    by_lab = await world.client.get("/api/testing/turnaround", headers=world.epi)
    assert by_lab.status_code == 200, by_lab.text
    groups = {g["key"]: g for g in by_lab.json()["groups"]}
    assert set(groups) == {LAB, LAB_B}
    lab = groups[LAB]
    assert lab["samples"] == 4
    assert lab["collection_to_receipt"]["p50"] == 6.0  # 2, 6, 6, 10 hours
    assert lab["receipt_to_result"]["max"] == 29.0
    assert lab["collection_to_result"]["p50"] == 24.0  # 9, 19, 29, 39
    assert groups[LAB_B]["collection_to_result"]["p95"] == 4.0

    by_site = await world.client.get("/api/testing/turnaround", params={"group_by": "site"}, headers=world.admin)
    assert {g["key"]: g["samples"] for g in by_site.json()["groups"]} == {SITE: 4, SITE_B: 1}
    month = await world.client.get(
        "/api/testing/turnaround",
        params={"since": (clock.now() - timedelta(days=31)).isoformat()},
        headers=world.admin,
    )
    assert sum(g["samples"] for g in month.json()["groups"]) == 6
    # A lab sees its own figures only; another province sees none.
    mine = (await world.client.get("/api/testing/turnaround", headers=world.lab_b)).json()["groups"]
    assert [g["key"] for g in mine] == [LAB_B]
    assert (await world.client.get("/api/testing/turnaround", headers=world.epi_dn)).json()["groups"] == []
    backwards = await world.client.get(
        "/api/testing/turnaround",
        params={"since": clock.now().isoformat(), "until": (clock.now() - timedelta(days=1)).isoformat()},
        headers=world.admin,
    )
    assert backwards.status_code == 400 and "since" in backwards.json()["detail"]
    wrong_group = await world.client.get("/api/testing/turnaround", params={"group_by": "colour"}, headers=world.epi)
    assert wrong_group.status_code == 400


async def test_samples_without_a_result_after_48_hours_are_overdue(world):
    late_single = (await world.register())["sample_id"]
    late_members = [(await world.register())["sample_id"] for _ in range(2)]
    pool = await world.pool(late_members)
    await world.receive([pool["id"]])
    await world.result(pool["id"], "positive")  # members wait for retests
    recent = (await world.register())["sample_id"]
    done = (await world.register())["sample_id"]
    await world.receive([done])
    await world.result(done, "negative")
    other_site = (await world.register(headers=world.collector_b))["sample_id"]
    old = clock.now() - timedelta(hours=49)
    await Sample.update({Sample.collected_at: old}).where(
        Sample.id.is_in([late_single, *late_members, done, other_site])
    )
    await Sample.update({Sample.collected_at: clock.now() - timedelta(hours=47)}).where(Sample.id == recent)

    listed = await world.client.get("/api/testing/overdue", headers=world.epi)
    assert listed.status_code == 200
    rows = {r["sample_id"]: r for r in listed.json()}
    assert set(rows) == {late_single, *late_members, other_site}
    assert rows[late_members[0]]["status"] == "retest" and rows[late_members[0]]["pool"] == pool["id"]
    assert rows[late_single]["hours_since_collection"] >= 49
    site_view = (await world.client.get("/api/testing/overdue", headers=world.collector)).json()
    assert {r["sample_id"] for r in site_view} == {late_single, *late_members}
    lab_view = (await world.client.get("/api/testing/overdue", headers=world.lab)).json()
    assert {r["sample_id"] for r in lab_view} == set(late_members)
    assert (await world.client.get("/api/testing/overdue", headers=world.epi_dn)).json() == []
