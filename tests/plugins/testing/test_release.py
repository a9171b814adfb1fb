"""Releasing results: messages, the positive case report and event (once), and corrections."""

from __future__ import annotations

from datetime import datetime

import pytest

from core import hookimpl
from core.tables import AuditLog, EventDelivery, EventOutbox
from plugins.testing.tables import CaseReport, ResultVersion, Sample
from tests.plugins.testing.conftest import HN, PERSON


class Tracer:
    """Stands in for contact tracing: records each released result it is told about, once per event."""

    def __init__(self) -> None:
        self.payloads: dict[str, dict] = {}

    @hookimpl
    def testing_result_released(self, event_id, payload, platform):
        self.payloads[event_id] = payload


async def _received_sample(world, **body) -> str:
    sample = (await world.register(**body))["sample_id"]
    assert (await world.receive([sample])).status_code == 201
    return sample


async def test_positive_is_reported_and_announced_once(make_world):
    tracer = Tracer()
    world = await make_world(extra_plugins=[("tracer", tracer)])
    headers, citizen_id = await world.citizen("0987654321")
    registered = await world.client.post(
        "/api/testing/registrations",
        json={"full_name": "Lê Thị Cúc", "date_of_birth": "2001-02-03"},
        headers=headers,
    )
    sample = await _received_sample(world, registration_code=registered.json()["code"], symptom_onset="2021-08-01")
    entered = await world.result(sample, "positive", ct_value=22.5)
    assert entered.status_code == 201, entered.text
    assert entered.json()["reported_positive"] == [sample]

    [message] = await world.messages(recipient="+84987654321", kind="testing.result")
    assert "Le Thi Cuc" in message["body_vi"] and "DUONG TINH" in message["body_vi"]
    assert "POSITIVE" in message["body_en"] and message["province"] == HN
    [report] = await CaseReport.select()
    assert report["sample"] == sample and report["province"] == HN and report["event_id"]
    audited = await AuditLog.select().where(AuditLog.action == "testing.case.report")
    assert [(a["resource_id"], a["province"]) for a in audited] == [(sample, HN)]

    stats = await world.platform.events.dispatch_due()
    assert stats.failed == 0 and stats.dead == 0
    payload = tracer.payloads[report["event_id"]]
    assert set(payload) == {
        "sample_id",
        "subject_id",
        "phone",
        "province",
        "result",
        "collected_at",
        "symptom_onset",
    }
    assert payload["sample_id"] == sample and payload["subject_id"] == citizen_id
    assert payload["phone"] == "+84987654321" and payload["province"] == HN and payload["result"] == "positive"
    assert datetime.fromisoformat(payload["collected_at"]).tzinfo is not None
    assert payload["symptom_onset"] == "2021-08-01"

    # Positive -> negative -> positive again: still one report, one event.
    for outcome in ("negative", "positive"):
        corrected = await world.client.post(
            f"/api/testing/samples/{sample}/corrections",
            json={"outcome": outcome, "reason": "transcription error on the plate map"},
            headers=world.lab,
        )
        assert corrected.status_code == 201, corrected.text
    assert await CaseReport.count() == 1
    assert await EventOutbox.count().where(EventOutbox.event == "testing_result_released") == 1
    await world.platform.events.dispatch_due()
    assert len(tracer.payloads) == 1

    reports = await world.client.get("/api/testing/reports", headers=world.epi)
    assert reports.status_code == 200
    assert [(r["sample_id"], r["full_name"]) for r in reports.json()] == [(sample, "Lê Thị Cúc")]
    assert (await world.client.get("/api/testing/reports", headers=world.epi_dn)).json() == []
    assert (await world.client.get("/api/testing/reports", headers=world.collector)).status_code == 403


async def test_walk_in_positive_has_no_citizen_id(make_world):
    tracer = Tracer()
    world = await make_world(extra_plugins=[("tracer", tracer)])
    sample = await _received_sample(world, person=PERSON)
    await world.result(sample, "positive")
    await world.platform.events.dispatch_due()
    [payload] = tracer.payloads.values()
    assert payload["subject_id"] is None and payload["phone"] == "+84912345678"
    assert payload["symptom_onset"] is None


async def test_negative_and_invalid_are_told_but_not_reported(world):
    negative = await _received_sample(world, person=PERSON)
    invalid = await _received_sample(world, person={**PERSON, "id_number": None, "full_name": "Đỗ Đức Em"})
    await world.result(negative, "negative")
    await world.result(invalid, "invalid")
    bodies = [m["body_vi"] for m in await world.messages(recipient="+84912345678", kind="testing.result")]
    assert any("AM TINH" in body and "Nguyen Van An" in body for body in bodies)
    assert any("KHONG XAC DINH" in body and "Do Duc Em" in body and "xet nghiem lai" in body for body in bodies)
    assert await CaseReport.count() == 0
    assert await EventOutbox.count() == 0


