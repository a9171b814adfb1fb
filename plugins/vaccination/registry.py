"""The registry: vaccine products and their effective-dated rules, lots and stock, sites and
sessions, and priority groups (the national list, provinces' own, and which may book now).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from core import Conflict, InvalidInput, NotFound, Resource, clock
from core.principal import NATIONAL_ADMIN
from plugins.vaccination import localtime
from plugins.vaccination.constraints import is_unique_violation
from plugins.vaccination.schemas import (
    LotBody,
    LotView,
    OpeningBody,
    PriorityGroupView,
    ProductBody,
    ProductView,
    RuleBody,
    RuleView,
    SessionBody,
    SessionView,
    SiteBody,
    SiteView,
    StockBody,
    StockView,
)
from plugins.vaccination.tables import Lot, LotStock, PriorityOpening, Product, ProductRule, Site, SiteSession

if TYPE_CHECKING:
    from core import Principal
    from core.platform import Platform

log = structlog.get_logger("vaccination.registry")


class PriorityGroup(msgspec.Struct, frozen=True, kw_only=True):
    """A priority group. ``rank`` orders waitlists: lower goes first."""

    code: str
    name_vi: str
    name_en: str
    rank: int


# The national list follows Resolution 21/NQ-CP (2021) on COVID-19 vaccine priority.
NATIONAL_GROUPS: tuple[PriorityGroup, ...] = tuple(
    PriorityGroup(code=code, name_vi=vi, name_en=en, rank=rank)
    for rank, (code, vi, en) in enumerate(
        [
            ("health_workers", "Người làm việc trong các cơ sở y tế", "Health workers"),
            (
                "frontline",
                "Người tham gia phòng, chống dịch (ban chỉ đạo, khu cách ly, truy vết, tổ COVID cộng đồng)",
                "Frontline epidemic response staff (steering committees, quarantine, tracing, community teams)",
            ),
            ("armed_forces", "Lực lượng Quân đội", "Armed forces"),
            ("police", "Lực lượng Công an", "Police"),
            (
                "border_diplomatic",
                "Cán bộ ngoại giao, hải quan, xuất nhập cảnh",
                "Diplomatic, customs and immigration staff",
            ),
            (
                "essential_services",
                "Người cung cấp dịch vụ thiết yếu: hàng không, vận tải, du lịch, điện, nước",
                "Essential services: aviation, transport, tourism, electricity, water",
            ),
            ("teachers", "Giáo viên, người làm việc tại cơ sở giáo dục", "Teachers and education staff"),
            ("elderly", "Người từ 65 tuổi trở lên", "People aged 65 and over"),
            ("chronic_illness", "Người mắc bệnh mạn tính", "People with chronic illness"),
            ("overseas_duty", "Người được cử đi công tác, học tập, lao động ở nước ngoài", "People posted abroad"),
            ("outbreak_area", "Người sinh sống tại vùng có dịch", "Residents of outbreak areas"),
            ("poor_social", "Người nghèo, đối tượng chính sách xã hội", "Poor households and social beneficiaries"),
            ("industrial_workers", "Người lao động tại khu công nghiệp", "Workers in industrial zones"),
            ("religious", "Chức sắc, chức việc các tôn giáo", "Religious dignitaries"),
            ("general", "Các đối tượng khác", "Everyone else"),
        ],
        start=1,
    )
)
NATIONAL_CODES = frozenset(group.code for group in NATIONAL_GROUPS)


# -- products and rules ---------------------------------------------------------------------


async def create_product(platform: Platform, principal: Principal, body: ProductBody) -> ProductView:
    _check_rule(body.rule)
    now = clock.now()
    try:
        async with platform.db.transaction():
            await Product.insert(
                Product(
                    code=body.code,
                    name=body.name,
                    manufacturer=body.manufacturer,
                    dcc_vp=body.dcc_vp,
                    dcc_mp=body.dcc_mp,
                    dcc_ma=body.dcc_ma,
                    created_at=now,
                )
            )
            await _insert_rule(body.code, body.rule, principal)
    except Exception as exc:
        if is_unique_violation(exc):
            raise Conflict(f"code: product {body.code!r} already exists") from exc
        raise
    return await product_view(body.code)


async def add_rule(platform: Platform, principal: Principal, product_code: str, body: RuleBody) -> RuleView:
    """A new rule from ``effective_from`` on; bookings made under earlier rules keep theirs."""
    await product_row(product_code)
    _check_rule(body)
    if body.effective_from < localtime.today():
        raise InvalidInput(
            "effective_from: a rule change applies from today or later; bookings already made keep their rule"
        )
    try:
        rule_id = await _insert_rule(product_code, body, principal)
    except Exception as exc:
        if is_unique_violation(exc):
            raise Conflict(f"effective_from: {product_code} already has a rule from {body.effective_from}") from exc
        raise
    row = await ProductRule.select().where(ProductRule.id == rule_id).first()
    assert row is not None
    return rule_view(row)


async def list_products() -> list[ProductView]:
    products = await Product.select().order_by(Product.code)
    rules = await ProductRule.select().order_by(ProductRule.effective_from)
    by_product: dict[str, list[RuleView]] = {}
    for rule in rules:
        by_product.setdefault(rule["product"], []).append(rule_view(rule))
    return [_product_view(row, by_product.get(row["code"], [])) for row in products]


async def product_view(code: str) -> ProductView:
    row = await product_row(code)
    rules = await ProductRule.select().where(ProductRule.product == code).order_by(ProductRule.effective_from)
    return _product_view(row, [rule_view(rule) for rule in rules])


async def product_row(code: str, *, field: str = "product_code") -> dict[str, Any]:
    row = await Product.select().where(Product.code == code).first()
    if row is None:
        raise NotFound(f"{field}: no vaccine product {code!r}")
    return row


async def rule_for(product_code: str, on: date) -> dict[str, Any]:
    """The rule in force for ``product_code`` on ``on``: the latest one that took effect by then."""
    row = (
        await ProductRule.select()
        .where((ProductRule.product == product_code) & (ProductRule.effective_from <= on))
        .order_by(ProductRule.effective_from, ascending=False)
        .first()
    )
    if row is None:
        raise InvalidInput(f"product_code: {product_code} has no rule in force on {on}")
    return row


async def rule_row(rule_id: Any) -> dict[str, Any]:
    row = await ProductRule.select().where(ProductRule.id == rule_id).first()
    assert row is not None, "a booking always references an existing rule"
    return row


def rule_view(row: dict[str, Any]) -> RuleView:
    return RuleView(
        id=row["id"],
        product=row["product"],
        effective_from=row["effective_from"],
        primary_doses=row["primary_doses"],
        min_interval_days=row["min_interval_days"],
        max_interval_days=row["max_interval_days"],
        min_age_years=row["min_age_years"],
        max_age_years=row["max_age_years"],
        booster_doses=row["booster_doses"],
        booster_min_interval_days=row["booster_min_interval_days"],
    )


# -- lots and stock ----------------------------------------------------------------------


async def create_lot(body: LotBody) -> LotView:
    await product_row(body.product_code)
    lot_id = uuid.uuid4()
    try:
        await Lot.insert(
            Lot(
                id=lot_id,
                key=f"{body.product_code}:{body.number}",
                number=body.number,
                product=body.product_code,
                expires_on=body.expires_on,
                doses_per_vial=body.doses_per_vial,
                created_at=clock.now(),
            )
        )
    except Exception as exc:
        if is_unique_violation(exc):
            raise Conflict(f"number: lot {body.number} of {body.product_code} is already registered") from exc
        raise
    return LotView(
        id=lot_id,
        number=body.number,
        product=body.product_code,
        expires_on=body.expires_on,
        doses_per_vial=body.doses_per_vial,
    )


async def find_lot(product_code: str, number: str) -> dict[str, Any]:
    """The lot ``number`` of ``product_code``; a clear 400 when it is unknown or of another product."""
    row = await Lot.select().where(Lot.key == f"{product_code}:{number}").first()
    if row is not None:
        return row
    other = await Lot.select(Lot.product).where(Lot.number == number).first()
    if other is not None:
        raise InvalidInput(f"lot_number: lot {number} is of {other['product']}, not {product_code}")
    raise InvalidInput(f"lot_number: unknown lot {number} for {product_code}")


def check_not_expired(lot: dict[str, Any], on: date) -> None:
    if lot["expires_on"] < on:
        raise InvalidInput(f"lot_number: lot {lot['number']} expired on {lot['expires_on']} and cannot be used")


async def receive_stock(platform: Platform, principal: Principal, site_id: str, body: StockBody) -> StockView:
    site = await site_row(site_id)
    await platform.access.check(principal, "vaccination.stock.manage", site_resource(site))
    lot = await find_lot(body.product_code, body.lot_number)
    check_not_expired(lot, localtime.today())
    doses = doses_received(body, lot)
    key = f"{lot['id']}:{site_id}"
    now = clock.now()
    async with platform.db.transaction():
        await LotStock.insert(
            LotStock(
                id=uuid.uuid4(),
                key=key,
                lot=lot["id"],
                site=site_id,
                province=site["province"],
                received=0,
                used=0,
                updated_at=now,
            )
        ).on_conflict(target=LotStock.key, action="DO NOTHING")
        await LotStock.update({LotStock.received: LotStock.received + doses, LotStock.updated_at: now}).where(
            LotStock.key == key
        )
    stock = await _stock_rows(LotStock.key == key)
    return stock[0]


def doses_received(body: StockBody, lot: dict[str, Any]) -> int:
    """Stock is counted in doses; a delivery counted in vials is vials x the lot's doses per vial."""
    if body.doses is not None and body.vials is not None:
        raise InvalidInput("vials: give the doses received or the vials received, not both")
    if body.vials is not None:
        return int(body.vials * lot["doses_per_vial"])
    if body.doses is None:
        raise InvalidInput(
            f"doses: give the doses received, or the vials (lot {lot['number']} has {lot['doses_per_vial']} per vial)"
        )
    return body.doses


