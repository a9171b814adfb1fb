"""Hà Nội's settings and its SMS gateway."""

from __future__ import annotations

import pytest

from core import Message
from core.settings import SettingsError
from core.tables import MessageOutbox
from core.testing import TestDatabases, started_platform
from provinces.hanoi.sms import segments
from provinces.hanoi.tables import SmsQueue
from tests.provinces.conftest import DANANG, HANOI, HCMC, PROVINCE_PLUGINS, Steps


def message(
    recipient: str, province: str, *, channel: str = "sms", kind: str = "testing.result", body_vi: str = "Am tinh"
) -> Message:
    return Message(
        channel=channel,  # type: ignore[arg-type]
        recipient=recipient,
        kind=kind,
        body_vi=body_vi,
        body_en="Negative",
        province=province,
    )


async def test_the_travel_permit_is_required_when_the_city_says_so(phongdich_app_factory):
    app = await phongdich_app_factory(plugins=PROVINCE_PLUGINS, plugin={"hanoi": {"travel_permit_required": True}})
    steps = Steps(app)
    venue = await steps.venue(HANOI, district="005", ward="00157", name="Siêu thị Cầu Giấy")
    form = await steps.questionnaire(venue)
    permit = next(q for q in form["questions"] if q["id"] == "hn.travel_permit")
    assert permit["required"] is True

    citizen = await app.actor("citizen")
    refused = await steps.check_in(citizen, venue, answers={"hn.lockdown_area": False})
    assert refused.status_code == 400
    assert refused.json()["detail"] == "declaration.answers.hn.travel_permit: this question must be answered"
    answered = await steps.check_in(citizen, venue, answers={"hn.lockdown_area": False, "hn.travel_permit": "GDD-77"})
    assert answered.status_code == 201, answered.text
    assert answered.json()["risk_flags"] == []


async def test_sms_for_hanoi_go_through_its_gateway_under_its_brandname(phongdich_app_factory):
    app = await phongdich_app_factory(plugins=PROVINCE_PLUGINS, plugin={"hanoi": {"sms_brandname": "HANOI COVID"}})
    long_text = "Ket qua xet nghiem: am tinh. " * 8  # 232 GSM characters: two SMS
    receipt = await app.platform.messages.send(
        Message(
            channel="sms",
            recipient="+84912000111",
            kind="testing.result",
            body_vi=long_text,
            body_en="Negative",
            province=HANOI,
        )
    )
    assert (receipt.channel, receipt.status) == ("hanoi-sms", "queued")
    # E-mail is not the gateway's business, and another province's SMS neither: both reach the core's outbox.
    email = await app.platform.messages.send(
        Message(
            channel="email",
            recipient="lan@example.vn",
            kind="testing.result",
            body_vi="Âm tính",
            body_en="Negative",
            province=HANOI,
        )
    )
    danang = await app.platform.messages.send(
        Message(
            channel="sms",
            recipient="+84905000222",
            kind="testing.result",
            body_vi="Am tinh",
            body_en="Negative",
            province=DANANG,
        )
    )
    assert email.channel == danang.channel == "outbox"

    queued = await SmsQueue.select().where(SmsQueue.id == receipt.id).first()
    assert (queued["brandname"], queued["recipient"], queued["body"], queued["segments"], queued["status"]) == (
        "HANOI COVID",
        "+84912000111",
        long_text,
        2,
        "queued",
    )
    assert await SmsQueue.count() == 1
    assert sorted(row["recipient"] for row in await MessageOutbox.select(MessageOutbox.recipient)) == [
        "+84905000222",
        "lan@example.vn",
    ]


def test_sms_segments_follow_the_gsm_and_ucs2_limits():
    assert segments("a" * 160) == 1
    assert segments("a" * 161) == 2
    assert segments("a" * 306) == 2
    assert segments("a" * 307) == 3
    # One letter with a diacritic makes the whole message UCS-2: 70 characters, 67 per part.
    assert segments("ầ" * 70) == 1
    assert segments("Kết quả" + "a" * 64) == 2


async def test_the_gateway_summary_counts_without_showing_anyone(steps: Steps, phongdich_app):
    for recipient, kind in (
        ("+84912000001", "testing.result"),
        ("+84912000002", "testing.result"),
        ("+84912000003", "vaccination.booking"),
    ):
        await phongdich_app.platform.messages.send(
            Message(channel="sms", recipient=recipient, kind=kind, body_vi="Xin chao", body_en="Hello", province=HANOI)
        )
    admin = await phongdich_app.actor("province_admin", province=HANOI)
    summary = await steps.client.get("/api/hanoi/sms/summary", headers=admin.headers)
    assert summary.status_code == 200, summary.text
    assert summary.json() == [
        {"kind": "testing.result", "status": "queued", "messages": 2, "segments": 2},
        {"kind": "vaccination.booking", "status": "queued", "messages": 1, "segments": 1},
    ]
    assert "+8491200000" not in summary.text
    national = await phongdich_app.actor("national_admin")
    assert (await steps.client.get("/api/hanoi/sms/summary", headers=national.headers)).status_code == 200
    for other in (
        await phongdich_app.actor("province_admin", province=HCMC),
        await phongdich_app.actor("epidemiologist", province=HANOI),
    ):
        assert (await steps.client.get("/api/hanoi/sms/summary", headers=other.headers)).status_code == 403


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"sms_brandname": "SO Y TE HA NOI"}, "plugin.hanoi.sms_brandname"),
        ({"travel_permit_required": "maybe"}, "plugin.hanoi.travel_permit_required"),
        ({"sms_sender": "SYT"}, "sms_sender"),
    ],
)
async def test_a_wrong_setting_stops_start_up_naming_it(databases: TestDatabases, section, named):
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        await started_platform(databases, plugins=PROVINCE_PLUGINS, plugin={"hanoi": section})
