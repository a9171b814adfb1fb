"""Administrative units (provinces and their official codes), loaded from a JSON file.

The packaged file lists the 63 provinces as coded in 2021; a deployment can
point ``admin_units_file`` at its own file in the same shape
(``{"units": [{"code", "name", "name_en", "level", "parent_code"?}]}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import msgspec

from core.errors import InvalidInput
from core.tables import AdminUnit

PACKAGED = Path(__file__).parent / "data" / "admin_units.json"


class Unit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{2,5}$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    name_en: Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
    level: str = "province"
    parent_code: str | None = None


class UnitFile(msgspec.Struct, frozen=True):
    units: list[Unit]
    source: str = ""


def read_units(path: Path | str | None = None) -> list[Unit]:
    source = Path(path) if path else PACKAGED
    try:
        data = msgspec.json.decode(source.read_bytes(), type=UnitFile)
    except FileNotFoundError as exc:
        raise InvalidInput(f"admin_units_file: {source} does not exist") from exc
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"admin_units_file: {source}: {exc}") from exc
    codes = [u.code for u in data.units]
    if len(codes) != len(set(codes)):
        raise InvalidInput(f"admin_units_file: {source}: duplicate codes")
    return data.units


async def load_units(path: Path | str | None = None) -> int:
    """Insert or update every unit of the file; returns how many were written."""
    units = read_units(path)
    for unit in units:
        await AdminUnit.insert(AdminUnit(**msgspec.structs.asdict(unit))).on_conflict(
            target=AdminUnit.code,
            action="DO UPDATE",
            values=[AdminUnit.name, AdminUnit.name_en, AdminUnit.level, AdminUnit.parent_code],
        )
    return len(units)


async def ensure_units(path: Path | str | None = None) -> int:
    """Load the units when the table is empty (first run); returns how many were loaded."""
    if await AdminUnit.count() > 0:
        return 0
    return await load_units(path)