async def site_stock(platform: Platform, principal: Principal, site_id: str) -> list[StockView]:
    site = await site_row(site_id)
    await platform.access.check(principal, "vaccination.stock.read", site_resource(site))
    return await _stock_rows(LotStock.site == site_id)


async def take_one_dose(lot_id: Any, site_id: str) -> bool:
    """Use one dose of the lot at the site; False when none is left. Atomic, so stock never goes negative."""
    taken = await (
        LotStock.update({LotStock.used: LotStock.used + 1, LotStock.updated_at: clock.now()})
        .where((LotStock.key == f"{lot_id}:{site_id}") & (LotStock.used < LotStock.received))
        .returning(LotStock.id)
    )
    return bool(taken)


async def return_one_dose(lot_id: Any, site_id: str) -> None:
    """Put back a dose recorded against the wrong lot (a correction)."""
    await LotStock.update({LotStock.used: LotStock.used - 1, LotStock.updated_at: clock.now()}).where(
        (LotStock.key == f"{lot_id}:{site_id}") & (LotStock.used > 0)
    )


async def _stock_rows(where: Any) -> list[StockView]:
    rows = await LotStock.select(
        LotStock.site,
        LotStock.received,
        LotStock.used,
        LotStock.lot.number.as_alias("lot_number"),
        LotStock.lot.product.as_alias("product"),
        LotStock.lot.expires_on.as_alias("expires_on"),
        LotStock.lot.doses_per_vial.as_alias("doses_per_vial"),
    ).where(where)
    today = localtime.today()
    return [
        StockView(
            site=row["site"],
            product=row["product"],
            lot_number=row["lot_number"],
            expires_on=row["expires_on"],
            received=row["received"],
            used=row["used"],
            available=row["received"] - row["used"],
            expired=row["expires_on"] < today,
            doses_per_vial=row["doses_per_vial"],
            vials_available=(row["received"] - row["used"]) // row["doses_per_vial"],
        )
        for row in sorted(rows, key=lambda r: (r["product"], r["expires_on"], r["lot_number"]))
    ]


