"""A provider's delivery report applied to an outbox row: one set of rules for every provider.

Each provider's webhook turns its own report into a status word (Twilio's ``MessageStatus``
and ``CallStatus``, the SMS gateway's ``sms:delivered`` ...) and whether a failure is
permanent; :func:`map_status` (pure) decides what that means and :func:`apply_status`
records it. Reports may arrive out of order: a state only ever moves to a higher rank.
``read`` (a chat message was opened) is a receipt on the timeline, never an acknowledgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from dispatch import routing, timeline
from dispatch.escalation import bring_forward
from dispatch.models import Notification

RANK = {
    "pending": 0,
    "sending": 0,
    "unknown": 0,
    "accepted": 1,
    "queued": 1,
    "initiated": 1,
    "scheduled": 1,
    "sending_provider": 2,
    "ringing": 2,
    "sent": 3,
    "in-progress": 3,
    "answered": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "completed": 5,
    "busy": 5,
    "no-answer": 5,
    "canceled": 5,
    "read": 6,
}


@dataclass(frozen=True)
class StatusChange:
    previous: str
    state: str
    event: str  # the timeline event kind: "sms_delivered", "chat_read", "voice_no_answer"
    bring_forward: str | None  # why the next step comes forward now, if the page will reach nobody


def map_status(medium: str, current: str, status: str, *, permanent: bool) -> StatusChange | None:
    """What a report of ``status`` does to a row sent as ``medium`` (sms, chat, voice) now in ``current``.

    None: nothing (a late or repeated report).

    A call nobody picked up, that was busy or
    failed, and a text refused for good (``permanent``: a landline, an unsubscribed or invalid
    number, a phone that could not send it) bring the next step forward; a text that failed
    for a passing reason, a call we cancelled ourselves, ``read``: the policy's timing stands.
    """
    if RANK.get(status, -1) <= RANK.get(current, 0):
        return None
    reason: str | None = None
    if medium == "voice" and status in ("no-answer", "busy", "failed"):
        reason = status
    elif medium != "voice" and status in ("failed", "undelivered") and permanent:
        reason = "permanent_sms_failure"
    return StatusChange(current, status, f"{medium}_{status.replace('-', '_')}", reason)


def apply_status(
    session: Session,
    row: Notification,
    status: str,
    now: datetime,
    *,
    actor: str,
    permanent: bool,
    error_code: int | None = None,
    error: str | None = None,
) -> bool:
    """Record one delivery report on ``row`` in the caller's transaction; False if it changed nothing."""
    # Named by how it went: an "sms" step a responder got on WhatsApp reads "chat_read".
    change = map_status(routing.medium(row.provider, row.channel), row.state, status, permanent=permanent)
    if change is None:
        return False
    row.state, row.updated_at = change.state, now
    if error_code is not None:
        row.error_code = error_code
    if error:
        row.last_error = error[:500]
    timeline.record(
        session,
        change.event,
        actor=actor,
        incident_id=row.incident_id,
        at=now,
        notification_id=row.id,
        recipient=row.recipient_id,
        previous=change.previous,
        error_code=row.error_code,
        error=error[:500] if error else None,
    )
    if change.bring_forward is not None and row.assignment_id is not None and row.step_id is not None:
        bring_forward(session, row.assignment_id, now, change.bring_forward, step_id=row.step_id)
    return True
