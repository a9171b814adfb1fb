"""Registry: products with effective-dated rules, lots and stock per site, sites and sessions,
national priority groups, groups provinces add through the hook, and which groups may book."""

from __future__ import annotations

from datetime import date, timedelta

from core import hookimpl
from core.testing import http_client, staff_headers
from plugins.vaccination import localtime, registry
from plugins.vaccination.registry import PriorityGroup
from tests.plugins.vaccination.support import LOT, PRODUCT, PROVINCE, SITE, build_world, product_body


async def test_products_are_public_and_only_national_admins_add_them(world):
    api = world.api
    listed = (await api.get("/api/vaccination/products")).json()
    assert [p["code"] for p in listed] == [PRODUCT]
    assert listed[0]["rules"][0]["min_interval_days"] == 21

    anonymous = await api.post("/api/vaccination/products", json=product_body("VAXZEVRIA"))
    assert anonymous.status_code == 401
    province = await api.post("/api/vaccination/products", json=product_body("VAXZEVRIA"), headers=world.province_admin)
    assert province.status_code == 403
    again = await api.post("/api/vaccination/products", json=product_body(PRODUCT), headers=world.admin)
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]


async def test_bad_product_input_is_a_400_naming_the_field(world):
    body = product_body("VAXZEVRIA", min_age_years=18, max_age_years=12)
    response = await world.api.post("/api/vaccination/products", json=body, headers=world.admin)
    assert response.status_code == 400
    assert "max_age_years" in response.json()["detail"]
    bad_code = await world.api.post("/api/vaccination/products", json=product_body("lower case"), headers=world.admin)
    assert bad_code.status_code == 400
    assert "code" in bad_code.text
    no_booster_interval = product_body("VAXZEVRIA", booster_doses=1, booster_min_interval_days=None)
    response = await world.api.post("/api/vaccination/products", json=no_booster_interval, headers=world.admin)
    assert response.status_code == 400
    assert "booster_min_interval_days" in response.json()["detail"]
    assert [p["code"] for p in (await world.api.get("/api/vaccination/products")).json()] == [PRODUCT]


async def test_rules_are_effective_dated(world):
    today = localtime.today()
    past = await world.api.post(
        f"/api/vaccination/products/{PRODUCT}/rules",
        json={"effective_from": "2021-06-01", "primary_doses": 2, "min_interval_days": 28, "min_age_years": 12},
        headers=world.admin,
    )
    assert past.status_code == 400
    assert past.json()["detail"].startswith("effective_from:")
    later = today + timedelta(days=10)
    added = await world.api.post(
        f"/api/vaccination/products/{PRODUCT}/rules",
        json={"effective_from": later.isoformat(), "primary_doses": 2, "min_interval_days": 56, "min_age_years": 12},
        headers=world.admin,
    )
    assert added.status_code == 201, added.text
    assert (await registry.rule_for(PRODUCT, today))["min_interval_days"] == 21
    assert (await registry.rule_for(PRODUCT, later))["min_interval_days"] == 56
    assert (await registry.rule_for(PRODUCT, later + timedelta(days=300)))["min_interval_days"] == 56
    same_day = await world.api.post(
        f"/api/vaccination/products/{PRODUCT}/rules",
        json={"effective_from": later.isoformat(), "primary_doses": 2, "min_interval_days": 30, "min_age_years": 12},
        headers=world.admin,
    )
    assert same_day.status_code == 409
    unknown = await world.api.post(
        "/api/vaccination/products/NOPE/rules",
        json={"effective_from": later.isoformat(), "primary_doses": 2, "min_interval_days": 30, "min_age_years": 12},
        headers=world.admin,
    )
    assert unknown.status_code == 404