# -- sites and sessions --------------------------------------------------------------------


async def create_site(platform: Platform, principal: Principal, body: SiteBody) -> SiteView:
    await platform.access.check(
        principal, "vaccination.site.manage", Resource(kind="vaccination_site", province=body.province)
    )
    if not await platform.province_exists(body.province):
        raise InvalidInput(f"province: unknown province code {body.province!r}")
    try:
        await Site.insert(
            Site(
                id=body.id,
                name=body.name,
                province=body.province,
                address=body.address,
                active=True,
                created_at=clock.now(),
            )
        )
    except Exception as exc:
        if is_unique_violation(exc):
            raise Conflict(f"id: site {body.id!r} already exists") from exc
        raise
    return SiteView(id=body.id, name=body.name, province=body.province, address=body.address)


async def list_sites(province: str | None) -> list[SiteView]:
    query = Site.select().where(Site.active == True)  # noqa: E712
    if province:
        query = query.where(Site.province == province)
    rows = await query.order_by(Site.province).order_by(Site.id)
    return [SiteView(id=r["id"], name=r["name"], province=r["province"], address=r["address"]) for r in rows]


async def site_row(site_id: str, *, field: str = "site_id") -> dict[str, Any]:
    row = await Site.select().where(Site.id == site_id).first()
    if row is None:
        raise NotFound(f"{field}: no vaccination site {site_id!r}")
    return row


