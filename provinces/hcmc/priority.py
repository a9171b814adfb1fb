"""The city's local vaccination priority group."""

from __future__ import annotations

from plugins.vaccination.registry import PriorityGroup

MARKET_TRADERS = "79.market_traders"


def groups() -> list[PriorityGroup]:
    # Rank 7: right after the national essential-services group (6), before teachers.
    return [
        PriorityGroup(
            code=MARKET_TRADERS,
            name_vi="Tiểu thương, người làm việc tại chợ truyền thống và chợ đầu mối",
            name_en="Traders and workers at traditional and wholesale markets",
            rank=7,
        )
    ]
