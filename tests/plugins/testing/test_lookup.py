"""Citizens' result lookup: code + second factor, identical failures, lock, rate budget, expiry, family phone."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

from core import clock
from core.tables import AuditLog
from plugins.testing.identifiers import new_code
from plugins.testing.tables import Sample
from tests.plugins.testing.conftest import PERSON


async def _resulted(world, outcome="negative", person=PERSON):
    receipt = await world.register(person=person)
    await world.receive([receipt["sample_id"]])
    assert (await world.result(receipt["sample_id"], outcome)).status_code == 201
    return receipt


async def _lookup(world, code, **factor):
    return await world.client.post("/api/testing/lookup", json={"code": code, **factor})


def _answer(response):
    """What a client can tell apart: status and body, less the per-request id."""
    body = response.json()
    body.pop("request_id", None)
    return response.status_code, body


async def test_lookup_with_date_of_birth(world):
    receipt = await _resulted(world)
    found = await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["full_name"] == "Nguyễn Văn An" and body["result"] == "negative" and body["status"] == "result"
    assert body["test_type"] == "rt-pcr" and body["corrected"] is False
    assert [s["step"] for s in body["timeline"]] == ["collected", "at_lab", "result"]
    # Typed loosely: lower case, without dashes, O for 0.
    loose = receipt["result_code"].replace("-", "").lower().replace("0", "o")
    assert (await _lookup(world, loose, date_of_birth="1990-04-12")).status_code == 200
    audited = await AuditLog.select().where(AuditLog.action == "testing.result.lookup")
    assert len(audited) == 2 and audited[0]["actor_id"] == f"result-code:{receipt['sample_id']}"


async def test_every_failure_gets_the_same_answer(world, platform):
    receipt = await _resulted(world)
    expired = await _resulted(world, person={**PERSON, "id_number": "001090099999"})
    await Sample.update({Sample.result_at: clock.now() - timedelta(days=91)}).where(Sample.id == expired["sample_id"])
    answers = [
        _answer(await _lookup(world, receipt["result_code"], date_of_birth="1990-04-13")),  # wrong factor
        _answer(await _lookup(world, new_code(), date_of_birth="1990-04-12")),  # no such code
        _answer(await _lookup(world, "not a code at all", date_of_birth="1990-04-12")),  # malformed
        _answer(await _lookup(world, expired["result_code"], date_of_birth="1990-04-12")),  # expired
        _answer(await _lookup(world, receipt["result_code"], otp="123456")),  # no code was sent
    ]
    assert answers[0][0] == 404
    assert all(answer == answers[0] for answer in answers)


async def test_ten_wrong_factors_lock_the_code(world):
    receipt = await _resulted(world)
    wrong = [await _lookup(world, receipt["result_code"], date_of_birth="2000-01-01") for _ in range(10)]
    assert {r.status_code for r in wrong} == {404}
    locked = await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")
    assert _answer(locked) == _answer(wrong[0])
    # The site issues a new receipt: the new code works, the old one is gone.
    reissued = await world.client.post(f"/api/testing/samples/{receipt['sample_id']}/receipt", headers=world.collector)
    assert reissued.status_code == 201, reissued.text
    assert (await _lookup(world, reissued.json()["result_code"], date_of_birth="1990-04-12")).status_code == 200
    old = await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")
    assert _answer(old) == _answer(wrong[0])


async def test_right_answers_do_not_use_up_attempts(world):
    receipt = await _resulted(world)
    for _ in range(9):
        await _lookup(world, receipt["result_code"], date_of_birth="2000-01-01")
    for _ in range(3):
        assert (await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")).status_code == 200
    assert (await Sample.select(Sample.lookup_failures).first())["lookup_failures"] == 9


async def test_one_time_code_to_the_phone(world):
    receipt = await _resulted(world)
    unknown = await world.client.post("/api/testing/lookup/otp", json={"code": new_code()})
    sent = await world.client.post("/api/testing/lookup/otp", json={"code": receipt["result_code"]})
    assert sent.status_code == unknown.status_code == 202
    assert _answer(sent) == _answer(unknown)
    [message] = await world.messages(kind="testing.lookup_otp")
    assert message["recipient"] == "+84912345678"
    otp = re.search(r"\b(\d{6})\b", message["body_en"]).group(1)
    wrong = "000000" if otp != "000000" else "111111"
    assert (await _lookup(world, receipt["result_code"], otp=wrong)).status_code == 404
    found = await _lookup(world, receipt["result_code"], otp=otp)
    assert found.status_code == 200 and found.json()["result"] == "negative"
    reused = await _lookup(world, receipt["result_code"], otp=otp)
    assert reused.status_code == 404  # used up
    both = await _lookup(world, receipt["result_code"], otp=otp, date_of_birth="1990-04-12")
    assert both.status_code == 400


async def test_one_time_codes_per_result_code_are_limited(world):
    receipt = await _resulted(world)
    for _ in range(5):
        response = await world.client.post("/api/testing/lookup/otp", json={"code": receipt["result_code"]})
        assert response.status_code == 202
    assert len(await world.messages(kind="testing.lookup_otp")) == 3


async def test_rate_budget_per_client_address(make_world):
    world = await make_world(plugin={"testing": {"lookup_per_client_per_hour": 4}})
    receipt = await _resulted(world)
    for _ in range(4):
        assert (await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")).status_code == 200
    limited = await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")
    assert limited.status_code == 429 and "Retry-After" in limited.headers


async def test_retention_is_a_setting(make_world):
    world = await make_world(plugin={"testing": {"result_retention_days": 2}})
    receipt = await _resulted(world)
    assert (await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")).status_code == 200
    await Sample.update({Sample.result_at: clock.now() - timedelta(days=2, minutes=1)}, force=True)
    assert (await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")).status_code == 404
    summary = await world.platform.scheduler.run_now("testing.result_codes.expire")
    assert summary == "expired 1 result code(s)"
    assert (await Sample.select(Sample.result_code_hash).first())["result_code_hash"] is None


async def test_the_person_follows_the_sample_before_the_result(world):
    receipt = await world.register(person=PERSON)
    pool = await world.pool([receipt["sample_id"]])
    await world.receive([pool["id"]])
    await world.result(pool["id"], "positive")
    found = await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")
    assert found.status_code == 200
    body = found.json()
    assert body["status"] == "retesting" and body["result"] is None and body["retrievable_until"] is None
    assert [s["step"] for s in body["timeline"]] == ["collected", "in_pool", "at_lab", "retesting"]
    assert body["timeline"][-1]["label_en"].startswith("Pool positive")


async def test_a_family_phone_sees_each_members_results(world):
    family_phone = "0977000111"
    names = ["Phạm Văn Bố", "Phạm Thị Mẹ", "Phạm Bé Con"]
    for index, name in enumerate(names):
        person = {"full_name": name, "date_of_birth": f"19{80 + index}-05-0{index + 1}", "phone": family_phone}
        await _resulted(world, outcome="positive" if index == 2 else "negative", person=person)
    await _resulted(world, person={**PERSON, "phone": "0966000222", "id_number": None})
    headers, _subject = await world.citizen(family_phone)
    response = await world.client.get("/api/testing/me/results", headers=headers)
    assert response.status_code == 200, response.text
    results = {r["full_name"]: r["result"] for r in response.json()}
    assert results == {"Phạm Văn Bố": "negative", "Phạm Thị Mẹ": "negative", "Phạm Bé Con": "positive"}
    stranger, _ = await world.citizen("0955000333")
    assert (await world.client.get("/api/testing/me/results", headers=stranger)).json() == []
    assert (await world.client.get("/api/testing/me/results", headers=world.epi)).status_code == 403
    audited = await AuditLog.select().where(AuditLog.action == "testing.result.read_own")
    assert len(audited) == 3


async def test_lookup_bad_input(world):
    neither = await world.client.post("/api/testing/lookup", json={"code": new_code()})
    assert neither.status_code == 400 and "date_of_birth" in neither.json()["detail"]
    bad_date = await world.client.post("/api/testing/lookup", json={"code": new_code(), "date_of_birth": "12/04/1990"})
    assert bad_date.status_code == 400
    bad_otp = await world.client.post("/api/testing/lookup", json={"code": new_code(), "otp": "12ab56"})
    assert bad_otp.status_code == 400
    long_code = await world.client.post("/api/testing/lookup", json={"code": "x" * 100, "date_of_birth": "1990-01-01"})
    assert long_code.status_code == 400


async def test_the_receipt_qr_opens_the_lookup_page(world):
    receipt = await _resulted(world)
    path = receipt["lookup_url"].removeprefix("http://127.0.0.1:8000")
    page = await world.client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'value="{receipt["result_code"].replace("-", "")}"' in page.text
    found = await world.client.post(
        "/testing/result", data={"code": receipt["result_code"], "date_of_birth": "1990-04-12", "action": "lookup"}
    )
    assert found.status_code == 200 and "Nguyễn Văn An" in found.text and "ÂM TÍNH / NEGATIVE" in found.text
    wrong = await world.client.post(
        "/testing/result", data={"code": receipt["result_code"], "date_of_birth": "1990-04-13", "action": "lookup"}
    )
    assert wrong.status_code == 404 and "No result matches" in wrong.text and "Nguy" not in wrong.text
    sent = await world.client.post("/testing/result", data={"code": receipt["result_code"], "action": "otp"})
    assert sent.status_code == 200 and "one-time code was sent" in sent.text
    no_factor = await world.client.post("/testing/result", data={"code": receipt["result_code"], "action": "lookup"})
    assert no_factor.status_code == 400 and "date of birth" in no_factor.text


async def test_parallel_guesses_cannot_pass_the_limit(world):
    import asyncio

    receipt = await _resulted(world)
    wrong = await asyncio.gather(
        *[_lookup(world, receipt["result_code"], date_of_birth=f"2000-01-{day:02d}") for day in range(1, 26)]
    )
    assert {r.status_code for r in wrong} == {404}
    assert (await Sample.select(Sample.lookup_failures).first())["lookup_failures"] == 10
    assert (await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")).status_code == 404


async def test_parallel_right_answers_all_succeed(world):
    import asyncio

    receipt = await _resulted(world)
    right = await asyncio.gather(
        *[_lookup(world, receipt["result_code"], date_of_birth="1990-04-12") for _ in range(15)]
    )
    assert {r.status_code for r in right} == {200}
    assert (await Sample.select(Sample.lookup_failures).first())["lookup_failures"] == 0


async def test_the_lean_path_answers_as_the_handler_would(world, monkeypatch):
    from litestar.serialization import encode_json

    from plugins.testing import lookup
    from plugins.testing.schemas import LookupIn

    receipt = await _resulted(world)
    expected = await lookup.lookup(
        world.platform, "203.0.113.9", LookupIn(code=receipt["result_code"], date_of_birth=date(1990, 4, 12))
    )

    async def handler_path(*args, **kwargs):
        raise AssertionError("a valid lookup is served by the lean path")

    # The handler calls lookup.lookup through the module; the lean path holds its own reference.
    monkeypatch.setattr(lookup, "lookup", handler_path)
    found = await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12")
    assert found.status_code == 200 and found.headers["content-type"] == "application/json"
    assert found.json() == json.loads(encode_json(expected))
    assert found.headers["x-request-id"]
    # Bodies the lean path does not take go to the handler: Litestar's own 400s, naming the field.
    unknown = await _lookup(world, receipt["result_code"], date_of_birth="1990-04-12", extra="x")
    assert unknown.status_code == 400 and "extra" in unknown.text
    too_long = await _lookup(world, "A" * 41, date_of_birth="1990-04-12")
    assert too_long.status_code == 400 and "code" in too_long.text
    broken = await world.client.post(
        "/api/testing/lookup", content=b'{"code": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    # The guard still runs first: NUL characters are refused before the lookup sees them.
    nul = await _lookup(world, "ABC\u0000", date_of_birth="1990-04-12")
    assert nul.status_code == 400 and "NUL" in nul.text


def test_the_stored_lookup_takes_the_same_lock_as_the_one_time_code_path():
    import importlib

    from plugins.testing.lookup import LOOKUP_LOCK_CLASS

    migration = importlib.import_module("plugins.testing.piccolo_migrations.testing_2026_11_26t06_45_00_000000")
    assert f"pg_advisory_xact_lock({LOOKUP_LOCK_CLASS}, hashtext(p_digest))" in migration.FUNCTION
