"""Demo data for ``phongdich demo``: a collection site and a lab per demo province, and a pooled batch.

The site and lab codes match the demo staff accounts' (``clinic-hn-1``,
``lab-hn-1``...), so the demo collector and lab technician can work at
once. Idempotent: places are created once; samples only while a site has
none.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from core import Principal, clock
from core.demo import DEMO_PROVINCES
from plugins.testing import pooling, reception, results, samples
from plugins.testing.schemas import PersonIn, PoolIn, SampleIn
from plugins.testing.tables import CollectionSite, Lab, Sample

if TYPE_CHECKING:
    from core.platform import Platform

DEMO = Principal(id="demo:testing", kind="service", roles=frozenset({"national_admin"}))
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung", "Hoàng Văn Em", "Vũ Thị Phương"]


async def load_demo_data(platform: Platform) -> None:
    pool_size = platform.plugin_config("testing").pool_size_default
    for province, short in DEMO_PROVINCES.items():
        site, lab = f"clinic-{short}-1", f"lab-{short}-1"
        await CollectionSite.insert(
            CollectionSite(
                code=site,
                name=f"Trạm lấy mẫu {short.upper()} 1",
                province=province,
                pool_size_max=pool_size,
                active=True,
                created_at=clock.now(),
            )
        ).on_conflict(target=CollectionSite.code, action="DO NOTHING")
        await Lab.insert(
            Lab(
                code=lab,
                name=f"Phòng xét nghiệm {short.upper()} 1",
                province=province,
                active=True,
                created_at=clock.now(),
            )
        ).on_conflict(target=Lab.code, action="DO NOTHING")
        if await Sample.exists().where(Sample.site == site):
            continue
        labels = []
        for index, name in enumerate(NAMES):
            person = PersonIn(
                full_name=name,
                date_of_birth=date(1970 + index * 7, index + 1, 10 + index),
                phone=f"09{int(province):02d}00{index:04d}",
            )
            receipt = await samples.register_sample(platform, DEMO, SampleIn(site=site, person=person))
            labels.append(receipt.sample_id)
        pool = await pooling.create_pool(platform, DEMO, PoolIn(site=site, samples=labels[:5]))
        await reception.receive(platform, DEMO, [pool.id, labels[5]], lab)
        entries = [
            results.ResultEntry(row=1, label=pool.id, outcome="negative"),
            results.ResultEntry(row=2, label=labels[5], outcome="positive", ct_value=24.0),
        ]
        await results.enter_results(platform, DEMO, entries, lab=lab)
