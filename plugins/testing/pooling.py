"""Pooled testing: filling pool tubes, and Dorfman deconvolution of a pool's result.

A collector puts up to N samples of one site (N per site, default 10) in
one pool tube with its own label; the lab tests the pool as one sample.
Dorfman's rule: a negative pool makes every member negative; a positive or
invalid pool orders an individual retest of every member, whose results
then come one by one. A sample is in at most one pool, ever.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from core import Conflict, InvalidInput, NotFound, Resource, clock
from plugins.testing import bulk
from plugins.testing.catalogue import get_test_type
from plugins.testing.identifiers import new_label, parse_label
from plugins.testing.places import NO_LAB, load_site, site_of, use_label
from plugins.testing.schemas import PoolAdd, PoolIn, PoolResultView, PoolView, RetestView
from plugins.testing.tables import Pool, PoolResultVersion, RetestOrder, Sample

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal


class Deconvolution(msgspec.Struct, frozen=True, kw_only=True):
    """What a pool's result means for its members: who is negative, who must be retested."""

    negative: tuple[str, ...] = ()
    retest: tuple[str, ...] = ()


def dorfman(pool_outcome: str, members: list[str]) -> Deconvolution:
    """Dorfman's two-stage rule for one pool."""
    if pool_outcome == "negative":
        return Deconvolution(negative=tuple(members))
    if pool_outcome in ("positive", "invalid"):
        return Deconvolution(retest=tuple(members))
    raise ValueError(f"unknown pool outcome {pool_outcome!r}")


# -- filling pools ----------------------------------------------------------------------


async def create_pool(platform: Platform, principal: Principal, data: PoolIn) -> PoolView:
    site = await load_site(site_of(principal, data.site))
    await platform.access.check(
        principal, "testing.pool.create", Resource(kind="pool", province=site["province"], site=site["code"])
    )
    test_type = get_test_type(platform, data.test_type)
    if not test_type.poolable:
        raise InvalidInput(f"test_type: {test_type.code} samples are not pooled; test them one by one")
    labels = _sample_labels(data.samples)
    if len(labels) > site["pool_size_max"]:
        raise InvalidInput(
            f"samples: a pool at site {site['code']} holds at most {site['pool_size_max']} samples; "
            f"{len(labels)} were given"
        )
    if data.label is not None:
        kind, pool_id = parse_label(data.label)
        if kind != "pool":
            raise InvalidInput(f"label: {pool_id} is a sample label; use a pool label")
    else:
        pool_id = new_label("pool")
    async with platform.db.transaction():
        if data.label is not None:
            await use_label(pool_id, "pool", site["code"])
        await Pool.insert(
            Pool(
                id=pool_id,
                test_type=test_type.code,
                site=site["code"],
                province=site["province"],
                max_size=site["pool_size_max"],
                size=0,
                created_by=principal.id,
                created_at=clock.now(),
                status="open",
            )
        )
        await _add_members(platform, pool_id, labels)
    return await pool_view(platform, principal, pool_id)


async def add_to_pool(platform: Platform, principal: Principal, pool_label: str, data: PoolAdd) -> PoolView:
    pool = await load_pool(pool_label)
    await platform.access.check(principal, "testing.pool.create", pool_resource(pool))
    labels = _sample_labels(data.samples)
    async with platform.db.transaction():
        await _add_members(platform, pool["id"], labels)
    return await pool_view(platform, principal, pool["id"])


async def _add_members(platform: Platform, pool_id: str, labels: list[str]) -> None:
    """Put samples in an open pool, within its size; all or none, safe against concurrent fills."""
    pool = await _locked(platform, Pool.select().where(Pool.id == pool_id)).first()
    assert pool is not None
    if pool["status"] != "open":
        raise Conflict(f"pool: {pool_id} is closed (it has gone to the lab)")
    if pool["size"] + len(labels) > pool["max_size"]:
        raise InvalidInput(
            f"samples: pool {pool_id} holds at most {pool['max_size']} samples; it has {pool['size']} "
            f"and {len(labels)} more were given"
        )
    found = {
        row["id"]: row
        for row in await Sample.select(Sample.id, Sample.site, Sample.test_type, Sample.pool, Sample.status).where(
            Sample.id.is_in(labels)
        )
    }
    for label in labels:
        sample = found.get(label)
        if sample is None:
            raise NotFound(f"samples: no sample {label}")
        if sample["pool"] is not None:
            raise Conflict(f"samples: {label} is already in pool {sample['pool']}; a sample goes in one pool only")
        if sample["status"] != "collected":
            raise Conflict(f"samples: {label} has gone to the lab on its own ({sample['status']}); it cannot be pooled")
        if sample["site"] != pool["site"]:
            raise Conflict(f"samples: {label} was collected at {sample['site']}, not at the pool's site {pool['site']}")
        if sample["test_type"] != pool["test_type"]:
            raise Conflict(f"samples: {label} is a {sample['test_type']} sample; the pool is {pool['test_type']}")
    now = clock.now()
    # The conditions repeat the checks above, so a concurrent fill cannot slip in between.
    pooled = (
        await Sample.update({Sample.pool: pool_id, Sample.pooled_at: now, Sample.status: "pooled"})
        .where(Sample.id.is_in(labels) & Sample.pool.is_null() & (Sample.status == "collected"))
        .returning(Sample.id)
    )
    if len(pooled) != len(labels):
        raise Conflict("samples: another request pooled some of these samples at the same time; try again")
    await Pool.update({Pool.size: pool["size"] + len(labels)}).where(Pool.id == pool_id)


