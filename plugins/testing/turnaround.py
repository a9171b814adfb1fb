"""Turnaround: how long samples take from collection to receipt to result, and which are overdue.

Percentiles are computed per lab or per site over the samples whose first
result was released in the period, within the principal's scope (filtered
in SQL). Overdue samples were collected more than ``overdue_hours`` (48 by
default) ago and have no result yet. Neither carries personal data.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from core import InvalidInput, clock
from plugins.testing.places import settings_of
from plugins.testing.schemas import OverdueSample, Percentiles, TurnaroundGroup, TurnaroundView
from plugins.testing.tables import Sample

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal

GroupBy = Literal["lab", "site"]
MAX_PERIOD = timedelta(days=366)


async def turnaround(
    platform: Platform,
    principal: Principal,
    *,
    group_by: GroupBy = "lab",
    since: datetime | None = None,
    until: datetime | None = None,
) -> TurnaroundView:
    """Percentiles of each step's duration, in hours, per lab or site, for results released in the period."""
    until = clock.as_utc(until) if until is not None else clock.now()
    since = clock.as_utc(since) if since is not None else until - timedelta(days=7)
    if since >= until:
        raise InvalidInput("since: must be before until")
    if until - since > MAX_PERIOD:
        raise InvalidInput("since: the period can be at most 366 days")
    scope = await platform.access.scope(principal, "testing.turnaround.read")
    query = Sample.select(
        Sample.site, Sample.lab, Sample.collected_at, Sample.received_at, Sample.first_result_at
    ).where((Sample.first_result_at >= since) & (Sample.first_result_at < until))
    where = scope.where(province=Sample.province, site=Sample.site, lab=Sample.lab, subject=Sample.subject_id)
    if where is not None:
        query = query.where(where)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in await query:
        groups.setdefault(row[group_by] or "(none)", []).append(row)
    return TurnaroundView(
        group_by=group_by,
        since=since,
        until=until,
        groups=[_group(key, rows) for key, rows in sorted(groups.items())],
    )


async def overdue(platform: Platform, principal: Principal, *, limit: int = 1000) -> list[OverdueSample]:
    """Samples without a result collected longer ago than ``overdue_hours``, oldest first."""
    hours = settings_of(platform).overdue_hours
    now = clock.now()
    scope = await platform.access.scope(principal, "testing.overdue.list")
    query = Sample.select(
        Sample.id,
        Sample.test_type,
        Sample.site,
        Sample.province,
        Sample.lab,
        Sample.pool,
        Sample.status,
        Sample.collected_at,
    ).where(Sample.result.is_null() & (Sample.collected_at < now - timedelta(hours=hours)))
    where = scope.where(province=Sample.province, site=Sample.site, lab=Sample.lab, subject=Sample.subject_id)
    if where is not None:
        query = query.where(where)
    rows = await query.order_by(Sample.collected_at).limit(limit)
    return [
        OverdueSample(
            sample_id=row["id"],
            test_type=row["test_type"],
            site=row["site"],
            province=row["province"],
            lab=row["lab"],
            pool=row["pool"],
            status=row["status"],
            collected_at=clock.as_utc(row["collected_at"]),
            hours_since_collection=round(_hours(clock.as_utc(row["collected_at"]), now), 1),
        )
        for row in rows
    ]


def percentiles(values: list[float]) -> Percentiles:
    """p50, p90, p95 (linear interpolation between closest ranks) and the maximum."""
    if not values:
        return Percentiles(count=0, p50=None, p90=None, p95=None, max=None)
    ordered = sorted(values)
    return Percentiles(
        count=len(ordered),
        p50=round(_quantile(ordered, 0.50), 2),
        p90=round(_quantile(ordered, 0.90), 2),
        p95=round(_quantile(ordered, 0.95), 2),
        max=round(ordered[-1], 2),
    )


def _group(key: str, rows: list[dict[str, Any]]) -> TurnaroundGroup:
    to_receipt, to_result, overall = [], [], []
    for row in rows:
        collected = clock.as_utc(row["collected_at"])
        resulted = clock.as_utc(row["first_result_at"])
        overall.append(_hours(collected, resulted))
        if row["received_at"] is not None:
            received = clock.as_utc(row["received_at"])
            to_receipt.append(_hours(collected, received))
            to_result.append(_hours(received, resulted))
    return TurnaroundGroup(
        key=key,
        samples=len(rows),
        collection_to_receipt=percentiles(to_receipt),
        receipt_to_result=percentiles(to_result),
        collection_to_result=percentiles(overall),
    )


def _quantile(ordered: list[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600
