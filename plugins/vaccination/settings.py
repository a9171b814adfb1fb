"""The vaccination plugin's settings section, ``[plugin.vaccination]``."""

from __future__ import annotations

from typing import Annotated

import msgspec

Days = Annotated[int, msgspec.Meta(ge=0, le=3650)]


class VaccinationSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Read from ``[plugin.vaccination]`` or ``PHONGDICH_PLUGIN__VACCINATION__<FIELD>``."""

    # Where `phongdich keys init` puts the certificate signing keys.
    keys_dir: str = "keys"
    # ISO 3166 code written into certificates (issuer claim, "co", UVCI).
    country: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")] = "VN"
    # The "is" field of EU certificates, and the keys' organisation name.
    issuer: Annotated[str, msgspec.Meta(min_length=1, max_length=80)] = "Ministry of Health of Viet Nam"
    certificate_validity_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365
    max_dependants: Annotated[int, msgspec.Meta(ge=0, le=20)] = 4
    # Reminders: how many days before a dose is due, and after it is due when it counts as overdue.
    reminder_days_before: Days = 3
    overdue_after_days: Days = 14