def site_resource(site: dict[str, Any]) -> Resource:
    return Resource(kind="vaccination_site", id=site["id"], province=site["province"], site=site["id"])


async def create_session(platform: Platform, principal: Principal, site_id: str, body: SessionBody) -> SessionView:
    site = await site_row(site_id)
    await platform.access.check(principal, "vaccination.session.manage", site_resource(site))
    await product_row(body.product_code)
    if body.ends_at <= body.starts_at:
        raise InvalidInput("ends_at: the session must end after it starts")
    if body.day < localtime.today():
        raise InvalidInput("day: a session cannot be in the past")
    session_id = uuid.uuid4()
    await SiteSession.insert(
        SiteSession(
            id=session_id,
            site=site_id,
            province=site["province"],
            day=body.day,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            product=body.product_code,
            capacity=body.capacity,
            booked=0,
            status="open",
            created_at=clock.now(),
        )
    )
    return (await _session_views(SiteSession.id == session_id))[0]


async def list_sessions(
    *, province: str | None, site: str | None, product: str | None, from_day: date | None, limit: int
) -> list[SessionView]:
    clauses = [SiteSession.day >= (from_day or localtime.today())]
    if province:
        clauses.append(SiteSession.province == province)
    if site:
        clauses.append(SiteSession.site == site)
    if product:
        clauses.append(SiteSession.product == product)
    where = clauses[0]
    for clause in clauses[1:]:
        where = where & clause
    return await _session_views(where, limit=limit)


async def session_row(session_id: Any) -> dict[str, Any]:
    row = await SiteSession.select().where(SiteSession.id == session_id).first()
    if row is None:
        raise NotFound("session_id: no such vaccination session")
    return row


async def session_view(session_id: Any) -> SessionView:
    views = await _session_views(SiteSession.id == session_id)
    if not views:
        raise NotFound("session_id: no such vaccination session")
    return views[0]


