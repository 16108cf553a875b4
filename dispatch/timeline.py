"""Appending to the incident timeline: the one way events are recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from dispatch.models import TimelineEvent
from foundation.clock import utcnow


def record(
    session: Session,
    kind: str,
    *,
    actor: str,
    incident_id: int | None = None,
    device_id: str | None = None,
    unit_id: str | None = None,
    source_ts: datetime | None = None,
    at: datetime | None = None,
    **data: Any,
) -> TimelineEvent:
    """Add one event in the caller's transaction; it commits (or not) with the effect it records."""
    event = TimelineEvent(
        kind=kind,
        actor=actor,
        incident_id=incident_id,
        device_id=device_id,
        unit_id=unit_id,
        source_ts=source_ts,
        at=at or utcnow(),
        data={k: v for k, v in data.items() if v is not None},
    )
    session.add(event)
    return event
