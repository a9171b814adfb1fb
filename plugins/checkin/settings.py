"""The checkin plugin's settings: ``[plugin.checkin]`` or ``PHONGDICH_PLUGIN__CHECKIN__<FIELD>``."""

from __future__ import annotations

from typing import Annotated

import msgspec

Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]
Minutes = Annotated[int, msgspec.Meta(ge=0, le=7 * 24 * 60)]
PerHour = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class CheckinSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Retention, tracing parameters and input limits, with the defaults used in 2021."""

    # Check-ins and declarations are deleted after this many days.
    retention_days: Days = 21
    # The infectious window opens this many days before symptom onset (or the sample date).
    infectious_days_before: Annotated[int, msgspec.Meta(ge=0, le=30)] = 2
    # A contact must have overlapped the case for at least this long to count.
    min_overlap_minutes: Minutes = 15
    # Aerosols linger: people who arrived up to this long after the case left count too.
    tail_minutes: Minutes = 30
    # A second scan at the same place within this many minutes is the same visit.
    same_visit_minutes: Minutes = 10
    # Stays longer than this are refused as absurd, and bound the tracing search.
    max_stay_minutes: Annotated[int, msgspec.Meta(ge=10, le=7 * 24 * 60)] = 24 * 60
    # A check-in may be sent late (offline phone) by at most this much.
    max_backdate_minutes: Minutes = 24 * 60
    # Clocks differ: a check-in time up to this far in the future is taken as now.
    clock_skew_seconds: Annotated[int, msgspec.Meta(ge=0, le=3600)] = 120
    checkins_per_identity_per_hour: PerHour = 30
    scans_per_device_per_hour: PerHour = 5000
    # Personal QR codes shown on a person's page are valid this long.
    personal_code_hours: Annotated[int, msgspec.Meta(ge=1, le=72)] = 24
    # F2 risk is the F1 risk scaled by this factor.
    f2_risk_factor: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    trace_f2: bool = True
    # Cases opened from a positive result notify their F1s at once.
    notify_automatic_cases: bool = True
    # Days, hours and notices are in local time: Vietnam is UTC+7 all year.
    local_utc_offset_minutes: Annotated[int, msgspec.Meta(ge=-720, le=840)] = 420
    # A worker keeps what a venue code stands for this long; a rotated or revoked code stops
    # working at once in the worker that changed it and within this time in the others.
    code_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    # PostgreSQL: daily partitions are created this many days ahead.
    partition_days_ahead: Annotated[int, msgspec.Meta(ge=1, le=60)] = 7
