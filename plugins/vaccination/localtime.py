"""Vietnam local dates: sessions, doses and reminders are counted in days as people live them."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from core import clock

# Viet Nam keeps UTC+7 all year (no daylight saving), so a fixed offset is exact.
VIETNAM = timezone(timedelta(hours=7), "ICT")


def today() -> date:
    return clock.now().astimezone(VIETNAM).date()


def local_date(moment: datetime) -> date:
    return clock.as_utc(moment).astimezone(VIETNAM).date()


def age_on(birth_date: date, day: date) -> int:
    """Completed years of age on ``day``."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))
