"""The admin API: staff and keys within one's province, and province plugin switches."""

from __future__ import annotations

from core import Principal
from core.platform import Platform
from core.tables import AuditLog, ProvincePluginState, StaffAccount
from core.testing import TEST_PASSWORD, http_client, staff_headers
from tests.core.example_plugins.provinces import PROVINCE_HREFS, hanoi, saigon


def staff_body(username: str, roles: list[str], province: str | None = None, **extra) -> dict:
    return {
        "username": username,
        "password": TEST_PASSWORD,
        "display_name": username,
        "roles": roles,
        "province": province,
        **extra,
    }


async def test_province_admin_creates_staff_only_in_their_province(platform, client):
    admin = await staff_headers(platform, ["province_admin"], province="01")
    created = await client.post("/api/admin/staff", json=staff_body("hn.epi", ["epidemiologist"], "01"), headers=admin)
    assert created.status_code == 201, created.text
    row = await StaffAccount.select().where(StaffAccount.username == "hn.epi").first()
    assert row["province"] == "01"
    assert str(row["id"]) == created.json()["id"]

    elsewhere = await client.post(
        "/api/admin/staff", json=staff_body("hcm.epi", ["epidemiologist"], "79"), headers=admin
    )
    assert elsewhere.status_code == 403, elsewhere.text
    assert "province 79" in elsewhere.json()["detail"]
    nowhere = await client.post("/api/admin/staff", json=staff_body("any.epi", ["national_admin"]), headers=admin)
    assert nowhere.status_code == 400
    assert "national_admin" in nowhere.json()["detail"]
    assert await StaffAccount.count().where(StaffAccount.username.is_in(["hcm.epi", "any.epi"])) == 0


async def test_only_a_national_admin_grants_national_admin(platform, client):
    province_admin = await staff_headers(platform, ["province_admin"], province="01")
    refused = await client.post(
        "/api/admin/staff", json=staff_body("sneaky", ["national_admin"], "01"), headers=province_admin
    )
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("roles:")
    national = await staff_headers(platform, ["national_admin"])
    granted = await client.post("/api/admin/staff", json=staff_body("moh.two", ["national_admin"]), headers=national)
    assert granted.status_code == 201, granted.text
    # A national admin may create province staff anywhere.
    anywhere = await client.post(
        "/api/admin/staff", json=staff_body("hcm.pa", ["province_admin"], "79"), headers=national
    )
    assert anywhere.status_code == 201


async def test_staff_creation_rejects_bad_input_naming_the_field(platform, client):
    national = await staff_headers(platform, ["national_admin"])
    cases = {
        "password": staff_body("short.pw", ["epidemiologist"], "01", password="short"),
        "province": staff_body("bad.prov", ["epidemiologist"], "1"),
        "roles": staff_body("no.roles", [], "01"),
        "username": staff_body("a b", ["epidemiologist"], "01"),
    }
    for field, body in cases.items():
        response = await client.post("/api/admin/staff", json=body, headers=national)
        assert response.status_code == 400, (field, response.text)
        assert field in response.text
    unknown_role = await client.post("/api/admin/staff", json=staff_body("x.role", ["wizard"], "01"), headers=national)
    assert unknown_role.status_code == 400 and "wizard" in unknown_role.json()["detail"]
    unknown_province = await client.post(
        "/api/admin/staff", json=staff_body("x.prov", ["epidemiologist"], "99"), headers=national
    )
    assert unknown_province.status_code == 400 and "province" in unknown_province.json()["detail"]
    await client.post("/api/admin/staff", json=staff_body("taken", ["epidemiologist"], "01"), headers=national)
    duplicate = await client.post(
        "/api/admin/staff", json=staff_body("taken", ["epidemiologist"], "01"), headers=national
    )
    assert duplicate.status_code == 409


