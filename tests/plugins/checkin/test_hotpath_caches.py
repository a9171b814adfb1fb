"""What the check-in's hot path remembers, and what it never may.

A worker remembers verified venue-code strings (``venues._tokens``) for as
long as it trusts the code's row (``code_cache_seconds``): an altered or
forged string is never remembered, so it is always checked and refused; a
rotated or revoked code stops as before; a token checked under one key ring
is not taken from memory under another. Provinces without questions of their
own get the national questionnaire without a hook call; provinces with some
are asked every time. The batch statement stores declarations from their
visits' columns.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import msgspec

from core import clock, hookimpl
from core.signing import Signer
from core.testing import http_client
from plugins.checkin import declarations, venues
from plugins.checkin.declarations import NATIONAL_VERSION, Question, questionnaire_for
from plugins.checkin.tables import VenueCode
from tests.plugins.checkin.conftest import BASE_URL, Kit


def _count_verifies(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = Signer.verify

    def verify(self, token, *, field="token"):
        calls.append(token)
        return original(self, token, field=field)

    monkeypatch.setattr(Signer, "verify", verify)
    return calls


def _altered(token: str) -> str:
    version, claims, mac = token.split(".")
    return f"{version}.{claims}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"


async def test_a_verified_code_is_answered_from_memory_until_its_row_is_stale(kit, monkeypatch):
    venues.forget_codes()
    venue = await kit.venue(await kit.operator())
    code = kit.code_of(venue)
    calls = _count_verifies(monkeypatch)
    first = await venues.resolve_code(kit.platform, code)
    again = await venues.resolve_code(kit.platform, code)
    assert again == first
    assert calls == [code]  # the second time, from memory
    settings = kit.platform.plugin_settings["checkin"]
    kit.platform.plugin_settings["checkin"] = msgspec.structs.replace(settings, code_cache_seconds=0)
    try:
        await asyncio.sleep(0.01)
        await venues.resolve_code(kit.platform, code)
        assert calls == [code, code]  # stale: verified and read again
    finally:
        kit.platform.plugin_settings["checkin"] = settings
        venues.forget_codes()


async def test_a_forged_code_is_refused_after_the_genuine_one_was_remembered(kit):
    venues.forget_codes()
    venue = await kit.venue(await kit.operator())
    code = kit.code_of(venue)
    citizen, _ = await kit.citizen()
    assert (await kit.check_in(citizen, code)).status_code == 201
    assert code in venues._tokens
    version, claims, mac = code.split(".")
    forged_claims = claims[:-1] + ("A" if claims[-1] != "A" else "B")
    for forged in (_altered(code), f"{version}.{forged_claims}.{mac}", f"{int(version) + 1}.{claims}.{mac}"):
        response = await kit.check_in(citizen, forged)
        assert response.status_code == 400, (forged, response.text)
        assert forged not in venues._tokens
    page = await kit.client.get(f"/api/checkin/codes/{_altered(code)}")
    assert page.status_code == 400
    assert await kit.visit_count() == 1
    venues.forget_codes()


async def test_rotation_and_revocation_stop_a_remembered_code_at_once(kit):
    venues.forget_codes()
    operator = await kit.operator()
    venue = await kit.venue(operator)
    old = kit.code_of(venue)
    assert (await kit.client.get(f"/api/checkin/codes/{old}")).status_code == 200
    assert old in venues._tokens
    rotated = await kit.client.post(f"/api/checkin/venues/{venue['id']}/codes/rotate", json={}, headers=operator)
    assert rotated.status_code == 200
    assert (await kit.client.get(f"/api/checkin/codes/{old}")).status_code == 410
    new = Kit.code_of(rotated.json())
    assert (await kit.client.get(f"/api/checkin/codes/{new}")).status_code == 200
    code_id = rotated.json()["codes"][0]["id"]
    revoked = await kit.client.delete(f"/api/checkin/venues/{venue['id']}/codes/{code_id}", headers=operator)
    assert revoked.status_code == 204
    assert (await kit.client.get(f"/api/checkin/codes/{new}")).status_code == 410
    venues.forget_codes()


async def test_another_workers_revocation_stops_a_remembered_code_within_the_bound(kit):
    venues.forget_codes()
    venue = await kit.venue(await kit.operator())
    code = kit.code_of(venue)
    settings = kit.platform.plugin_settings["checkin"]
    kit.platform.plugin_settings["checkin"] = msgspec.structs.replace(settings, code_cache_seconds=0.2)
    try:
        assert (await kit.client.get(f"/api/checkin/codes/{code}")).status_code == 200
        await VenueCode.update({VenueCode.revoked_at: clock.now()}).where(VenueCode.revoked_at.is_null())
        assert (await kit.client.get(f"/api/checkin/codes/{code}")).status_code == 200  # trusted a moment
        await asyncio.sleep(0.3)
        assert (await kit.client.get(f"/api/checkin/codes/{code}")).status_code == 410
        assert (await kit.client.get(f"/api/checkin/codes/{code}")).status_code == 410
    finally:
        kit.platform.plugin_settings["checkin"] = settings
        venues.forget_codes()


async def test_a_remembered_code_is_checked_again_under_another_key_ring(kit, monkeypatch):
    venues.forget_codes()
    venue = await kit.venue(await kit.operator())
    code = kit.code_of(venue)
    assert (await kit.client.get(f"/api/checkin/codes/{code}")).status_code == 200
    settings = kit.platform.settings
    secret, version = settings.secret_key, settings.secret_key_version
    # The key that signed the code is dropped (a new key, the old one not kept): the code stops.
    settings.secret_key, settings.secret_key_version = "n" * 40, version + 1
    try:
        response = await kit.client.get(f"/api/checkin/codes/{code}")
        assert response.status_code == 400
        assert "no longer accepted" in response.json()["detail"]
        # Kept as a previous key: the code verifies again.
        monkeypatch.setattr(settings, "previous_secret_keys", [f"{version}:{secret}"])
        assert (await kit.client.get(f"/api/checkin/codes/{code}")).status_code == 200
    finally:
        settings.secret_key, settings.secret_key_version = secret, version
        venues.forget_codes()


async def test_a_code_with_an_expiry_is_checked_every_time(kit, monkeypatch):
    venues.forget_codes()
    venue = await kit.venue(await kit.operator())
    code_id = uuid.UUID(venue["codes"][0]["id"])
    expiring = venues.code_signer(kit.platform).sign({"c": code_id.hex}, ttl=timedelta(minutes=5))
    calls = _count_verifies(monkeypatch)
    for _ in range(2):
        assert (await venues.resolve_code(kit.platform, expiring)).venue.id == venue["id"]
    assert calls == [expiring, expiring]
    assert expiring not in venues._tokens
    later = clock.now() + timedelta(minutes=6)
    monkeypatch.setattr(clock, "now", lambda: later)
    response = await kit.client.get(f"/api/checkin/codes/{expiring}")
    assert response.status_code == 400
    assert "expired" in response.json()["detail"]
    venues.forget_codes()


class ChangingQuestions:
    """A province plugin whose questions change from one call to the next (read from somewhere)."""

    PROVINCE = "01"

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def checkin_declaration_questions(self, venue):
        self.calls += 1
        return [Question(id=f"hn.q{self.calls}", kind="yes_no", text_vi="?", text_en="?", required=False)]


async def test_province_questions_are_asked_for_every_time(make_platform):
    plugin = ChangingQuestions()
    platform = await make_platform(base_url=BASE_URL, extra_plugins=[("hn_changing", plugin)])
    async with http_client(platform) as client:
        kit = Kit(platform, client)
        hanoi = await kit.venue(await kit.operator())
        danang = await kit.venue(await kit.operator(province="48", site="dn-1"), province="48", ward="20194")
        place = await venues.resolve_code(platform, kit.code_of(hanoi))
        first = await questionnaire_for(platform, place.venue)
        second = await questionnaire_for(platform, place.venue)
        assert first.version != second.version
        assert [q.id for q in second.questions][-1] == "hn.q2"
        calls = plugin.calls
        elsewhere = await venues.resolve_code(platform, kit.code_of(danang))
        national = await questionnaire_for(platform, elsewhere.venue)
        assert national is declarations.NATIONAL_QUESTIONNAIRE
        assert national.version == NATIONAL_VERSION
        assert plugin.calls == calls  # no hook for Da Nang: not called


async def test_declarations_stored_with_a_batch_carry_their_visits_columns(kit):
    venue = await kit.venue(await kit.operator())
    people = [(await kit.citizen())[0] for _ in range(4)]
    kit.platform.group_commit.max_wait = 0.3  # one batch
    responses = await asyncio.gather(
        *(
            kit.check_in(person, kit.code_of(venue), declaration=kit.declaration(symptoms=["cough"] if i else ["none"]))
            for i, person in enumerate(people)
        )
    )
    assert {r.status_code for r in responses} == {201}
    rows = await kit.platform.db.execute(
        "SELECT d.id, d.visit_id, d.subject_id, d.province, d.venue_id, d.questionnaire_version, d.risky, "
        "d.declared_at, d.proxy_by, d.answers, d.risk_flags, v.subject_id AS visit_subject, v.arrived_at "
        "FROM checkin_declaration d JOIN checkin_visit v ON v.id = d.visit_id"
    )
    assert len(rows) == 4
    assert len({str(row["id"]) for row in rows}) == 4
    by_visit = {str(row["visit_id"]): row for row in rows}
    for response in responses:
        row = by_visit[response.json()["id"]]
        assert row["subject_id"] == row["visit_subject"]
        assert row["province"] == "01"
        assert str(row["venue_id"]) == venue["id"]
        assert row["questionnaire_version"] == NATIONAL_VERSION
        assert row["declared_at"] == row["arrived_at"]
        assert row["proxy_by"] is None
        flags = msgspec.json.decode(row["risk_flags"]) if isinstance(row["risk_flags"], str) else row["risk_flags"]
        assert flags == response.json()["risk_flags"]
        assert row["risky"] is bool(flags)
        answers = msgspec.json.decode(row["answers"]) if isinstance(row["answers"], str) else row["answers"]
        assert answers["symptoms"] == (["cough"] if flags else ["none"])
