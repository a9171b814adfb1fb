"""Pools, lab receipt by label, results one by one, and Dorfman deconvolution."""

from __future__ import annotations

import pytest

from core.tables import EventOutbox
from plugins.testing.identifiers import new_label
from plugins.testing.pooling import dorfman
from plugins.testing.tables import CaseReport, Pool, ResultVersion, RetestOrder, Sample
from tests.plugins.testing.conftest import LAB, SITE_B


async def test_fifty_samples_in_five_pools_with_one_positive_member(world):
    """The issue's scenario: exactly that member positive, 49 negative, only its pool's members retested."""
    receipts = [await world.register() for _ in range(50)]
    labels = [r["sample_id"] for r in receipts]
    pools = [await world.pool(labels[i * 10 : (i + 1) * 10]) for i in range(5)]
    assert [p["size"] for p in pools] == [10] * 5
    assert sorted(m for p in pools for m in p["members"]) == sorted(labels)

    received = await world.receive([p["id"] for p in pools])
    assert received.status_code == 201, received.text
    assert [r["samples"] for r in received.json()] == [10] * 5
    assert await Sample.count().where(Sample.status == "at_lab") == 50

    positive_pool, infected = pools[2], pools[2]["members"][7]
    for pool in pools:
        outcome = "positive" if pool is positive_pool else "negative"
        entered = await world.result(pool["id"], outcome, ct_value=24.5 if outcome == "positive" else None)
        assert entered.status_code == 201, entered.text
        if pool is positive_pool:
            assert entered.json()["released"] == []
            assert sorted(entered.json()["retests"]) == sorted(pool["members"])
        else:
            assert sorted(entered.json()["released"]) == sorted(pool["members"])

    retests = (await world.client.get("/api/testing/lab/retests", headers=world.lab)).json()
    assert sorted(r["sample_id"] for r in retests) == sorted(positive_pool["members"])
    assert {r["pool"] for r in retests} == {positive_pool["id"]}
    for member in positive_pool["members"]:
        outcome = "positive" if member == infected else "negative"
        entered = await world.result(member, outcome)
        assert entered.status_code == 201, entered.text

    results = {row["id"]: row["result"] for row in await Sample.select(Sample.id, Sample.result)}
    assert results[infected] == "positive"
    assert [label for label, result in results.items() if result == "positive"] == [infected]
    assert sum(result == "negative" for result in results.values()) == 49
    assert await Sample.count().where(Sample.status == "resulted") == 50
    orders = await RetestOrder.select(RetestOrder.sample, RetestOrder.pool, RetestOrder.done_at)
    assert sorted(o["sample"] for o in orders) == sorted(positive_pool["members"])
    assert all(o["pool"] == positive_pool["id"] and o["done_at"] is not None for o in orders)
    assert (await world.client.get("/api/testing/lab/retests", headers=world.lab)).json() == []
    # Negative pools' members took the pool's result; the retested members have their own.
    sources = {row["sample"]: row["source"] for row in await ResultVersion.select()}
    assert all(sources[m] == "individual" for m in positive_pool["members"])
    assert sum(source == "pool" for source in sources.values()) == 40
    statuses = {p["id"]: p["status"] for p in await Pool.select(Pool.id, Pool.status)}
    assert statuses[positive_pool["id"]] == "positive" and list(statuses.values()).count("negative") == 4
    # Everyone was told, and only the positive was reported and announced.
    assert len(await world.messages(kind="testing.result")) == 50
    assert [r["sample"] for r in await CaseReport.select(CaseReport.sample)] == [infected]
    assert await EventOutbox.count().where(EventOutbox.event == "testing_result_released") == 1

    timeline = (await world.client.get(f"/api/testing/samples/{infected}", headers=world.lab)).json()["timeline"]
    assert [s["step"] for s in timeline] == ["collected", "in_pool", "at_lab", "retesting", "result"]
    assert timeline[-1]["outcome"] == "positive"


def test_dorfman_rule():
    members = ["a", "b", "c"]
    assert dorfman("negative", members).negative == ("a", "b", "c")
    assert dorfman("negative", members).retest == ()
    assert dorfman("positive", members).retest == ("a", "b", "c")
    assert dorfman("invalid", members).retest == ("a", "b", "c")
    assert dorfman("positive", members).negative == ()
    with pytest.raises(ValueError):
        dorfman("maybe", members)


