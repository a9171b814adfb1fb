"""Public figures, without login: doses per day, province and product; coverage by age band and
priority group; stock per province. Aggregates only, computed in SQL; never a person.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from piccolo.query.functions.aggregate import Count, Sum

from plugins.vaccination import localtime
from plugins.vaccination.schemas import (
    CountFigures,
    CountRow,
    CoverageFigures,
    CoverageRow,
    StockFigures,
    StockRow,
)
from plugins.vaccination.tables import Dose, LotStock, Person

AGE_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("0-11", 0, 11),
    ("12-17", 12, 17),
    ("18-49", 18, 49),
    ("50-64", 50, 64),
    ("65+", 65, None),
)


async def doses(by: str, *, province: str | None, since: date | None, until: date | None) -> CountFigures:
    """Doses given, grouped by ``day``, ``province`` or ``product``."""
    column = {"day": Dose.administered_on, "province": Dose.province, "product": Dose.product}[by]
    query = Dose.select(column.as_alias("key"), Count(Dose.id, alias="doses")).group_by(column)
    clauses = []
    if province:
        clauses.append(Dose.province == province)
    if since:
        clauses.append(Dose.administered_on >= since)
    if until:
        clauses.append(Dose.administered_on <= until)
    for clause in clauses:
        query = query.where(clause)
    rows = await query
    out = sorted((CountRow(key=_key(row["key"]), doses=row["doses"]) for row in rows), key=lambda r: r.key)
    return CountFigures(by=by, rows=out, total=sum(r.doses for r in out))


async def coverage(by: str, *, province: str | None) -> CoverageFigures:
    """People registered, with at least one dose, with the primary series complete, and boosted.

    Age bands are counted by year of birth (age reached this calendar year),
    which is what population tables use.
    """
    column = Person.birth_year if by == "age_band" else Person.priority_group
    base = [Person.duplicate_status != "merged"]
    if province:
        base.append(Person.province == province)
    measures = {
        "registered": None,
        "at_least_one_dose": Person.doses_received >= 1,
        "primary_complete": Person.primary_complete == True,  # noqa: E712
        "boosted": Person.boosters >= 1,
    }
    counts: dict[str, dict[str, int]] = {}
    for measure, condition in measures.items():
        query = Person.select(column.as_alias("key"), Count(Person.id, alias="n")).group_by(column)
        for clause in [*base, *([condition] if condition is not None else [])]:
            query = query.where(clause)
        for row in await query:
            key = _band(row["key"]) if by == "age_band" else str(row["key"])
            counts.setdefault(key, {}).setdefault(measure, 0)
            counts[key][measure] += row["n"]
    order = [band for band, _, _ in AGE_BANDS] if by == "age_band" else sorted(counts)
    rows = [
        CoverageRow(
            key=key,
            registered=counts[key].get("registered", 0),
            at_least_one_dose=counts[key].get("at_least_one_dose", 0),
            primary_complete=counts[key].get("primary_complete", 0),
            boosted=counts[key].get("boosted", 0),
        )
        for key in order
        if key in counts
    ]
    return CoverageFigures(by=by, rows=rows)


async def stock(*, province: str | None) -> StockFigures:
    """Doses received and used per province and product; what is left, and what expired unused."""
    today = localtime.today()
    group = (LotStock.province, LotStock.lot.product)
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for expired in (False, True):
        query = LotStock.select(
            LotStock.province.as_alias("province"),
            LotStock.lot.product.as_alias("product"),
            Sum(LotStock.received, alias="received"),
            Sum(LotStock.used, alias="used"),
        ).group_by(*group)
        query = query.where(LotStock.lot.expires_on < today if expired else LotStock.lot.expires_on >= today)
        if province:
            query = query.where(LotStock.province == province)
        for row in await query:
            entry = totals.setdefault(
                (row["province"], row["product"]), {"received": 0, "used": 0, "left": 0, "lost": 0}
            )
            received, used = int(row["received"] or 0), int(row["used"] or 0)
            entry["received"] += received
            entry["used"] += used
            entry["lost" if expired else "left"] += received - used
    return StockFigures(
        rows=[
            StockRow(
                province=prov,
                product=product,
                received=v["received"],
                used=v["used"],
                available=v["left"],
                expired_unused=v["lost"],
            )
            for (prov, product), v in sorted(totals.items())
        ]
    )


def _band(birth_year: Any) -> str:
    age = localtime.today().year - int(birth_year)
    for name, low, high in AGE_BANDS:
        if age >= low and (high is None or age <= high):
            return name
    return AGE_BANDS[0][0]


def _key(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)
