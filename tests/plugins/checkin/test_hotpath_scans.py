"""Staff scans under load: the place remembered like a code's, account phones looked up together."""

from __future__ import annotations

import asyncio

from core.tables import Citizen
from plugins.checkin import venues, visits


async def test_concurrent_scans_share_their_lookups_and_store_each_persons_phone(kit, monkeypatch):
    venues.forget_codes()
    venue = await kit.venue(await kit.operator(site="pho"))
    device = await kit.device(site="pho")
    people = [await kit.citizen() for _ in range(6)]
    tokens = [(await kit.client.get("/api/checkin/me/code", headers=headers)).json()["token"] for headers, _ in people]
    reads = []
    place_at = venues.place_at

    async def counted_place_at(venue_id, sub_location_id):
        reads.append(venue_id)
        return await place_at(venue_id, sub_location_id)

    monkeypatch.setattr(venues, "place_at", counted_place_at)
    scans = await asyncio.gather(
        *(
            kit.client.post(
                "/api/checkin/scans",
                json={"personal_code": token, "venue_id": venue["id"], "declaration": kit.declaration()},
                headers=device,
            )
            for token in tokens
        )
    )
    assert [scan.status_code for scan in scans] == [201] * 6, [scan.text for scan in scans]
    loader = visits._phone_loaders[kit.platform]
    assert loader.keys == 6 and loader.rounds < 6  # looked up together, not one query each
    again = await kit.client.post(
        "/api/checkin/scans", json={"personal_code": tokens[0], "venue_id": venue["id"]}, headers=device
    )
    assert again.status_code == 201
    assert len(reads) < 7  # the place came from memory at least once
    # Each visit carries its own person's phone, from their account.
    for (_headers, subject), scan in zip(people, scans, strict=True):
        stored = await kit.platform.db.execute(
            "SELECT subject_id, phone FROM checkin_visit WHERE id = {}", scan.json()["id"]
        )
        phone = await Citizen.select(Citizen.phone).where(Citizen.id == subject).first()
        assert stored[0]["subject_id"] == subject and stored[0]["phone"] == phone["phone"]


async def test_a_scan_for_a_deleted_account_is_refused(kit):
    venue = await kit.venue(await kit.operator(site="pho"))
    device = await kit.device(site="pho")
    headers, subject = await kit.citizen()
    token = (await kit.client.get("/api/checkin/me/code", headers=headers)).json()["token"]
    await Citizen.delete().where(Citizen.id == subject)
    refused = await kit.client.post(
        "/api/checkin/scans", json={"personal_code": token, "venue_id": venue["id"]}, headers=device
    )
    assert refused.status_code == 404
    assert "account no longer exists" in refused.json()["detail"]
    assert await kit.visit_count() == 0


async def test_a_forgotten_place_is_read_again(kit):
    venue = await kit.venue(await kit.operator(site="pho"))
    first = await venues.known_place(kit.platform, venue["id"], None)
    assert venues._by_ids[(venue["id"], None)][1] == first
    venues.forget_codes()  # a code or venue changed in this worker
    assert (venue["id"], None) not in venues._by_ids
    assert await venues.known_place(kit.platform, venue["id"], None) == first