async def test_invalid_pool_sends_every_member_to_retest(world):
    labels = [(await world.register())["sample_id"] for _ in range(3)]
    pool = await world.pool(labels)
    await world.receive([pool["id"]])
    entered = await world.result(pool["id"], "invalid")
    assert sorted(entered.json()["retests"]) == sorted(labels)
    rows = await Sample.select(Sample.status, Sample.retest_reason, Sample.result)
    assert all(r == {"status": "retest", "retest_reason": "pool_invalid", "result": None} for r in rows)
    steps = (await world.client.get(f"/api/testing/samples/{labels[0]}", headers=world.lab)).json()["timeline"]
    assert steps[-1]["step"] == "retesting_invalid"
    assert await world.messages(kind="testing.result") == []


async def test_pool_size_is_limited_per_site(world):
    labels = [(await world.register())["sample_id"] for _ in range(11)]
    too_many = await world.client.post("/api/testing/pools", json={"samples": labels}, headers=world.collector)
    assert too_many.status_code == 400 and "at most 10" in too_many.json()["detail"]
    await world.client.patch("/api/testing/sites/clinic-hn-1", json={"pool_size_max": 5}, headers=world.admin)
    six = await world.client.post("/api/testing/pools", json={"samples": labels[:6]}, headers=world.collector)
    assert six.status_code == 400 and "at most 5" in six.json()["detail"]
    pool = await world.pool(labels[:4])
    assert pool["max_size"] == 5
    over = await world.client.post(
        f"/api/testing/pools/{pool['id']}/samples", json={"samples": labels[4:6]}, headers=world.collector
    )
    assert over.status_code == 400 and "holds at most 5" in over.json()["detail"]
    added = await world.client.post(
        f"/api/testing/pools/{pool['id']}/samples", json={"samples": [labels[4]]}, headers=world.collector
    )
    assert added.status_code == 200 and added.json()["size"] == 5
    assert await Sample.count().where(Sample.pool.is_not_null()) == 5


async def test_a_sample_goes_in_one_pool_only(world):
    labels = [(await world.register())["sample_id"] for _ in range(3)]
    first = await world.pool(labels[:2])
    second = await world.client.post("/api/testing/pools", json={"samples": labels[1:]}, headers=world.collector)
    assert second.status_code == 409 and first["id"] in second.json()["detail"]
    # Nothing partial: the failed pool does not exist and the third sample is free.
    assert await Pool.count() == 1
    assert (await Sample.select(Sample.pool).where(Sample.id == labels[2]).first())["pool"] is None
    twice = await world.client.post(
        "/api/testing/pools", json={"samples": [labels[2], labels[2]]}, headers=world.collector
    )
    assert twice.status_code == 400 and "twice" in twice.json()["detail"]


async def test_pool_bad_input(world):
    mine = (await world.register())["sample_id"]
    elsewhere = (await world.register(headers=world.collector_b))["sample_id"]
    antigen = (await world.register(test_type="rapid-antigen"))["sample_id"]
    post = world.client.post
    mixed_sites = await post("/api/testing/pools", json={"samples": [mine, elsewhere]}, headers=world.collector)
    assert mixed_sites.status_code == 409 and SITE_B in mixed_sites.json()["detail"]
    not_poolable = await post(
        "/api/testing/pools", json={"samples": [antigen], "test_type": "rapid-antigen"}, headers=world.collector
    )
    assert not_poolable.status_code == 400 and "not pooled" in not_poolable.json()["detail"]
    wrong_type = await post("/api/testing/pools", json={"samples": [antigen]}, headers=world.collector)
    assert wrong_type.status_code == 409
    unknown = await post("/api/testing/pools", json={"samples": [new_label("sample")]}, headers=world.collector)
    assert unknown.status_code == 404
    pool_in_pool = await post("/api/testing/pools", json={"samples": [new_label("pool")]}, headers=world.collector)
    assert pool_in_pool.status_code == 400
    empty = await post("/api/testing/pools", json={"samples": []}, headers=world.collector)
    assert empty.status_code == 400
    other_site = await post(
        "/api/testing/pools", json={"samples": [elsewhere], "site": SITE_B}, headers=world.collector
    )
    assert other_site.status_code == 403
    assert await Pool.count() == 0


