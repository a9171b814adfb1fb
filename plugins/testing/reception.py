"""A lab receives samples and pools by scanning their labels.

Receiving a pool receives its members with it (their tubes travel with the
pool tube, ready for a retest). A pooled sample is received through its
pool only, so the lab never tests a member on its own by mistake.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import Conflict, InvalidInput, NotFound, Resource, clock
from plugins.testing.identifiers import parse_label
from plugins.testing.places import lab_of, load_lab
from plugins.testing.schemas import Received
from plugins.testing.tables import Pool, Sample

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal


async def receive(
    platform: Platform, principal: Principal, labels: list[str], lab: str | None = None
) -> list[Received]:
    """Receive every scanned label at the lab, or none of them (404 unknown, 409 already received)."""
    lab_row = await load_lab(lab_of(principal, lab))
    await platform.access.check(
        principal, "testing.lab.receive", Resource(kind="lab", province=lab_row["province"], lab=lab_row["code"])
    )
    parsed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, raw in enumerate(labels):
        kind, label = parse_label(raw, f"labels[{index}]")
        if label in seen:
            raise InvalidInput(f"labels[{index}]: {label} is scanned twice")
        seen.add(label)
        parsed.append((kind, label))
    now = clock.now()
    received: list[Received] = []
    lab_fields = {"lab": lab_row["code"], "lab_province": lab_row["province"], "received_at": now}
    async with platform.db.transaction():
        for index, (kind, label) in enumerate(parsed):
            field = f"labels[{index}]"
            if kind == "pool":
                received.append(await _receive_pool(label, lab_fields, field))
            else:
                received.append(await _receive_sample(label, lab_fields, field))
    return received


async def _receive_pool(label: str, lab_fields: dict[str, object], field: str) -> Received:
    pool = await Pool.select().where(Pool.id == label).first()
    if pool is None:
        raise NotFound(f"{field}: no pool {label}")
    if pool["received_at"] is not None:
        raise Conflict(f"{field}: pool {label} was already received by lab {pool['lab']}")
    if pool["size"] == 0:
        raise Conflict(f"{field}: pool {label} is empty; add its samples first")
    taken = (
        await Pool.update({Pool.status: "at_lab", **_columns(Pool, lab_fields)})
        .where((Pool.id == label) & (Pool.status == "open"))
        .returning(Pool.id)
    )
    if not taken:
        raise Conflict(f"{field}: pool {label} was received by another request at the same time")
    members = (
        await Sample.update({Sample.status: "at_lab", **_columns(Sample, lab_fields)})
        .where((Sample.pool == label) & (Sample.status == "pooled"))
        .returning(Sample.id)
    )
    if len(members) != pool["size"]:
        raise Conflict(f"{field}: pool {label} should hold {pool['size']} samples but {len(members)} are waiting")
    return Received(label=label, kind="pool", samples=len(members), received_at=lab_fields["received_at"])  # type: ignore[arg-type]


async def _receive_sample(label: str, lab_fields: dict[str, object], field: str) -> Received:
    sample = await Sample.select(Sample.id, Sample.pool, Sample.lab, Sample.status).where(Sample.id == label).first()
    if sample is None:
        raise NotFound(f"{field}: no sample {label}")
    if sample["pool"] is not None:
        raise Conflict(f"{field}: sample {label} is in pool {sample['pool']}; scan the pool's label")
    if sample["status"] != "collected":
        raise Conflict(f"{field}: sample {label} was already received by lab {sample['lab']}")
    taken = (
        await Sample.update({Sample.status: "at_lab", **_columns(Sample, lab_fields)})
        .where((Sample.id == label) & (Sample.status == "collected") & Sample.pool.is_null())
        .returning(Sample.id)
    )
    if not taken:
        raise Conflict(f"{field}: sample {label} was received or pooled by another request at the same time")
    return Received(label=label, kind="sample", samples=1, received_at=lab_fields["received_at"])  # type: ignore[arg-type]


def _columns(table: type[Pool] | type[Sample], values: dict[str, object]) -> dict[object, object]:
    return {getattr(table, name): value for name, value in values.items()}
