"""Demo data for ``phongdich demo``: products used in Viet Nam in 2021, lots, sites matching the
demo vaccinators (``vaxsite-hn-1``...), stock, sessions for the coming days, and open groups.

Idempotent: everything is keyed by its natural code and inserted once.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import TYPE_CHECKING

from core import clock
from plugins.vaccination import localtime
from plugins.vaccination.tables import Lot, LotStock, PriorityOpening, Product, ProductRule, Site, SiteSession

if TYPE_CHECKING:
    from core.platform import Platform

# code, name, manufacturer, vp, mp, ma, primary doses, min interval, max interval, min age
PRODUCTS = (
    (
        "VAXZEVRIA",
        "Vaxzevria (AstraZeneca)",
        "AstraZeneca AB",
        "29061000087103",  # eHN: COVID-19 non-replicating viral vector vaccine (J07BX03 is deprecated)
        "EU/1/21/1529",
        "ORG-100001699",
        2,
        56,
        84,
        18,
    ),
    (
        "COMIRNATY",
        "Comirnaty (Pfizer-BioNTech)",
        "BioNTech Manufacturing GmbH",
        "1119349007",
        "EU/1/20/1528",
        "ORG-100030215",
        2,
        21,
        42,
        12,
    ),
    (
        "SPIKEVAX",
        "Spikevax (Moderna)",
        "Moderna Biotech Spain S.L.",
        "1119349007",
        "EU/1/20/1507",
        "ORG-100031184",
        2,
        28,
        56,
        18,
    ),
    (
        "BBIBP-CORV",
        "Vero Cell (Sinopharm)",
        "China Sinopharm International Corp.",
        "1157024006",  # eHN: inactivated whole SARS-CoV-2 antigen vaccine
        "BBIBP-CorV",
        "ORG-100020693",
        2,
        21,
        28,
        18,
    ),
)
SITES = (
    ("vaxsite-hn-1", "Trạm Y tế phường Dịch Vọng", "01"),
    ("vaxsite-hcm-1", "Trung tâm Y tế quận 1", "79"),
    ("vaxsite-dn-1", "Bệnh viện Đà Nẵng", "48"),
)


async def load(platform: Platform) -> None:
    now = clock.now()
    today = localtime.today()
    for code, name, maker, vp, mp, ma, doses, min_days, max_days, min_age in PRODUCTS:
        if await Product.exists().where(Product.code == code):
            continue
        await Product.insert(
            Product(code=code, name=name, manufacturer=maker, dcc_vp=vp, dcc_mp=mp, dcc_ma=ma, created_at=now)
        )
        await ProductRule.insert(
            ProductRule(
                id=uuid.uuid4(),
                key=f"{code}:2021-01-01",
                product=code,
                effective_from=date(2021, 1, 1),
                primary_doses=doses,
                min_interval_days=min_days,
                max_interval_days=max_days,
                min_age_years=min_age,
                booster_doses=1,
                booster_min_interval_days=90,
                created_by="demo",
                created_at=now,
            )
        )
    for site_id, site_name, province in SITES:
        if await Site.exists().where(Site.id == site_id):
            continue
        await Site.insert(Site(id=site_id, name=site_name, province=province, address="", active=True, created_at=now))
        for code, *_rest in PRODUCTS[:2]:
            lot_id = uuid.uuid4()
            number = f"DEMO-{code[:3]}-{province}"
            await Lot.insert(
                Lot(
                    id=lot_id,
                    key=f"{code}:{number}",
                    number=number,
                    product=code,
                    expires_on=today + timedelta(days=120),
                    doses_per_vial=10,
                    created_at=now,
                )
            )
            await LotStock.insert(
                LotStock(
                    id=uuid.uuid4(),
                    key=f"{lot_id}:{site_id}",
                    lot=lot_id,
                    site=site_id,
                    province=province,
                    received=500,
                    used=0,
                    updated_at=now,
                )
            )
            for offset in range(3):
                await SiteSession.insert(
                    SiteSession(
                        id=uuid.uuid4(),
                        site=site_id,
                        province=province,
                        day=today + timedelta(days=offset),
                        starts_at="08:00",
                        ends_at="11:30",
                        product=code,
                        capacity=100,
                        booked=0,
                        status="open",
                        created_at=now,
                    )
                )
    for group in ("health_workers", "frontline", "elderly", "chronic_illness"):
        await PriorityOpening.insert(
            PriorityOpening(
                id=uuid.uuid4(), key=f"*:{group}", province=None, group_code=group, opened_by="demo", opened_at=now
            )
        ).on_conflict(target=PriorityOpening.key, action="DO NOTHING")
