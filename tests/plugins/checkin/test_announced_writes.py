"""Check-in requests announce their write to the group commit, and every announcement ends.

A check-in route's request says, as it starts, that it will hand the group
commit one write (``GroupCommit.expecting``): a batch being collected waits
for the announced check-ins still reading their token or body, and goes as
soon as they are all in, instead of waiting out ``max_wait``. Whatever
becomes of a request (stored, refused by the guard, a forged code, a body
the handler explains, a header out of bounds), its announcement ends with it:
a batch never waits for a request that is gone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core import batching
from tests.plugins.checkin.conftest import Kit


def _record_announced(kit: Kit, monkeypatch: Any) -> list[bool]:
    """Whether each write handed to the group commit came from a request that announced it."""
    group = kit.platform.group_commit
    seen: list[bool] = []
    original = group._enqueue

    async def enqueue(*args: Any, **kwargs: Any) -> Any:
        announcement = batching._announced.get()
        seen.append(announcement is not None and announcement.open)
        return await original(*args, **kwargs)

    monkeypatch.setattr(group, "_enqueue", enqueue)
    return seen


async def test_a_check_in_announces_its_write_and_is_not_kept_waiting(kit, monkeypatch):
    seen = _record_announced(kit, monkeypatch)
    group = kit.platform.group_commit
    monkeypatch.setattr(group, "max_wait", 60.0)  # a batch that waited for company would time the test out
    venue = await kit.venue(await kit.operator())
    citizen, _ = await kit.citizen()
    response = await asyncio.wait_for(kit.check_in(citizen, kit.code_of(venue)), timeout=20)
    assert response.status_code == 201, response.text
    assert seen == [True]
    assert group._expected == 0
    assert await kit.visit_count() == 1


async def test_every_announcement_ends_whatever_becomes_of_the_request(kit, monkeypatch):
    group = kit.platform.group_commit
    monkeypatch.setattr(group, "max_wait", 60.0)
    venue = await kit.venue(await kit.operator())
    code = kit.code_of(venue)
    people = [await kit.citizen() for _ in range(4)]
    client = kit.client
    body = {"code": code, "full_name": "Trần Thị Bình", "declaration": kit.declaration()}
    requests = (
        [kit.check_in(headers, code) for headers, _ in people]
        + [
            client.post("/api/checkin/visits", json=body),  # no token: 401
            client.post("/api/checkin/visits", json={**body, "code": code[:-3] + "AAA"}, headers=people[0][0]),  # 400
            client.post("/api/checkin/visits", json={"code": code}, headers=people[1][0]),  # incomplete body: 400
            client.post("/api/checkin/visits", json=body, headers={**people[2][0], "Idempotency-Key": "k" * 500}),
        ]
    )
    responses = await asyncio.wait_for(asyncio.gather(*requests), timeout=30)
    assert [r.status_code for r in responses[:4]] == [201] * 4, [r.text for r in responses[:4]]
    assert [r.status_code for r in responses[4:]] == [401, 400, 400, 400], [r.text for r in responses[4:]]
    assert group._expected == 0  # no batch waits for any of them
    assert await kit.visit_count() == 4
