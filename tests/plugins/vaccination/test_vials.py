"""Doses per vial: a delivery can be counted in vials, and a site's stock shows whole vials as well as doses."""

from __future__ import annotations

from tests.plugins.vaccination.support import LOT, PRODUCT, SITE


async def _stock(world) -> dict[str, dict]:
    rows = (await world.api.get(f"/api/vaccination/sites/{SITE}/stock", headers=world.vaccinator)).json()
    return {row["lot_number"]: row for row in rows}


async def test_stock_received_in_vials_is_counted_in_doses(world):
    api = world.api
    lot = await api.post(
        "/api/vaccination/lots",
        json={"number": "VIAL10", "product_code": PRODUCT, "expires_on": "2031-01-31", "doses_per_vial": 10},
        headers=world.admin,
    )
    assert lot.status_code == 201, lot.text
    path = f"/api/vaccination/sites/{SITE}/stock"
    received = await api.post(
        path, json={"product_code": PRODUCT, "lot_number": "VIAL10", "vials": 4}, headers=world.province_admin
    )
    assert received.status_code == 201, received.text
    view = received.json()
    assert (view["received"], view["available"], view["doses_per_vial"], view["vials_available"]) == (40, 40, 10, 4)

    # One dose drawn: the opened vial no longer counts as a whole one.
    await world.vaccinated_person()
    stock = await _stock(world)
    assert (stock[LOT]["available"], stock[LOT]["doses_per_vial"], stock[LOT]["vials_available"]) == (99, 6, 16)
    assert (stock["VIAL10"]["available"], stock["VIAL10"]["vials_available"]) == (40, 4)

    # Doses still work as before, and add to the vials.
    more = await api.post(path, json={"product_code": PRODUCT, "lot_number": "VIAL10", "doses": 5}, headers=world.admin)
    assert (more.json()["received"], more.json()["vials_available"]) == (45, 4)

    both = await api.post(
        path, json={"product_code": PRODUCT, "lot_number": "VIAL10", "doses": 10, "vials": 1}, headers=world.admin
    )
    assert both.status_code == 400
    assert both.json()["detail"] == "vials: give the doses received or the vials received, not both"
    neither = await api.post(path, json={"product_code": PRODUCT, "lot_number": "VIAL10"}, headers=world.admin)
    assert neither.status_code == 400
    assert neither.json()["detail"] == "doses: give the doses received, or the vials (lot VIAL10 has 10 per vial)"
    zero = await api.post(path, json={"product_code": PRODUCT, "lot_number": "VIAL10", "vials": 0}, headers=world.admin)
    assert zero.status_code == 400
    assert (await _stock(world))["VIAL10"]["received"] == 45