async def test_lots_and_stock_per_site(world):
    api = world.api
    stock = (await api.get(f"/api/vaccination/sites/{SITE}/stock", headers=world.vaccinator)).json()
    assert [(s["lot_number"], s["received"], s["used"], s["available"]) for s in stock] == [(LOT, 100, 0, 100)]
    more = await api.post(
        f"/api/vaccination/sites/{SITE}/stock",
        json={"product_code": PRODUCT, "lot_number": LOT, "doses": 20},
        headers=world.province_admin,
    )
    assert more.status_code == 201
    assert more.json()["received"] == 120

    unknown = await api.post(
        f"/api/vaccination/sites/{SITE}/stock",
        json={"product_code": PRODUCT, "lot_number": "NOPE", "doses": 5},
        headers=world.province_admin,
    )
    assert unknown.status_code == 400
    assert unknown.json()["detail"].startswith("lot_number: unknown lot")

    expired = await api.post(
        "/api/vaccination/lots",
        json={"number": "OLD1", "product_code": PRODUCT, "expires_on": "2021-01-31", "doses_per_vial": 6},
        headers=world.admin,
    )
    assert expired.status_code == 201
    refused = await api.post(
        f"/api/vaccination/sites/{SITE}/stock",
        json={"product_code": PRODUCT, "lot_number": "OLD1", "doses": 5},
        headers=world.province_admin,
    )
    assert refused.status_code == 400
    assert "expired" in refused.json()["detail"]

    duplicate = await api.post(
        "/api/vaccination/lots",
        json={"number": LOT, "product_code": PRODUCT, "expires_on": "2030-01-31", "doses_per_vial": 6},
        headers=world.admin,
    )
    assert duplicate.status_code == 409
    no_product = await api.post(
        "/api/vaccination/lots",
        json={"number": "X1", "product_code": "NOPE", "expires_on": "2030-01-31", "doses_per_vial": 6},
        headers=world.admin,
    )
    assert no_product.status_code == 404


async def test_province_staff_act_only_in_their_province(world):
    other_admin = await staff_headers(world.platform, ["province_admin"], province="79")
    site = await world.api.post(
        "/api/vaccination/sites", json={"id": "site-x", "name": "X", "province": PROVINCE}, headers=other_admin
    )
    assert site.status_code == 403
    stock = await world.api.post(
        f"/api/vaccination/sites/{SITE}/stock",
        json={"product_code": PRODUCT, "lot_number": LOT, "doses": 5},
        headers=other_admin,
    )
    assert stock.status_code == 403
    other_vaccinator = await staff_headers(world.platform, ["vaccinator"], province=PROVINCE, site="elsewhere")
    assert (await world.api.get(f"/api/vaccination/sites/{SITE}/stock", headers=other_vaccinator)).status_code == 403
    unknown_province = await world.api.post(
        "/api/vaccination/sites", json={"id": "site-y", "name": "Y", "province": "00"}, headers=world.admin
    )
    assert unknown_province.status_code == 400
    assert unknown_province.json()["detail"].startswith("province:")


async def test_sessions_are_listed_publicly_with_places_left(world):
    api = world.api
    tomorrow = localtime.today() + timedelta(days=1)
    await world.session(day=tomorrow, capacity=7)
    sessions = (await api.get("/api/vaccination/sessions", params={"province": PROVINCE})).json()
    assert [(s["day"], s["capacity"], s["places_left"]) for s in sessions] == [
        (localtime.today().isoformat(), 50, 50),
        (tomorrow.isoformat(), 7, 7),
    ]
    assert sessions[0]["site_name"] == "Trạm Y tế Dịch Vọng"
    assert (await api.get("/api/vaccination/sessions", params={"province": "79"})).json() == []
    past = await api.post(
        f"/api/vaccination/sites/{SITE}/sessions",
        json={"day": "2021-07-01", "starts_at": "08:00", "ends_at": "11:00", "product_code": PRODUCT, "capacity": 5},
        headers=world.province_admin,
    )
    assert past.status_code == 400
    backwards = await api.post(
        f"/api/vaccination/sites/{SITE}/sessions",
        json={
            "day": tomorrow.isoformat(),
            "starts_at": "11:00",
            "ends_at": "08:00",
            "product_code": PRODUCT,
            "capacity": 5,
        },
        headers=world.province_admin,
    )
    assert backwards.status_code == 400
    assert backwards.json()["detail"].startswith("ends_at:")
    bad_time = await api.post(
        f"/api/vaccination/sites/{SITE}/sessions",
        json={
            "day": tomorrow.isoformat(),
            "starts_at": "25:00",
            "ends_at": "26:00",
            "product_code": PRODUCT,
            "capacity": 5,
        },
        headers=world.province_admin,
    )
    assert bad_time.status_code == 400
    assert "starts_at" in bad_time.text


