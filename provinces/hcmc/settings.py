"""The city's settings section, ``[plugin.hcmc]`` (or ``PHONGDICH_PLUGIN__HCMC__<FIELD>``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

Weight = Annotated[float, msgspec.Meta(ge=0, le=20)]


class HcmcSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How much a contact met in a zone of each level counts in tracing (1.0 changes nothing)."""

    weight_green: Weight = 1.0
    weight_yellow: Weight = 1.5
    weight_orange: Weight = 2.0
    weight_red: Weight = 3.0
    # How long a worker may use the zone map it read before reading it again.
    zone_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0

    def __post_init__(self) -> None:
        # msgspec turns this into a validation error naming plugin.hcmc.
        weights = [self.weight_green, self.weight_yellow, self.weight_orange, self.weight_red]
        if weights != sorted(weights):
            raise ValueError("zone weights must not decrease from green to yellow, orange and red")

    def weight(self, level: str) -> float:
        return float(getattr(self, f"weight_{level}"))
