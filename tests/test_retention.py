"""Retention: routine inbound traffic and old dead letters go; anything tied to an incident stays."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch import retention
from dispatch.models import InboundMessage, Incident
from dispatch.retention import Purged, RetentionPolicy, purge_inbound
from foundation.clock import utcnow
from foundation.db import transaction

POLICY = RetentionPolicy(routine_days=14, dead_letter_days=90)


def log_rows(sessions: sessionmaker[Session], now: datetime, press_id: str = "p") -> dict[str, int]:
    """One row of each kind at each age; returns name → id."""
    with transaction(sessions) as session:
        incident = Incident(source="press", device_id="BTN-0001", press_id=press_id, service="police")
        session.add(incident)
        session.flush()
        rows = {}
        for age_days in (1, 30, 120):
            for name, outcome, incident_id in [
                ("heartbeat", "accepted", None),
                ("redelivered", "duplicate", None),
                ("press", "accepted", incident.id),
                ("dead", "dead_letter", None),
            ]:
                row = InboundMessage(
                    received_at=now - timedelta(days=age_days),
                    topic="devices/BTN-0001/x",
                    payload=b"{}",
                    payload_size=2,
                    outcome=outcome,
                    incident_id=incident_id,
                )
                session.add(row)
                session.flush()
                rows[f"{name}-{age_days}d"] = row.id
    return rows


def kept(sessions: sessionmaker[Session], rows: dict[str, int]) -> set[str]:
    with sessions() as session:
        ids = set(session.execute(select(InboundMessage.id)).scalars())
    return {name for name, row_id in rows.items() if row_id in ids}


def test_routine_rows_and_old_dead_letters_go_and_incident_evidence_stays(sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    rows = log_rows(sessions, now)

    assert purge_inbound(sessions, now, POLICY) == Purged(routine=4, dead_letters=1)

    assert kept(sessions, rows) == {
        "heartbeat-1d",
        "redelivered-1d",
        "dead-1d",
        "dead-30d",
        "press-1d",
        "press-30d",
        "press-120d",
    }
    assert purge_inbound(sessions, now, POLICY) == Purged(0, 0)


def test_zero_days_keeps_everything(sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    rows = log_rows(sessions, now)
    assert purge_inbound(sessions, now, RetentionPolicy(0, 0)) == Purged(0, 0)
    assert kept(sessions, rows) == set(rows)


def test_large_backlogs_are_deleted_in_several_batches(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 3)
    now = utcnow()
    for n in range(3):
        log_rows(sessions, now, press_id=f"p{n}")
    assert purge_inbound(sessions, now, POLICY).routine == 12
