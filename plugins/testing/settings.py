"""The testing plugin's settings: section ``[plugin.testing]`` / ``PHONGDICH_PLUGIN__TESTING__<FIELD>``."""

from __future__ import annotations

from typing import Annotated

import msgspec

PoolSize = Annotated[int, msgspec.Meta(ge=1, le=50)]
Days = Annotated[int, msgspec.Meta(ge=1, le=3650)]
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


class TestingSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Every testing setting, with its default."""

    __test__ = False  # not a pytest test class

    # Samples per pool at a site that sets no size of its own (Vietnam pooled 5 or 10).
    pool_size_default: PoolSize = 10
    # A released result can be looked up with its result code for this many days, then the code expires.
    result_retention_days: Days = 90
    # Wrong second factors per result code before the code locks for good.
    lookup_attempt_limit: Count = 10
    # Lookups (right or wrong) one client address may make per hour.
    lookup_per_client_per_hour: Count = 120
    # One-time codes a result code may have sent to its phone per hour.
    lookup_otp_per_code_per_hour: Count = 3
    lookup_otp_ttl_minutes: Annotated[int, msgspec.Meta(ge=1, le=60)] = 10
    # How long a citizen's pre-registration code stays usable at a collection site.
    registration_ttl_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 30)] = 72
    # Samples collected longer ago than this without a result are overdue.
    overdue_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 30)] = 48
    # Negative test certificates (EU DCC): the key folder (shared with vaccination by default, so one
    # published trust list verifies both), the country and issuer written in them, and their validity.
    keys_dir: str = "keys"
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")] = "VN"
    issuer: Annotated[str, msgspec.Meta(min_length=1, max_length=80)] = "Ministry of Health of Viet Nam"
    certificate_hours: Annotated[int, msgspec.Meta(ge=1, le=24 * 14)] = 72
    # Largest result upload (CSV rows or FHIR observations) accepted at once.
    max_upload_rows: Count = 200_000
