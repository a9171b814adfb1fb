"""Reminders for the next dose: once before it is due and once when overdue, only with consent,
never while a booking is open."""

from __future__ import annotations

from datetime import timedelta

from core import clock
from core.tables import MessageOutbox
from plugins.vaccination import localtime, reminders


async def _reminders(recipient: str) -> list[str]:
    rows = await MessageOutbox.select(MessageOutbox.kind).where(
        (MessageOutbox.recipient == recipient) & MessageOutbox.kind.like("vaccination.reminder.%")
    )
    return sorted(row["kind"] for row in rows)


async def test_due_and_overdue_reminders_need_consent_and_are_sent_once(world, monkeypatch):
    headers, person, _ = await world.vaccinated_person()
    _other_headers, other, _ = await world.vaccinated_person()
    granted = await world.api.put("/api/me/consents/vaccination.reminders", json={"granted": True}, headers=headers)
    assert granted.status_code == 200, granted.text
    assert "vaccination.reminders" in world.platform.scheduler.jobs

    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now + timedelta(days=10))
    await reminders.send_reminders(world.platform)
    assert await _reminders(person["phone"]) == []  # not yet within 3 days of day 21

    monkeypatch.setattr(clock, "now", lambda: real_now + timedelta(days=19))
    summary = await reminders.send_reminders(world.platform)
    assert summary.startswith("sent 1 due and 0 overdue")
    await reminders.send_reminders(world.platform)
    assert await _reminders(person["phone"]) == ["vaccination.reminder.due"]
    assert await _reminders(other["phone"]) == []  # no consent to reminders

    monkeypatch.setattr(clock, "now", lambda: real_now + timedelta(days=43))
    await reminders.send_reminders(world.platform)
    assert await _reminders(person["phone"]) == ["vaccination.reminder.due", "vaccination.reminder.overdue"]
    text = (
        await MessageOutbox.select(MessageOutbox.body_en)
        .where(MessageOutbox.kind == "vaccination.reminder.overdue")
        .first()
    )
    assert "Dose 2" in text["body_en"] and "overdue" in text["body_en"]


async def test_no_reminder_while_a_booking_is_open(world, monkeypatch):
    headers, person, _ = await world.vaccinated_person()
    await world.api.put("/api/me/consents/vaccination.reminders", json={"granted": True}, headers=headers)
    later = await world.session(day=localtime.today() + timedelta(days=25))
    booked = await world.book(headers, person["id"], later)
    assert booked.status_code == 201, booked.text
    real_now = clock.now()
    monkeypatch.setattr(clock, "now", lambda: real_now + timedelta(days=20))
    await reminders.send_reminders(world.platform)
    assert await _reminders(person["phone"]) == []