async def test_priority_groups_open_nationally_or_per_province(world):
    api = world.api
    groups = (await api.get("/api/vaccination/priority-groups", params={"province": PROVINCE})).json()
    assert groups[0]["code"] == "health_workers" and groups[0]["open"] is True
    assert {g["code"] for g in groups if g["open"]} == {"health_workers", "elderly", "general"}

    opened = await api.put(
        "/api/vaccination/priority-groups/open",
        json={"province": PROVINCE, "groups": ["teachers"]},
        headers=world.province_admin,
    )
    assert opened.status_code == 200, opened.text
    assert "teachers" in await registry.open_group_codes(PROVINCE)
    assert "teachers" not in await registry.open_group_codes("79")

    nationwide = await api.put(
        "/api/vaccination/priority-groups/open", json={"groups": ["teachers"]}, headers=world.province_admin
    )
    assert nationwide.status_code == 400
    assert nationwide.json()["detail"].startswith("province:")
    elsewhere = await api.put(
        "/api/vaccination/priority-groups/open",
        json={"province": "79", "groups": ["teachers"]},
        headers=world.province_admin,
    )
    assert elsewhere.status_code == 403
    unknown = await api.put(
        "/api/vaccination/priority-groups/open",
        json={"province": PROVINCE, "groups": ["astronauts"]},
        headers=world.province_admin,
    )
    assert unknown.status_code == 400
    assert "astronauts" in unknown.json()["detail"]


class HanoiGroups:
    """A province plugin adding a local priority group (delivery riders kept the city fed in 2021)."""

    PROVINCE = "01"

    @hookimpl
    def vaccination_priority_groups(self, province_code: str) -> list[PriorityGroup]:
        return [
            PriorityGroup(code="01.shippers", name_vi="Người giao hàng", name_en="Delivery riders", rank=7),
            PriorityGroup(code="shippers", name_vi="Sai mã", name_en="Wrong code: ignored", rank=1),
        ]


async def test_province_plugins_add_groups_for_their_province_only(make_platform, keys_dir):
    platform = await make_platform(
        extra_plugins=[("hanoi_groups", HanoiGroups())], plugin={"vaccination": {"keys_dir": str(keys_dir)}}
    )
    hanoi = [g.code for g in await registry.priority_groups(platform, "01")]
    assert "01.shippers" in hanoi
    assert "shippers" not in hanoi  # codes must carry the province prefix
    assert hanoi.index("01.shippers") > hanoi.index("essential_services")
    assert "01.shippers" not in [g.code for g in await registry.priority_groups(platform, "79")]

    async with http_client(platform) as api:
        world = await build_world(platform, api)
        opened = await api.put(
            "/api/vaccination/priority-groups/open",
            json={"province": "01", "groups": ["01.shippers"]},
            headers=world.province_admin,
        )
        assert opened.status_code == 200, opened.text
        other = await staff_headers(platform, ["province_admin"], province="79")
        refused = await api.put(
            "/api/vaccination/priority-groups/open", json={"province": "79", "groups": ["01.shippers"]}, headers=other
        )
        assert refused.status_code == 400
        headers, _ = await world.citizen()
        rider = await world.register(headers, priority_group="01.shippers")
        assert rider["person"]["priority_group"] == "01.shippers"
        booked = await world.book(headers, rider["person"]["id"])
        assert booked.status_code == 201, booked.text
        elsewhere_headers, _ = await world.citizen()
        refused_person = await world.register(
            elsewhere_headers, expect=400, priority_group="01.shippers", province="79"
        )
        assert refused_person["detail"].startswith("priority_group:")


def test_local_dates_are_vietnam_time():
    assert localtime.age_on(date(2000, 2, 29), date(2021, 2, 28)) == 20
    assert localtime.age_on(date(2000, 2, 29), date(2021, 3, 1)) == 21


async def test_demo_data_loads_once_and_is_bookable(vax, api):
    from plugins.vaccination import demo
    from plugins.vaccination.tables import Product, SiteSession

    await demo.load(vax)
    await demo.load(vax)
    assert await Product.count() == len(demo.PRODUCTS)
    assert await SiteSession.count() == len(demo.SITES) * 2 * 3
    sessions = (await api.get("/api/vaccination/sessions", params={"site": "vaxsite-hn-1"})).json()
    assert len(sessions) == 6 and all(s["places_left"] == 100 for s in sessions)
    groups = (await api.get("/api/vaccination/priority-groups", params={"province": "48"})).json()
    assert {g["code"] for g in groups if g["open"]} == {"health_workers", "frontline", "elderly", "chronic_illness"}
