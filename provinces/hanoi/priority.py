"""Hà Nội's local vaccination priority group (August 2021: delivery drivers kept the city fed)."""

from __future__ import annotations

from plugins.vaccination.registry import PriorityGroup

SHIPPERS = "01.shippers"


def groups() -> list[PriorityGroup]:
    # Rank 7: right after the national essential-services group (6), before teachers.
    return [
        PriorityGroup(
            code=SHIPPERS,
            name_vi="Người giao hàng (shipper), lái xe công nghệ",
            name_en="Delivery drivers and ride-hailing drivers",
            rank=7,
        )
    ]
