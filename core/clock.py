"""Time in one place, always timezone-aware UTC, so tests and jobs agree on "now"."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Databases may hand back naive datetimes (SQLite); they are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