async def test_correction_keeps_the_old_version_and_tells_the_person_again(world):
    sample = await _received_sample(world, person=PERSON)
    await world.result(sample, "negative")
    url = f"/api/testing/samples/{sample}/corrections"
    short = await world.client.post(url, json={"outcome": "positive", "reason": "oops"}, headers=world.lab)
    assert short.status_code == 400 and "reason" in short.text
    other_lab = await world.client.post(
        url, json={"outcome": "positive", "reason": "wrong well read"}, headers=world.lab_b
    )
    assert other_lab.status_code == 403
    collector = await world.client.post(
        url, json={"outcome": "positive", "reason": "wrong well read"}, headers=world.collector
    )
    assert collector.status_code == 403
    corrected = await world.client.post(
        url, json={"outcome": "positive", "reason": "wrong well read", "ct_value": 31}, headers=world.lab
    )
    assert corrected.status_code == 201, corrected.text
    versions = corrected.json()
    assert [(v["version"], v["outcome"], v["current"]) for v in versions] == [
        (1, "negative", False),
        (2, "positive", True),
    ]
    assert versions[1]["reason"] == "wrong well read" and versions[1]["source"] == "correction"
    staff_view = (await world.client.get(f"/api/testing/samples/{sample}", headers=world.epi)).json()
    assert staff_view["result"] == "positive" and len(staff_view["results"]) == 2
    assert [s["step"] for s in staff_view["timeline"]][-2:] == ["result", "corrected"]
    messages = await world.messages(recipient="+84912345678")
    assert [m["kind"] for m in messages] == ["testing.result", "testing.result.corrected"]
    assert messages[1]["body_vi"].startswith("DINH CHINH:") and "DUONG TINH" in messages[1]["body_vi"]
    # Turning positive by correction reports the case.
    assert await CaseReport.count() == 1
    audited = await AuditLog.select(AuditLog.detail).where(AuditLog.action == "testing.result.correct")
    assert audited == [{"detail": "result version 1 -> 2"}]


async def test_correction_needs_a_released_result(world):
    sample = await _received_sample(world)
    early = await world.client.post(
        f"/api/testing/samples/{sample}/corrections",
        json={"outcome": "positive", "reason": "not yet released"},
        headers=world.lab,
    )
    assert early.status_code == 409


async def test_release_is_one_transaction(world, monkeypatch):
    """If announcing the positive fails, no result, report or message is stored."""
    sample = await _received_sample(world, person=PERSON)

    async def broken(*args, **kwargs):
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(world.platform.events, "publish_many", broken)
    from core.principal import Principal
    from plugins.testing.results import ResultEntry, enter_results

    lab = Principal(id="staff:lab", kind="staff", roles=frozenset({"lab_technician"}), province=HN, lab="lab-hn-1")
    with pytest.raises(RuntimeError):
        await enter_results(world.platform, lab, [ResultEntry(row=1, label=sample, outcome="positive")])
    assert await ResultVersion.count() == 0
    assert await CaseReport.count() == 0
    assert await world.messages(kind="testing.result") == []
    row = await Sample.select(Sample.status, Sample.result).where(Sample.id == sample).first()
    assert row == {"status": "at_lab", "result": None}
    assert await EventDelivery.count() == 0


class FlakyGateway:
    """An SMS gateway that refuses its first message."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(tryfirst=True)
    def send_message(self, message, platform):
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("gateway down")
        return None  # let the outbox take it


async def test_big_releases_are_told_by_the_job_and_retried(make_world, monkeypatch):
    from plugins.testing import notices
    from plugins.testing.tables import UntoldResult

    gateway = FlakyGateway()
    world = await make_world(extra_plugins=[("gateway", gateway)])
    monkeypatch.setattr(notices, "INLINE", 2)
    labels = [(await world.register())["sample_id"] for _ in range(3)]
    pool = await world.pool(labels)
    await world.receive([pool["id"]])
    assert (await world.result(pool["id"], "negative")).status_code == 201
    # Three results are more than told inline: queued, durable, not yet sent.
    assert await UntoldResult.count() == 3
    assert await world.messages(kind="testing.result") == []
    summary = await world.platform.scheduler.run_now("testing.notices.send")
    assert summary == "sent 2 result notice(s); 1 waiting"
    [failed] = await UntoldResult.select()
    assert failed["attempts"] == 1 and "gateway" in failed["last_error"]
    await UntoldResult.update({UntoldResult.claimed_until: None}).where(UntoldResult.sample == failed["sample"])
    assert await world.platform.scheduler.run_now("testing.notices.send") == "sent 1 result notice(s); 0 waiting"
    assert len(await world.messages(kind="testing.result")) == 3


async def test_a_correction_before_the_first_notice_is_told_once(world, monkeypatch):
    from plugins.testing import notices

    monkeypatch.setattr(notices, "INLINE", 0)
    sample = await _received_sample(world, person=PERSON)
    await world.result(sample, "negative")
    corrected = await world.client.post(
        f"/api/testing/samples/{sample}/corrections",
        json={"outcome": "positive", "reason": "wrong well read"},
        headers=world.lab,
    )
    assert corrected.status_code == 201
    await world.platform.scheduler.run_now("testing.notices.send")
    [message] = await world.messages(recipient="+84912345678")
    # Never told the first version, the person hears the latest as their result.
    assert message["kind"] == "testing.result" and "DUONG TINH" in message["body_vi"]
