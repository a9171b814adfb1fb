"""Demo data for ``phongdich demo``: provinces, staff of every role, then each plugin's own.

Idempotent: accounts are created once; every run sets a fresh demo password
on them and prints it, so the operator always knows how to sign in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from core.admin_units import ensure_units
from core.identity import hash_password
from core.principal import (
    EPIDEMIOLOGIST,
    LAB_TECHNICIAN,
    NATIONAL_ADMIN,
    PROVINCE_ADMIN,
    SAMPLE_COLLECTOR,
    VACCINATOR,
    VENUE_OPERATOR,
)
from core.tables import StaffAccount

if TYPE_CHECKING:
    from core.platform import Platform

DEMO_PROVINCES = {"01": "hn", "79": "hcm", "48": "dn"}
SCOPED_ROLES = (
    (PROVINCE_ADMIN, None, None),
    (EPIDEMIOLOGIST, None, None),
    (VENUE_OPERATOR, "venue", None),
    (SAMPLE_COLLECTOR, "clinic", None),
    (LAB_TECHNICIAN, None, "lab"),
    (VACCINATOR, "vaxsite", None),
)


def demo_accounts() -> list[dict[str, object]]:
    accounts: list[dict[str, object]] = [
        {
            "username": "moh.admin",
            "display_name": "Bộ Y tế - Quản trị",
            "roles": [NATIONAL_ADMIN],
            "province": None,
            "site": None,
            "lab": None,
        },
    ]
    for code, short in DEMO_PROVINCES.items():
        for role, site, lab in SCOPED_ROLES:
            accounts.append(
                {
                    "username": f"{short}.{role}",
                    "display_name": f"{role.replace('_', ' ').title()} {short.upper()}",
                    "roles": [role],
                    "province": code,
                    "site": f"{site}-{short}-1" if site else None,
                    "lab": f"{lab}-{short}-1" if lab else None,
                }
            )
    return accounts


async def load_demo(platform: Platform, password: str, progress: Callable[[str], None]) -> str:
    units = await ensure_units(platform.settings.admin_units_file)
    progress(f"administrative units: {units or 'already'} loaded")
    created = 0
    accounts = demo_accounts()
    for account in accounts:
        username = str(account["username"])
        exists = await StaffAccount.exists().where(StaffAccount.username == username)
        if exists:
            await StaffAccount.update({StaffAccount.password_hash: hash_password(password)}).where(
                StaffAccount.username == username
            )
        else:
            await platform.identity.create_staff(password=password, **account)  # type: ignore[arg-type]
            created += 1
    progress(f"staff accounts: {created} created, {len(accounts) - created} already there")
    contributors = [name for name, info in platform.plugins.items() if "load_demo_data" in info.hooks]
    await platform.hooks.collect_all("load_demo_data", platform=platform)
    progress(f"plugin demo data: {', '.join(contributors) or 'no plugin adds any yet'}")
    names = ", ".join(str(a["username"]) for a in accounts[:4])
    return (
        f"Demo ready: {len(accounts)} staff accounts ({names}, ...), all with password {password}\n"
        'Sign in: POST /api/auth/login {"username": "moh.admin", "password": "..."}'
    )
