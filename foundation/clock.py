"""Time helpers: UTC inside, local time only at the edges."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime to aware UTC.

    SQLite returns naive datetimes; everything we store is UTC, so a naive value
    is read as UTC rather than as local time.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_local(value: datetime, zone: ZoneInfo) -> datetime:
    """Convert a stored UTC time to the command center's local time for display."""
    return as_utc(value).astimezone(zone)