async def test_pre_printed_pool_label(world):
    issued = await world.client.post("/api/testing/labels", json={"kind": "pool", "count": 1}, headers=world.collector)
    label = issued.json()["labels"][0]
    sample = (await world.register())["sample_id"]
    pool = await world.pool([sample], label=label)
    assert pool["id"] == label
    again = await world.client.post(
        "/api/testing/pools",
        json={"samples": [(await world.register())["sample_id"]], "label": label},
        headers=world.collector,
    )
    assert again.status_code == 409
    svg = await world.client.get(f"/api/testing/pools/{label}/label", headers=world.collector)
    assert svg.status_code == 200 and label[:16] in svg.text


async def test_lab_receipt_by_label(world):
    single = (await world.register())["sample_id"]
    members = [(await world.register())["sample_id"] for _ in range(2)]
    pool = await world.pool(members)
    unknown = await world.receive([single, new_label("sample")])
    assert unknown.status_code == 404 and "labels[1]" in unknown.json()["detail"]
    assert await Sample.count().where(Sample.status == "at_lab") == 0  # all or none
    member_alone = await world.receive([members[0]])
    assert member_alone.status_code == 409 and pool["id"] in member_alone.json()["detail"]
    ok = await world.receive([single, pool["id"]])
    assert ok.status_code == 201 and [r["kind"] for r in ok.json()] == ["sample", "pool"]
    again = await world.receive([single])
    assert again.status_code == 409 and "already received" in again.json()["detail"]
    again = await world.receive([pool["id"]], headers=world.lab_b)
    assert again.status_code == 409
    closed = await world.client.post(
        f"/api/testing/pools/{pool['id']}/samples",
        json={"samples": [(await world.register())["sample_id"]]},
        headers=world.collector,
    )
    assert closed.status_code == 409
    rows = await Sample.select(Sample.lab, Sample.status).where(Sample.id.is_in(members))
    assert rows == [{"lab": LAB, "status": "at_lab"}] * 2
    not_lab = await world.receive([single], headers=world.collector)
    assert not_lab.status_code == 403


async def test_result_entry_bad_input(world):
    waiting = (await world.register())["sample_id"]
    members = [(await world.register())["sample_id"] for _ in range(2)]
    pool = await world.pool(members)
    never_received = await world.result(waiting, "negative")
    assert never_received.status_code == 409 and "not been received" in never_received.json()["detail"]
    await world.receive([waiting, pool["id"]])
    member_first = await world.result(members[0], "negative")
    assert member_first.status_code == 409 and "pool" in member_first.json()["detail"]
    other_lab = await world.result(waiting, "negative", headers=world.lab_b)
    assert other_lab.status_code == 409 and LAB in other_lab.json()["detail"]
    unknown = await world.result(new_label("sample"), "negative")
    assert unknown.status_code == 404
    bad_outcome = await world.result(waiting, "maybe")
    assert bad_outcome.status_code == 400 and "outcome" in bad_outcome.text
    bad_ct = await world.result(waiting, "positive", ct_value=-1)
    assert bad_ct.status_code == 400 and "ct_value" in bad_ct.text
    assert (await world.result(waiting, "negative")).status_code == 201
    twice = await world.result(waiting, "positive")
    assert twice.status_code == 409 and "correction" in twice.json()["detail"]
    assert (await world.result(pool["id"], "negative")).status_code == 201
    pool_twice = await world.result(pool["id"], "positive")
    assert pool_twice.status_code == 409
    collector = await world.result(waiting, "negative", headers=world.collector)
    assert collector.status_code == 403
    assert await ResultVersion.count() == 3


async def test_antigen_results_have_no_ct(world):
    sample = (await world.register(test_type="rapid-antigen"))["sample_id"]
    await world.receive([sample])
    with_ct = await world.result(sample, "positive", ct_value=20)
    assert with_ct.status_code == 400 and "ct_value" in with_ct.json()["detail"]
    assert (await world.result(sample, "positive")).status_code == 201