# -- reading -------------------------------------------------------------------------------


async def pool_view(platform: Platform, principal: Principal, pool_label: str) -> PoolView:
    pool = await load_pool(pool_label)
    await platform.access.check(principal, "testing.pool.read", pool_resource(pool))
    members = await Sample.select(Sample.id).where(Sample.pool == pool["id"]).order_by(Sample.pooled_at)
    versions = (
        await PoolResultVersion.select().where(PoolResultVersion.pool == pool["id"]).order_by(PoolResultVersion.version)
    )
    return PoolView(
        id=pool["id"],
        test_type=pool["test_type"],
        site=pool["site"],
        province=pool["province"],
        max_size=pool["max_size"],
        size=pool["size"],
        status=pool["status"],
        created_at=clock.as_utc(pool["created_at"]),
        lab=pool["lab"],
        received_at=_utc(pool["received_at"]),
        outcome_at=_utc(pool["outcome_at"]),
        ct_value=pool["ct_value"],
        members=[row["id"] for row in members],
        result_version=pool["result_version"],
        results=[
            PoolResultView(
                version=row["version"],
                outcome=row["outcome"],
                ct_value=row["ct_value"],
                lab=row["lab"],
                entered_by=row["entered_by"],
                released_at=clock.as_utc(row["released_at"]),
                current=row["current"],
                reason=row["reason"],
            )
            for row in versions
        ],
    )


async def open_retests(platform: Platform, principal: Principal, lab: str | None = None) -> list[RetestView]:
    """Retest orders not yet done, for the labs the principal may see."""
    scope = await platform.access.scope(principal, "testing.retest.list")
    query = RetestOrder.select(
        RetestOrder.sample,
        RetestOrder.pool,
        RetestOrder.lab,
        RetestOrder.reason,
        RetestOrder.ordered_at,
    ).where(RetestOrder.done_at.is_null())
    where = scope.where(province=RetestOrder.province, lab=RetestOrder.lab)
    if where is not None:
        query = query.where(where)
    if lab is not None:
        query = query.where(RetestOrder.lab == lab)
    rows = await query.order_by(RetestOrder.ordered_at).limit(10_000)
    return [
        RetestView(
            sample_id=row["sample"],
            pool=row["pool"],
            lab=row["lab"],
            reason=row["reason"],
            ordered_at=clock.as_utc(row["ordered_at"]),
        )
        for row in rows
    ]


async def load_pool(label: str, *, field: str = "pool_id") -> dict[str, Any]:
    kind, pool_id = parse_label(label, field)
    if kind != "pool":
        raise InvalidInput(f"{field}: {pool_id} is a sample label")
    row = await Pool.select().where(Pool.id == pool_id).first()
    if row is None:
        raise NotFound(f"{field}: no pool {pool_id}")
    return dict(row)


def pool_resource(row: dict[str, Any]) -> Resource:
    return Resource(kind="pool", id=row["id"], province=row["province"], site=row["site"], lab=row["lab"] or NO_LAB)


# -- deconvolution (called by results when a pool's result is entered) ---------------------


async def members_of(platform: Platform, pool_ids: list[str]) -> dict[str, list[str]]:
    """The member sample ids of each pool."""
    members: dict[str, list[str]] = {pool_id: [] for pool_id in pool_ids}
    rows = await bulk.select_in(
        platform, 'SELECT "id", "pool" FROM testing_sample WHERE {in} ORDER BY "id"', '"pool"', pool_ids
    )
    for row in rows:
        members[row["pool"]].append(row["id"])
    return members


async def close_pools(
    platform: Platform, outcomes: dict[str, tuple[str, float | None]], *, lab: str, by: str, now: datetime
) -> None:
    """Store each pool's own outcome as its version 1; every pool must still be waiting for its result."""
    closed = await bulk.update_each(
        platform,
        Pool,
        {
            "status": "varchar",
            "outcome_at": "timestamptz",
            "ct_value": "float8",
            "entered_by": "varchar",
            "result_version": "int4",
        },
        [(pool_id, outcome, now, ct_value, by, 1) for pool_id, (outcome, ct_value) in outcomes.items()],
        only_if="status = 'at_lab'",
    )
    if len(closed) != len(outcomes):
        late = sorted(set(outcomes) - set(closed))
        raise Conflict(f"label: pool {late[0]} got a result from another request at the same time")
    await bulk.insert(
        platform,
        PoolResultVersion,
        POOL_RESULT_COLUMNS,
        [
            (uuid.uuid4(), pool_id, 1, outcome, ct_value, lab, by, now, True, "")
            for pool_id, (outcome, ct_value) in outcomes.items()
        ],
    )


