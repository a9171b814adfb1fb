"""The check-in's fast paths give the same answers as the slow ones, and every batch shape stores right.

The lean request path (``core.web.lean``) serves valid check-ins; anything
else goes to the route's handler. On PostgreSQL a batch of people's own scans
in which no one checks in twice at a venue is stored by one function call
(``_store_in_one_call``, see also test_batch_one_call.py), others in a
transaction (``_store_with_repeats`` when someone is there twice); these tests
put both shapes into one batch on purpose.
"""

from __future__ import annotations

import asyncio
import uuid

from plugins.checkin import visits


async def test_lean_and_handler_answers_are_the_same(kit):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    lean = await kit.check_in(citizen, kit.code_of(venue), minutes_ago=30, stay=45)
    # "45" (text for a number) decodes only leniently: this one goes to the handler, which converts it.
    other, _ = await kit.citizen()
    body = {
        "code": kit.code_of(venue),
        "full_name": "Nguyễn Văn An",
        "declaration": kit.declaration(),
        "stay_minutes": "45",
    }
    handled = await kit.client.post("/api/checkin/visits", json=body, headers=other)
    assert lean.status_code == handled.status_code == 201, handled.text
    assert lean.headers["content-type"] == handled.headers["content-type"] == "application/json"
    assert list(lean.json()) == list(handled.json())  # the same fields, in the same order
    assert lean.json()["venue_name"] == handled.json()["venue_name"] == venue["name"]
    assert handled.json()["repeat"] is False
    assert await kit.visit_count() == 2


async def test_requests_the_lean_path_leaves_get_the_handlers_errors(kit):
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    too_long = await kit.check_in(citizen, kit.code_of(venue), key="k" * 129)
    assert too_long.status_code == 400, too_long.text
    assert too_long.json()["errors"][0]["key"] == "idempotency_key"  # as Litestar names it
    missing = await kit.client.post(
        "/api/checkin/visits", json={"code": kit.code_of(venue), "full_name": "An"}, headers=citizen
    )
    assert missing.status_code == 400
    assert missing.json()["detail"].startswith("Validation failed for POST /api/checkin/visits")
    assert "declaration" in str(missing.json()["errors"])
    not_json = await kit.client.post(
        "/api/checkin/visits", content=b"{not json", headers={**citizen, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    nul = await kit.check_in(citizen, kit.code_of(venue), name="An\x00")
    assert nul.status_code == 400
    assert "NUL" in nul.json()["detail"]
    anonymous = await kit.check_in({}, kit.code_of(venue))
    assert anonymous.status_code == 401
    staff = await kit.check_in(await kit.epidemiologist(), kit.code_of(venue))
    assert staff.status_code == 403
    assert await kit.visit_count() == 0


async def test_repeat_with_a_key_in_a_batch_of_new_visits(kit):
    """One batch: new visits for some, the same visit (with an idempotency key) for another."""
    venue = await kit.venue(await kit.operator())
    returning, _ = await kit.citizen()
    first = await kit.check_in(returning, kit.code_of(venue), minutes_ago=5)
    newcomers = [(await kit.citizen())[0] for _ in range(4)]
    key = str(uuid.uuid4())
    kit.platform.group_commit.max_wait = 0.3  # the five requests make one batch
    responses = await asyncio.gather(
        kit.check_in(returning, kit.code_of(venue), key=key),
        *(kit.check_in(person, kit.code_of(venue)) for person in newcomers),
    )
    assert {r.status_code for r in responses} == {201}
    assert responses[0].json()["id"] == first.json()["id"]
    assert responses[0].json()["repeat"] is True
    assert [r.json()["repeat"] for r in responses[1:]] == [False] * 4
    assert await kit.visit_count() == 5
    assert await kit.declaration_count() == 5
    # The key now names the visit it found: a retry is its replay.
    retry = await kit.check_in(returning, kit.code_of(venue), key=key)
    assert retry.json()["id"] == first.json()["id"]
    assert await kit.visit_count() == 5


async def test_a_batch_with_someone_twice_at_one_venue(kit):
    """Two check-ins of one person at one venue in one batch, with other people's: one visit for the pair."""
    venue = await kit.venue(await kit.operator(), sub_locations=[{"name": "Bàn 1"}, {"name": "Bàn 2"}])
    twice, _ = await kit.citizen()
    others = [(await kit.citizen())[0] for _ in range(3)]
    kit.platform.group_commit.max_wait = 0.3  # the five requests make one batch
    responses = await asyncio.gather(
        kit.check_in(twice, kit.code_of(venue, "Bàn 1"), minutes_ago=2),
        kit.check_in(twice, kit.code_of(venue, "Bàn 2"), minutes_ago=1),
        *(kit.check_in(person, kit.code_of(venue)) for person in others),
    )
    assert {r.status_code for r in responses} == {201}
    assert responses[0].json()["id"] == responses[1].json()["id"]
    assert len({r.json()["id"] for r in responses}) == 4
    assert await kit.visit_count() == 4
    assert await kit.declaration_count() == 4
    rows = await kit.platform.db.execute(
        "SELECT sub_location_id FROM checkin_visit WHERE id = {}", uuid.UUID(responses[0].json()["id"])
    )
    assert rows[0]["sub_location_id"] is None  # seen at two tables: traced against the whole venue


async def test_a_key_taken_meanwhile_stores_nothing_for_the_second_request(kit, monkeypatch):
    """A key stored by another request after this one's replay check: answered as that one's replay."""
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    key = str(uuid.uuid4())
    first = await kit.check_in(citizen, kit.code_of(venue), key=key, minutes_ago=20)
    original = visits._replay
    calls = 0

    async def late_replay(digest, now):
        nonlocal calls
        calls += 1
        # The first look finds nothing (as if the other request had not committed yet).
        return None if calls == 1 else await original(digest, now)

    monkeypatch.setattr(visits, "_replay", late_replay)
    second = await kit.check_in(citizen, kit.code_of(venue), key=key, minutes_ago=1)
    assert second.status_code == 201, second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["repeat"] is True
    assert await kit.visit_count() == 1
    assert await kit.declaration_count() == 1
