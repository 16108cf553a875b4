"""A provider's delivery report applied to an outbox row: one set of rules for every provider.

Each provider's webhook turns its own report into a status word (Twilio's ``MessageStatus``
and ``CallStatus``, the SMS gateway's ``sms:delivered`` ...) and whether a failure is
permanent; :func:`map_status` (pure) decides what that means and :func:`apply_report`
records it. Reports may arrive out of order: a state only ever moves to a higher rank.
``read`` (a chat message was opened) is a receipt on the timeline, never an acknowledgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
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


@dataclass(frozen=True)
class Reported:
    """What one delivery report did to the row it names."""

    state: str | None  # the row's state now; None: no row has that provider id (yet)
    change: StatusChange | None = None  # None: a late or repeated report, nothing changed
    steps_moved: int = 0  # > 0: a step is due now, wake the engine


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


# A report racing its sender's commit needs a second UPDATE; more would mean something else is wrong.
_ATTEMPTS = 3


def apply_report(
    session: Session,
    match: ColumnElement[bool],
    status: str,
    now: datetime,
    *,
    actor: str,
    permanent: bool,
    error_code: int | None = None,
    error: str | None = None,
) -> Reported:
    """Record one delivery report on the row ``match`` names, in the caller's transaction.

    One guarded ``UPDATE … RETURNING``: the row moves only from a state of lower rank (the
    guard is re-checked on the row's newest version when two reports race on PostgreSQL), and
    ``reported_from = state`` keeps the state it left, computed from the old row as every SET
    expression is. Reports come twice per text and were a SELECT of the whole row and an ORM
    flush each; the row is read again only when the report changed nothing.

    Most reports (sent, delivered, a call answered) change no timer: only one that brought a
    step forward needs the engine woken (``steps_moved``).
    """
    rank = RANK.get(status, -1)
    if rank <= 0:  # a report of rank 0 or unknown moves no row (map_status)
        return Reported(session.execute(select(Notification.state).where(match)).scalar_one_or_none())
    values: dict[str, Any] = {"reported_from": Notification.state, "state": status, "updated_at": now}
    if error_code is not None:
        values["error_code"] = error_code
    if error:
        values["last_error"] = error[:500]
    guarded = (
        update(Notification)
        .where(match, Notification.state.not_in([state for state, r in RANK.items() if r >= rank]))
        .values(values)
        .returning(
            Notification.id,
            Notification.incident_id,
            Notification.assignment_id,
            Notification.step_id,
            Notification.recipient_id,
            Notification.provider,
            Notification.channel,
            Notification.error_code,
            Notification.reported_from,
        )
        .execution_options(synchronize_session=False)
    )
    for _ in range(_ATTEMPTS):
        changed = session.execute(guarded).one_or_none()
        if changed is not None:
            break
        current = session.execute(select(Notification.state).where(match)).scalar_one_or_none()
        if current is None or RANK.get(current, 0) >= rank:
            return Reported(current)  # no such row (yet), or a late or repeated report
        # The row matched only after the UPDATE began: its sender committed the provider id
        # between the two statements (a report can overtake the sender's commit). Try again:
        # the next statement sees it.
    else:
        return Reported(current)
    # Named by how it went: an "sms" step a responder got on WhatsApp reads "chat_read".
    change = map_status(
        routing.medium(changed.provider, changed.channel), changed.reported_from, status, permanent=permanent
    )
    assert change is not None, "the guard admits only a report of higher rank"
    timeline.record(
        session,
        change.event,
        actor=actor,
        incident_id=changed.incident_id,
        at=now,
        notification_id=changed.id,
        recipient=changed.recipient_id,
        previous=change.previous,
        error_code=changed.error_code,
        error=error[:500] if error else None,
    )
    moved = 0
    if change.bring_forward is not None and changed.assignment_id is not None and changed.step_id is not None:
        moved = bring_forward(session, changed.assignment_id, now, change.bring_forward, step_id=changed.step_id)
    return Reported(status, change, moved)