async def test_api_key_issue_and_revoke(platform, client):
    admin = await staff_headers(platform, ["province_admin"], province="01")
    other_admin = await staff_headers(platform, ["province_admin"], province="79")
    body = {"name": "Scanner at Cho Hom", "roles": ["device"], "province": "01", "site": "venue-hn-1"}
    issued = await client.post("/api/admin/api-keys", json=body, headers=admin)
    assert issued.status_code == 201, issued.text
    key = issued.json()
    device = {"X-API-Key": key["key"]}
    me = (await client.get("/api/me", headers=device)).json()
    assert (me["kind"], me["province"], me["site"], me["roles"]) == ("device", "01", "venue-hn-1", ["device"])

    # Another province's admin can neither issue keys here nor revoke this one.
    assert (await client.post("/api/admin/api-keys", json=body, headers=other_admin)).status_code == 403
    assert (await client.delete(f"/api/admin/api-keys/{key['id']}", headers=other_admin)).status_code == 403
    assert (await client.get("/api/me", headers=device)).status_code == 200

    revoked = await client.delete(f"/api/admin/api-keys/{key['id']}", headers=admin)
    assert revoked.status_code == 204
    assert (await client.get("/api/me", headers=device)).status_code == 401
    missing = await client.delete("/api/admin/api-keys/00000000-0000-0000-0000-000000000000", headers=admin)
    assert missing.status_code == 404
    # A device key cannot manage keys.
    second = (await client.post("/api/admin/api-keys", json=body, headers=admin)).json()
    assert (
        await client.post("/api/admin/api-keys", json=body, headers={"X-API-Key": second["key"]})
    ).status_code == 403


async def menu_hrefs(platform: Platform, province: str) -> list[str]:
    principal = Principal(id="staff:x", kind="staff", roles=frozenset({"epidemiologist"}), province=province)
    groups = await platform.hooks.collect("register_menu_items", province=province, principal=principal)
    return [item.href for group in groups for item in group if item.href in PROVINCE_HREFS]


async def test_province_plugin_switch_is_audited_and_takes_effect(start_platform):
    hn = hanoi()
    platform = await start_platform(("hanoi", hn), ("saigon", saigon()))
    hanoi_admin = await staff_headers(platform, ["province_admin"], province="01")
    saigon_admin = await staff_headers(platform, ["province_admin"], province="79")
    async with http_client(platform) as client:
        listed = (await client.get("/api/admin/province-plugins", headers=hanoi_admin)).json()
        assert listed == [{"name": "hanoi", "province": "01", "enabled": True}]

        # Saigon's admin cannot switch off Hanoi's plugin.
        refused = await client.put("/api/admin/province-plugins/hanoi", json={"enabled": False}, headers=saigon_admin)
        assert refused.status_code == 403
        assert await menu_hrefs(platform, "01") == ["/hanoi"]
        unknown = await client.put("/api/admin/province-plugins/checkin", json={"enabled": False}, headers=hanoi_admin)
        assert unknown.status_code == 404

        off = await client.put("/api/admin/province-plugins/hanoi", json={"enabled": False}, headers=hanoi_admin)
        assert off.status_code == 200, off.text
        assert off.json() == {"name": "hanoi", "province": "01", "enabled": False}
        assert await menu_hrefs(platform, "01") == []
        assert await menu_hrefs(platform, "79") == ["/saigon"]
        menu = await client.get("/api/me/menu", headers=hanoi_admin)
        assert [item for item in menu.json() if item["href"] in PROVINCE_HREFS] == []

        # Another worker on the same database sees the switch without a restart.
        worker = await start_platform(("hanoi", hanoi()), ("saigon", saigon()), url=platform.settings.database_url)
        assert "hanoi" in worker.hooks.disabled
        # Piccolo's tables follow the platform started last in this process: hand them back.
        platform.db.activate()

        on = await client.put("/api/admin/province-plugins/hanoi", json={"enabled": True}, headers=hanoi_admin)
        assert on.status_code == 200
        assert await menu_hrefs(platform, "01") == ["/hanoi"]

    state = await ProvincePluginState.select().where(ProvincePluginState.plugin == "hanoi").first()
    assert state["enabled"] is True and state["province"] == "01"
    trail = await AuditLog.select(AuditLog.action, AuditLog.resource_id, AuditLog.province).order_by(AuditLog.id)
    assert [(r["action"], r["resource_id"], r["province"]) for r in trail] == [
        ("core.province_plugins.disable", "hanoi", "01"),
        ("core.province_plugins.enable", "hanoi", "01"),
    ]
    await worker.refresh_plugin_state(force=True)
    assert worker.hooks.disabled == frozenset()