POOL_RESULT_COLUMNS = (
    "id",
    "pool",
    "version",
    "outcome",
    "ct_value",
    "lab",
    "entered_by",
    "released_at",
    "current",
    "reason",
)


async def order_retests(
    platform: Platform,
    pool_outcomes: dict[str, str],
    members: dict[str, list[str]],
    labs: dict[str, tuple[str, str]],
    *,
    now: datetime,
) -> list[str]:
    """Individual retest orders for every member of the positive or invalid pools; returns their ids.

    ``labs`` gives each pool's lab and the lab's province, where its members are retested.
    """
    orders: list[tuple[Any, ...]] = []
    by_reason: dict[str, list[str]] = {}
    for pool_id, outcome in pool_outcomes.items():
        plan = dorfman(outcome, members[pool_id])
        reason = f"pool_{outcome}"
        lab, province = labs[pool_id]
        orders.extend((uuid.uuid4(), sample_id, pool_id, lab, province, reason, now) for sample_id in plan.retest)
        by_reason.setdefault(reason, []).extend(plan.retest)
    await bulk.insert(
        platform, RetestOrder, ("id", "sample", "pool", "lab", "province", "reason", "ordered_at"), orders
    )
    for reason, samples in by_reason.items():
        changes = {"status": "retest", "retest_ordered_at": now, "retest_reason": reason}
        moved = await bulk.update_ids(platform, Sample, changes, samples, only_if="status = 'at_lab'")
        if moved != len(samples):
            raise Conflict("label: members of these pools changed while their results were entered; try again")
    return [order[1] for order in orders]


# -- re-deriving members (called by results when a pool's result is corrected) ---------------


async def check_pool(platform: Platform, principal: Principal, action: str, row: dict[str, Any]) -> None:
    """Allow ``action`` when the pool's site side or, for a lab in another province, its lab side allows it."""
    site_side = pool_resource(row)
    if (await platform.access.decide(principal, action, site_side)).allowed:
        return
    if row["lab"] is not None and row["lab_province"] not in (None, row["province"]):
        lab_side = Resource(kind="pool", id=row["id"], province=row["lab_province"], site=NO_LAB, lab=row["lab"])
        if (await platform.access.decide(principal, action, lab_side)).allowed:
            return
    await platform.access.check(principal, action, site_side)


async def reorder_retests(pool: dict[str, Any], samples: list[str], reason: str, *, now: datetime) -> None:
    """Retest orders for members whose pool-derived result was withdrawn; a cancelled order opens again."""
    if not samples:
        return
    orders = [
        RetestOrder(
            id=uuid.uuid4(),
            sample=sample_id,
            pool=pool["id"],
            lab=pool["lab"],
            province=pool["lab_province"],
            reason=reason,
            ordered_at=now,
            done_at=None,
            cancelled_at=None,
        )
        for sample_id in samples
    ]
    await RetestOrder.insert(*orders).on_conflict(
        target=RetestOrder.sample,
        action="DO UPDATE",
        values=[
            RetestOrder.pool,
            RetestOrder.lab,
            RetestOrder.province,
            RetestOrder.reason,
            RetestOrder.ordered_at,
            RetestOrder.done_at,
            RetestOrder.cancelled_at,
        ],
    )


async def cancel_retests(samples: list[str], *, now: datetime) -> None:
    """Close the open retest orders of members that took a corrected negative pool result."""
    if samples:
        await RetestOrder.update({RetestOrder.done_at: now, RetestOrder.cancelled_at: now}).where(
            RetestOrder.sample.is_in(samples) & RetestOrder.done_at.is_null()
        )


async def change_retest_reason(pool_id: str, reason: str) -> None:
    """A positive pool corrected to invalid, or back: its members are still retested, for the new reason."""
    await RetestOrder.update({RetestOrder.reason: reason}).where(
        (RetestOrder.pool == pool_id) & RetestOrder.done_at.is_null()
    )
    await Sample.update({Sample.retest_reason: reason}).where((Sample.pool == pool_id) & (Sample.status == "retest"))


def _sample_labels(raw: list[str]) -> list[str]:
    labels: list[str] = []
    seen: set[str] = set()
    for index, text in enumerate(raw):
        kind, label = parse_label(text, f"samples[{index}]")
        if kind != "sample":
            raise InvalidInput(f"samples[{index}]: {label} is a pool label; pools do not go in pools")
        if label in seen:
            raise InvalidInput(f"samples[{index}]: {label} is listed twice")
        seen.add(label)
        labels.append(label)
    return labels


def _locked(platform: Platform, query: Any) -> Any:
    """``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's write transaction already holds the lock."""
    return query.lock_rows() if platform.db.kind == "postgres" else query


def _utc(value: datetime | None) -> datetime | None:
    return clock.as_utc(value) if value is not None else None
