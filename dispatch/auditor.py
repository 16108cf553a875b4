"""The auditor: a second pair of eyes on the escalation engine.

Flags (once each, on the timeline and in the log) any active assignment with no
pending step, and any *stranded* step: overdue by more than ``escalation.overdue_after_s``
while the engine has already executed steps due after it. Either means a page that should
be happening is not. A step that is merely late because the engine is working through a
burst is a *backlog*, not a fault of that incident: :func:`backlog` measures it once for the
whole service ("behind by N s"), so a burst of 9,000 late steps costs one log line and a
metric instead of 9,000 timeline rows and ERROR lines written while the service is behind.
It also closes notifications a provider never reported a final state for
(``close_unconfirmed``), so nothing reads "ringing" forever after a restart lost the callback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from dispatch import timeline
from dispatch.models import Assignment, EscalationStep, Notification
from foundation.clock import as_utc

log = logging.getLogger(__name__)


def audit(session: Session, now: datetime, overdue_after_s: float) -> list[str]:
    """Raise findings in the caller's transaction; returns them as short strings."""
    findings: list[str] = []
    pending = exists().where(EscalationStep.assignment_id == Assignment.id, EscalationStep.state == "pending")
    stranded = session.execute(
        select(Assignment).where(Assignment.state == "active", ~pending, Assignment.audit_flagged_at.is_(None))
    ).scalars()
    for assignment in stranded:
        assignment.audit_flagged_at = now
        timeline.record(
            session,
            "audit_no_pending_step",
            actor="auditor",
            incident_id=assignment.incident_id,
            at=now,
            assignment_id=assignment.id,
            service=assignment.service,
        )
        findings.append(f"assignment {assignment.id}: active with no pending step")
    horizon = now - timedelta(seconds=overdue_after_s)
    # The engine claims steps in due order, so a late step it has not passed by is waiting its
    # turn (a backlog). One it passed by -- a step due later already ran within the limit -- is
    # stranded: locked by a hung transaction, or otherwise skipped. A step another worker holds
    # at this very moment can look stranded too; that is a few rows in a burst, not thousands.
    passed_up_to = session.execute(
        select(func.max(EscalationStep.due_at)).where(EscalationStep.state == "done", EscalationStep.done_at >= horizon)
    ).scalar_one_or_none()
    late = (
        session.execute(
            select(EscalationStep).where(
                EscalationStep.state == "pending",
                EscalationStep.due_at < horizon,
                EscalationStep.due_at < passed_up_to,
                EscalationStep.audit_flagged_at.is_(None),
            )
        ).scalars()
        if passed_up_to is not None
        else ()
    )
    for step in late:
        step.audit_flagged_at = now
        overdue = (now - step.due_at).total_seconds()
        timeline.record(
            session,
            "audit_step_overdue",
            actor="auditor",
            incident_id=step.incident_id,
            at=now,
            step_id=step.id,
            overdue_s=round(overdue, 1),
        )
        findings.append(f"step {step.id}: overdue by {overdue:.0f}s")
    for finding in findings:
        log.error("auditor: %s", finding)
    return findings


@dataclass(frozen=True)
class Backlog:
    """Escalation steps due and not yet executed, and how late the oldest of them is."""

    due: int
    behind_s: float


def backlog(session: Session, now: datetime) -> Backlog:
    """How far the escalation engine is behind its timers, for the whole service (two aggregates)."""
    due, oldest = session.execute(
        select(func.count(), func.min(EscalationStep.due_at)).where(
            EscalationStep.state == "pending", EscalationStep.due_at <= now
        )
    ).one()
    behind_s = max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest is not None else 0.0
    return Backlog(due=int(due), behind_s=behind_s)


# Provider states that are not final: a callback should still come.
IN_FLIGHT = ("queued", "sent", "initiated", "ringing", "in-progress", "answered")


def close_unconfirmed(session: Session, now: datetime, after_s: float) -> int:
    """Notifications still in a provider's in-flight state ``after_s`` after they went out: unconfirmed.

    The callback that would have ended them was lost (we were down, the provider gave up).
    Saying "unconfirmed" is true; leaving "ringing" on the console for ever is not.
    """
    horizon = now - timedelta(seconds=after_s)
    rows = session.execute(
        select(Notification)
        .where(Notification.state.in_(IN_FLIGHT), Notification.sent_at.is_not(None), Notification.sent_at < horizon)
        .limit(500)
    ).scalars()
    closed = 0
    for row in rows:
        previous, row.state, row.updated_at = row.state, "unconfirmed", now
        timeline.record(
            session,
            "notification_unconfirmed",
            actor="auditor",
            incident_id=row.incident_id,
            at=now,
            notification_id=row.id,
            channel=row.channel,
            recipient=row.recipient_id,
            previous=previous,
            sent_at=row.sent_at.isoformat() if row.sent_at else None,
        )
        closed += 1
    if closed:
        log.warning("auditor: %d notifications had no final state from the provider; marked unconfirmed", closed)
    return closed
