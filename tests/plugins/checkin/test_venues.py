"""Venue registration by operators, sub-locations, and signed codes: rotation, revocation, forgery."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.plugins.checkin.conftest import BASE_URL


async def test_operator_registers_venue_with_sub_locations_and_codes(kit):
    operator = await kit.operator(site="pho-thin")
    venue = await kit.venue(
        operator, sub_locations=[{"name": "Tầng 2", "kind": "floor"}, {"name": "Bàn 14", "kind": "table"}]
    )
    assert venue["site"] == "pho-thin"
    assert {s["name"] for s in venue["sub_locations"]} == {"Tầng 2", "Bàn 14"}
    # One code for the venue and one per sub-location, each an HTTPS URL on this deployment.
    assert sorted(c["sub_location_name"] or "" for c in venue["codes"]) == ["", "Bàn 14", "Tầng 2"]
    for code in venue["codes"]:
        url = urlsplit(code["url"])
        assert f"{url.scheme}://{url.netloc}" == BASE_URL
        assert url.path == "/checkin/v/" + code["token"]
    listed = await kit.client.get("/api/checkin/venues/", headers=operator)
    assert [v["id"] for v in listed.json()] == [venue["id"]]


async def test_scanned_code_resolves_to_the_place_publicly(kit):
    venue = await kit.venue(await kit.operator(), sub_locations=[{"name": "Bàn 14", "kind": "table"}])
    token = kit.code_of(venue, "Bàn 14")
    place = await kit.client.get(f"/api/checkin/codes/{token}")
    assert place.status_code == 200, place.text
    assert place.json()["venue_name"] == "Quán Phở Thìn"
    assert place.json()["sub_location_name"] == "Bàn 14"
    page = await kit.client.get(f"/checkin/v/{token}")
    assert page.status_code == 200
    assert "Quán Phở Thìn · Bàn 14" in page.text


async def test_forged_and_altered_codes_are_refused(kit):
    venue = await kit.venue(await kit.operator())
    token = kit.code_of(venue)
    version, claims, mac = token.split(".")
    altered_claims = claims[:-2] + ("A" if claims[-2] != "A" else "B") + claims[-1]
    for bad in (
        f"{version}.{altered_claims}.{mac}",  # claims changed, MAC kept
        f"{version}.{claims}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # MAC changed
        f"9.{claims}.{mac}",  # a key version nobody has
        "not-a-code",
    ):
        response = await kit.client.get(f"/api/checkin/codes/{bad}")
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["detail"].startswith("code:")
    citizen, _ = await kit.citizen()
    refused = await kit.check_in(citizen, f"{version}.{altered_claims}.{mac}")
    assert refused.status_code == 400
    assert await kit.visit_count() == 0


async def test_personal_code_cannot_pass_as_venue_code(kit):
    citizen, _ = await kit.citizen()
    personal = (await kit.client.get("/api/checkin/me/code", headers=citizen)).json()["token"]
    response = await kit.client.get(f"/api/checkin/codes/{personal}")
    assert response.status_code == 400
    assert "signature" in response.json()["detail"]


async def test_rotation_retires_the_old_code_and_revocation_stops_the_new(kit):
    operator = await kit.operator()
    venue = await kit.venue(operator)
    old = kit.code_of(venue)
    rotated = await kit.client.post(f"/api/checkin/venues/{venue['id']}/codes/rotate", json={}, headers=operator)
    assert rotated.status_code == 200, rotated.text
    new_code = rotated.json()["codes"][0]
    assert new_code["version"] == 2
    assert (await kit.client.get(f"/api/checkin/codes/{old}")).status_code == 410
    citizen, _ = await kit.citizen()
    assert (await kit.check_in(citizen, old)).status_code == 410
    assert (await kit.check_in(citizen, new_code["token"])).status_code == 201

    revoked = await kit.client.delete(f"/api/checkin/venues/{venue['id']}/codes/{new_code['id']}", headers=operator)
    assert revoked.status_code == 204
    gone = await kit.client.get(f"/api/checkin/codes/{new_code['token']}")
    assert gone.status_code == 410
    assert "withdrawn" in gone.json()["detail"]
    again = await kit.client.delete(f"/api/checkin/venues/{venue['id']}/codes/{new_code['id']}", headers=operator)
    assert again.status_code == 404


async def test_sub_location_codes_rotate_on_their_own(kit):
    operator = await kit.operator()
    venue = await kit.venue(operator, sub_locations=[{"name": "Phòng A"}])
    sub_id = venue["sub_locations"][0]["id"]
    venue_code = kit.code_of(venue)
    sub_code = kit.code_of(venue, "Phòng A")
    response = await kit.client.post(
        f"/api/checkin/venues/{venue['id']}/codes/rotate", json={"sub_location_id": sub_id}, headers=operator
    )
    assert response.status_code == 200
    assert (await kit.client.get(f"/api/checkin/codes/{sub_code}")).status_code == 410
    assert (await kit.client.get(f"/api/checkin/codes/{venue_code}")).status_code == 200
    added = await kit.client.post(
        f"/api/checkin/venues/{venue['id']}/sub-locations", json={"name": "Ca sáng", "kind": "shift"}, headers=operator
    )
    assert added.status_code == 201
    assert any(c["sub_location_name"] == "Ca sáng" for c in added.json()["codes"])


async def test_operator_cannot_touch_another_site_or_province(kit):
    mine = await kit.operator(site="site-a")
    other = await kit.operator(site="site-b")
    venue = await kit.venue(mine)
    assert (await kit.client.get(f"/api/checkin/venues/{venue['id']}", headers=other)).status_code == 403
    rotate = await kit.client.post(f"/api/checkin/venues/{venue['id']}/codes/rotate", json={}, headers=other)
    assert rotate.status_code == 403
    assert (await kit.client.get("/api/checkin/venues/", headers=other)).json() == []
    elsewhere = await kit.client.post(
        "/api/checkin/venues/",
        json={**_body(), "province": "79"},
        headers=mine,
    )
    assert elsewhere.status_code == 403
    citizen, _ = await kit.citizen()
    assert (await kit.client.post("/api/checkin/venues/", json=_body(), headers=citizen)).status_code == 403


async def test_bad_venue_input_is_refused_naming_the_field(kit):
    operator = await kit.operator()
    cases = {
        "name": {"name": '=HYPERLINK("http://evil")'},
        "venue_type": {"venue_type": "spaceport"},
        "capacity": {"capacity": 0},
        "address": {"address": "x" * 301},
        "province": {"province": "1"},
    }
    for field, change in cases.items():
        response = await kit.client.post("/api/checkin/venues/", json={**_body(), **change}, headers=operator)
        assert response.status_code == 400, (field, response.text)
        assert field in response.text, (field, response.text)
    unknown = await kit.client.post("/api/checkin/venues/", json={**_body(), "color": "red"}, headers=operator)
    assert unknown.status_code == 400
    rows = await kit.platform.db.execute("SELECT count(*) AS n FROM checkin_venue")
    assert rows[0]["n"] == 0


async def test_venue_types_list_is_public(kit):
    response = await kit.client.get("/api/checkin/venue-types", params={"province": "01"})
    assert response.status_code == 200
    assert "bar_karaoke" in {t["code"] for t in response.json()}


def _body() -> dict:
    return {
        "name": "Cà phê Giảng",
        "address": "39 Nguyễn Hữu Huân",
        "province": "01",
        "district": "002",
        "ward": "00037",
        "venue_type": "cafe",
        "capacity": 30,
        "contact_phone": "0912345678",
    }


async def test_menu_entries_follow_the_role(kit):
    citizen, _ = await kit.citizen()
    citizen_menu = (await kit.client.get("/api/me/menu", headers=citizen)).json()
    epi_menu = (await kit.client.get("/api/me/menu", headers=await kit.epidemiologist())).json()
    # Other plugins add their own entries; these are the checkin plugin's.
    assert "Check in" in {item["label_en"] for item in citizen_menu}
    assert "Contact tracing" not in {item["label_en"] for item in citizen_menu}
    assert "Contact tracing" in {item["label_en"] for item in epi_menu}


async def test_another_workers_revocation_stops_a_code_within_the_cache_time(kit):
    import asyncio

    import msgspec

    from core import clock
    from plugins.checkin import venues
    from plugins.checkin.tables import VenueCode

    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    assert (await kit.check_in(citizen, kit.code_of(venue))).status_code == 201  # the worker now knows the code
    # Another worker revokes it (straight in the database): this one trusts what it read for a moment...
    await VenueCode.update({VenueCode.revoked_at: clock.now()}).where(VenueCode.revoked_at.is_null())
    settings = kit.platform.plugin_settings["checkin"]
    kit.platform.plugin_settings["checkin"] = msgspec.structs.replace(settings, code_cache_seconds=0.2)
    try:
        other, _ = await kit.citizen()
        assert (await kit.check_in(other, kit.code_of(venue))).status_code == 201
        await asyncio.sleep(0.3)
        # ... and refuses it once that time has passed.
        late, _ = await kit.citizen()
        assert (await kit.check_in(late, kit.code_of(venue))).status_code == 410
    finally:
        kit.platform.plugin_settings["checkin"] = settings
        venues.forget_codes()
