"""Retention of the inbound message log: routine traffic goes, evidence stays.

Every heartbeat and GPS fix is logged, so the log grows by millions of rows a month
in a city-sized deployment. Rows that are evidence of an emergency (linked to an
incident) are never deleted here; routine rows and dead letters are, after their own
retention periods. The incident timeline is append-only and untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.models import InboundMessage
from foundation.db import transaction

log = logging.getLogger(__name__)

# Deleting in batches keeps each transaction (and its locks) short beside live intake.
BATCH = 5000


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep each kind of row; 0 keeps it forever."""

    routine_days: int
    dead_letter_days: int


@dataclass(frozen=True)
class Purged:
    routine: int
    dead_letters: int


def purge_inbound(sessions: sessionmaker[Session], now: datetime, policy: RetentionPolicy) -> Purged:
    """Delete expired rows of the inbound log, in short transactions; returns how many went."""
    routine = dead = 0
    if policy.routine_days:
        routine = _delete_all(
            sessions,
            InboundMessage.outcome.in_(("accepted", "duplicate")),
            InboundMessage.incident_id.is_(None),
            InboundMessage.received_at < now - timedelta(days=policy.routine_days),
        )
    if policy.dead_letter_days:
        dead = _delete_all(
            sessions,
            InboundMessage.outcome == "dead_letter",
            InboundMessage.incident_id.is_(None),
            InboundMessage.received_at < now - timedelta(days=policy.dead_letter_days),
        )
    if routine or dead:
        log.info("retention: deleted %d routine inbound messages and %d dead letters", routine, dead)
    return Purged(routine, dead)


def _delete_all(sessions: sessionmaker[Session], *where: ColumnElement[bool]) -> int:
    total = 0
    while True:
        with transaction(sessions) as session:
            batch = select(InboundMessage.id).where(*where).order_by(InboundMessage.id).limit(BATCH)
            ids = list(session.execute(batch).scalars())
            if ids:
                session.execute(delete(InboundMessage).where(InboundMessage.id.in_(ids)))
        total += len(ids)
        if len(ids) < BATCH:
            return total
