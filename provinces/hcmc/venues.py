"""Venue types the city adds to the national list."""

from __future__ import annotations

from plugins.checkin.venues import VenueType

WHOLESALE_MARKET = "wholesale_market"


def venue_types() -> list[VenueType]:
    # The wholesale markets (Bình Điền, Hóc Môn, Thủ Đức) were the city's largest clusters in July 2021.
    return [VenueType(code=WHOLESALE_MARKET, label_vi="Chợ đầu mối", label_en="Wholesale market", risk_weight=2.0)]
