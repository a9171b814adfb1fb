"""Collection sites and labs (each in a province), and the pre-printed labels issued to sites."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import Conflict, InvalidInput, NotFound, Resource, clock
from plugins.testing.identifiers import new_label
from plugins.testing.schemas import LabelsIn, LabelsIssued, LabIn, LabView, SiteIn, SitePatch, SiteView
from plugins.testing.tables import CollectionSite, Lab, LabelStock

if TYPE_CHECKING:
    from core.platform import Platform
    from core.principal import Principal

# Scoped roles read a resource without a lab as "any lab"; a sample no lab has received belongs to none.
NO_LAB = "(not received)"


async def create_site(platform: Platform, principal: Principal, data: SiteIn) -> SiteView:
    await platform.access.check(principal, "testing.site.manage", Resource(kind="site", province=data.province))
    if not await platform.province_exists(data.province):
        raise InvalidInput(f"province: unknown province code {data.province!r}")
    if await CollectionSite.exists().where(CollectionSite.code == data.code):
        raise Conflict(f"code: a collection site {data.code!r} already exists")
    pool_size = data.pool_size_max or settings_of(platform).pool_size_default
    await CollectionSite.insert(
        CollectionSite(
            code=data.code,
            name=data.name.strip(),
            province=data.province,
            pool_size_max=pool_size,
            active=True,
            created_at=clock.now(),
        )
    )
    return SiteView(
        code=data.code, name=data.name.strip(), province=data.province, pool_size_max=pool_size, active=True
    )


async def update_site(platform: Platform, principal: Principal, code: str, data: SitePatch) -> SiteView:
    site = await load_site(code, active_only=False)
    await platform.access.check(
        principal, "testing.site.manage", Resource(kind="site", id=code, province=site["province"])
    )
    changes: dict[Any, Any] = {}
    if data.name is not None:
        changes[CollectionSite.name] = data.name.strip()
    if data.pool_size_max is not None:
        changes[CollectionSite.pool_size_max] = data.pool_size_max
    if data.active is not None:
        changes[CollectionSite.active] = data.active
    if changes:
        await CollectionSite.update(changes).where(CollectionSite.code == code)
    return _site_view(await load_site(code, active_only=False))


async def list_sites(province: str | None = None) -> list[SiteView]:
    query = CollectionSite.select().order_by(CollectionSite.code)
    if province is not None:
        query = query.where(CollectionSite.province == province)
    return [_site_view(row) for row in await query]


async def create_lab(platform: Platform, principal: Principal, data: LabIn) -> LabView:
    await platform.access.check(principal, "testing.lab.manage", Resource(kind="lab", province=data.province))
    if not await platform.province_exists(data.province):
        raise InvalidInput(f"province: unknown province code {data.province!r}")
    if await Lab.exists().where(Lab.code == data.code):
        raise Conflict(f"code: a lab {data.code!r} already exists")
    await Lab.insert(
        Lab(code=data.code, name=data.name.strip(), province=data.province, active=True, created_at=clock.now())
    )
    return LabView(code=data.code, name=data.name.strip(), province=data.province, active=True)


async def list_labs(province: str | None = None) -> list[LabView]:
    query = Lab.select().order_by(Lab.code)
    if province is not None:
        query = query.where(Lab.province == province)
    return [LabView(code=r["code"], name=r["name"], province=r["province"], active=r["active"]) for r in await query]


async def issue_labels(platform: Platform, principal: Principal, data: LabelsIn) -> LabelsIssued:
    """Labels to print before collection; each can be used for one sample or pool of the site."""
    site = await load_site(site_of(principal, data.site))
    await platform.access.check(
        principal,
        "testing.label.issue",
        Resource(kind="label", province=site["province"], site=site["code"]),
    )
    now = clock.now()
    labels = [new_label(data.kind) for _ in range(data.count)]
    await LabelStock.insert(
        *[
            LabelStock(
                id=label,
                kind=data.kind,
                site=site["code"],
                province=site["province"],
                issued_by=principal.id,
                issued_at=now,
            )
            for label in labels
        ]
    )
    return LabelsIssued(site=site["code"], kind=data.kind, labels=labels)


async def use_label(label: str, kind: str, site: str) -> None:
    """Mark a pre-printed label used; 404 if it was never issued to ``site``, 409 if already used."""
    row = await LabelStock.select().where(LabelStock.id == label).first()
    if row is None or row["kind"] != kind:
        raise NotFound(f"label: {label} was not issued as a {kind} label")
    if row["site"] != site:
        raise Conflict(f"label: {label} was issued to site {row['site']}, not {site}")
    taken = (
        await LabelStock.update({LabelStock.used_at: clock.now()})
        .where((LabelStock.id == label) & LabelStock.used_at.is_null())
        .returning(LabelStock.id)
    )
    if not taken:
        raise Conflict(f"label: {label} is already used")


async def load_site(code: str, *, active_only: bool = True, field: str = "site") -> dict[str, Any]:
    row = await CollectionSite.select().where(CollectionSite.code == code).first()
    if row is None:
        raise NotFound(f"{field}: no collection site {code!r}")
    if active_only and not row["active"]:
        raise Conflict(f"{field}: collection site {code!r} is closed")
    return dict(row)


async def load_lab(code: str, *, field: str = "lab") -> dict[str, Any]:
    row = await Lab.select().where(Lab.code == code).first()
    if row is None:
        raise NotFound(f"{field}: no lab {code!r}")
    if not row["active"]:
        raise Conflict(f"{field}: lab {code!r} is closed")
    return dict(row)


def site_of(principal: Principal, given: str | None) -> str:
    """The site named in the request, else the principal's own site."""
    site = given or principal.site
    if not site:
        raise InvalidInput("site: give the collection site (your account has none)")
    return site


def lab_of(principal: Principal, given: str | None = None) -> str:
    """The lab named in the request, else the principal's own lab."""
    lab = given or principal.lab
    if not lab:
        raise InvalidInput("lab: give the lab (your account has none)")
    return lab


def settings_of(platform: Platform) -> Any:
    return platform.plugin_config("testing")


def _site_view(row: dict[str, Any]) -> SiteView:
    return SiteView(
        code=row["code"],
        name=row["name"],
        province=row["province"],
        pool_size_max=row["pool_size_max"],
        active=row["active"],
    )