async def _session_views(where: Any, limit: int = 500) -> list[SessionView]:
    rows = await (
        SiteSession.select(*SiteSession.all_columns(), SiteSession.site.name.as_alias("site_name"))
        .where(where)
        .order_by(SiteSession.day)
        .order_by(SiteSession.starts_at)
        .limit(limit)
    )
    return [
        SessionView(
            id=row["id"],
            site=row["site"],
            site_name=row["site_name"],
            province=row["province"],
            day=row["day"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            product=row["product"],
            capacity=row["capacity"],
            booked=row["booked"],
            places_left=max(0, row["capacity"] - row["booked"]),
            status=row["status"],
        )
        for row in rows
    ]


# -- priority groups ----------------------------------------------------------------------------


async def priority_groups(platform: Platform, province: str) -> list[PriorityGroup]:
    """The national groups and the ones ``province``'s plugins add, in rank order."""
    groups = list(NATIONAL_GROUPS)
    contributed = await platform.hooks.collect(
        "vaccination_priority_groups", province=province, province_code=province, platform=platform
    )
    for group in (g for batch in contributed for g in batch):
        if not isinstance(group, PriorityGroup) or not group.code.startswith(f"{province}."):
            log.warning("priority_group.ignored", province=province, group=getattr(group, "code", repr(group)))
            continue
        groups.append(group)
    return sorted(groups, key=lambda g: (g.rank, g.code))


async def group_of(platform: Platform, province: str, code: str, *, field: str = "priority_group") -> PriorityGroup:
    for group in await priority_groups(platform, province):
        if group.code == code:
            return group
    raise InvalidInput(f"{field}: unknown priority group {code!r} in province {province}")


async def open_group_codes(province: str) -> set[str]:
    """Groups that may book in ``province`` now: those opened nationwide plus those opened there."""
    rows = await PriorityOpening.select(PriorityOpening.group_code).where(
        PriorityOpening.province.is_null() | (PriorityOpening.province == province)
    )
    return {row["group_code"] for row in rows}


async def group_views(platform: Platform, province: str) -> list[PriorityGroupView]:
    opened = await open_group_codes(province)
    return [
        PriorityGroupView(
            code=g.code,
            name_vi=g.name_vi,
            name_en=g.name_en,
            rank=g.rank,
            open=g.code in opened,
            scope="national" if g.code in NATIONAL_CODES else province,
        )
        for g in await priority_groups(platform, province)
    ]


async def set_openings(platform: Platform, principal: Principal, body: OpeningBody) -> list[str]:
    """Replace the set of groups that may book, nationwide or in one province; returns it."""
    if body.province is None:
        if NATIONAL_ADMIN not in principal.roles:
            raise InvalidInput("province: give your province code; only a national admin opens groups nationwide")
        unknown = sorted(set(body.groups) - NATIONAL_CODES)
        if unknown:
            raise InvalidInput(f"groups: not national priority groups: {', '.join(unknown)}")
    else:
        await platform.access.check(
            principal, "vaccination.priority.manage", Resource(kind="vaccination_priority", province=body.province)
        )
        known = {g.code for g in await priority_groups(platform, body.province)}
        unknown = sorted(set(body.groups) - known)
        if unknown:
            raise InvalidInput(f"groups: unknown in province {body.province}: {', '.join(unknown)}")
    scope_key = body.province or "*"
    now = clock.now()
    async with platform.db.transaction():
        if body.province is None:
            await PriorityOpening.delete().where(PriorityOpening.province.is_null())
        else:
            await PriorityOpening.delete().where(PriorityOpening.province == body.province)
        rows = [
            PriorityOpening(
                id=uuid.uuid4(),
                key=f"{scope_key}:{code}",
                province=body.province,
                group_code=code,
                opened_by=principal.id,
                opened_at=now,
            )
            for code in sorted(set(body.groups))
        ]
        if rows:
            await PriorityOpening.insert(*rows)
    return sorted(set(body.groups))


# -- helpers --------------------------------------------------------------------------------


def _check_rule(rule: RuleBody) -> None:
    if rule.max_age_years is not None and rule.max_age_years < rule.min_age_years:
        raise InvalidInput("rule.max_age_years: must not be below min_age_years")
    if rule.max_interval_days is not None and rule.max_interval_days < rule.min_interval_days:
        raise InvalidInput("rule.max_interval_days: must not be below min_interval_days")
    if rule.booster_doses > 0 and rule.booster_min_interval_days is None:
        raise InvalidInput("rule.booster_min_interval_days: required when booster_doses is above 0")


async def _insert_rule(product_code: str, rule: RuleBody, principal: Principal) -> uuid.UUID:
    rule_id = uuid.uuid4()
    await ProductRule.insert(
        ProductRule(
            id=rule_id,
            key=f"{product_code}:{rule.effective_from.isoformat()}",
            product=product_code,
            effective_from=rule.effective_from,
            primary_doses=rule.primary_doses,
            min_interval_days=rule.min_interval_days,
            max_interval_days=rule.max_interval_days,
            min_age_years=rule.min_age_years,
            max_age_years=rule.max_age_years,
            booster_doses=rule.booster_doses,
            booster_min_interval_days=rule.booster_min_interval_days,
            created_by=principal.id,
            created_at=clock.now(),
        )
    )
    return rule_id


def _product_view(row: dict[str, Any], rules: list[RuleView]) -> ProductView:
    return ProductView(
        code=row["code"],
        name=row["name"],
        manufacturer=row["manufacturer"],
        dcc_vp=row["dcc_vp"],
        dcc_mp=row["dcc_mp"],
        dcc_ma=row["dcc_ma"],
        rules=rules,
    )
