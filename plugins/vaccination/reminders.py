"""Reminders for the next dose, before it is due and when it is overdue, as a scheduled job.

Each (person, dose number, kind) is reminded once: the reminder row and the
message are written in one transaction, so a failed send is retried on the
next run and a sent one never repeats. Reminders need the account holder's
consent to the ``vaccination.reminders`` purpose.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from core import Job, Message, clock
from plugins.vaccination import localtime
from plugins.vaccination.tables import Booking, Person, Reminder

if TYPE_CHECKING:
    from core.platform import Platform

PURPOSE = "vaccination.reminders"
BATCH = 5000


def jobs() -> list[Job]:
    return [Job(name="vaccination.reminders", interval_seconds=3600, run=send_reminders)]


async def send_reminders(platform: Platform) -> str:
    settings = platform.plugin_config("vaccination")
    today = localtime.today()
    horizon = today + timedelta(days=settings.reminder_days_before)
    candidates = await (
        Person.select()
        .where((Person.next_due_on <= horizon) & (Person.duplicate_status != "merged") & Person.phone.is_not_null())
        .order_by(Person.next_due_on)
        .limit(BATCH)
    )
    sent = {"due": 0, "overdue": 0}
    skipped = 0
    for person in candidates:
        kind = "overdue" if person["overdue_on"] is not None and person["overdue_on"] <= today else "due"
        dose_number = person["doses_received"] + 1
        key = f"{person['id']}:{dose_number}:{kind}"
        if await Reminder.exists().where(Reminder.key == key):
            continue
        if await Booking.exists().where(Booking.active_person == str(person["id"])):
            skipped += 1
            continue
        if not await platform.consent.allows(person["subject_id"], PURPOSE):
            skipped += 1
            continue
        due = person["next_due_on"]
        if kind == "due":
            body_vi = (
                f"Mui {dose_number} cua {person['full_name']} den han tu {due:%d/%m/%Y}. Dat lich tiem tren phongdich."
            )
            body_en = (
                f"Dose {dose_number} for {person['full_name']} is due from {due:%d/%m/%Y}. Book a session on phongdich."
            )
        else:
            body_vi = (
                f"Mui {dose_number} cua {person['full_name']} da qua han (tu {due:%d/%m/%Y}). "
                "Vui long dat lich tiem som."
            )
            body_en = (
                f"Dose {dose_number} for {person['full_name']} is overdue (due from {due:%d/%m/%Y}). Please book soon."
            )
        async with platform.db.transaction():
            await Reminder.insert(
                Reminder(
                    id=uuid.uuid4(),
                    key=key,
                    person=person["id"],
                    dose_number=dose_number,
                    kind=kind,
                    sent_at=clock.now(),
                )
            )
            await platform.messages.send(
                Message(
                    channel="sms",
                    recipient=person["phone"],
                    kind=f"vaccination.reminder.{kind}",
                    body_vi=body_vi,
                    body_en=body_en,
                    province=person["province"],
                )
            )
        sent[kind] += 1
    return f"sent {sent['due']} due and {sent['overdue']} overdue reminder(s); {skipped} skipped (booked or no consent)"
