"""Sending the outbox: each notification row is claimed, committed as ``sending``, then sent.

Exactly-once rules:
- A row is claimed atomically (attempt counted and committed) *before* the API call.
- A row found in ``sending`` after its sender died is never sent again: it becomes
  ``unknown`` and the escalation's next step carries on (a missed page is covered
  by the next step; a doubled page never happens).
- 429, 5xx and timeouts are retried with exponential backoff up to
  ``twilio.send_attempts``. When the failed request may have reached Twilio (a read
  timeout, a connection dropped mid-answer), the row is marked ``outcome_unknown`` and
  the retry first asks Twilio whether the message or call exists; only if it does not
  is it sent again. Permanent errors (21211, 21610, 21614, other 4xx) are
  recorded and bring the assignment's next step forward to now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from dispatch import timeline
from dispatch.models import EscalationStep, Notification
from foundation.clock import utcnow
from foundation.db import transaction
from foundation.logsafe import mask_phone, mask_phones_in
from foundation.settings import Settings
from responders.channels import Channels
from responders.twilio_client import classify_twilio_error, request_may_have_arrived

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    notification_id: int
    outcome: str  # sent | retry | failed | skipped
    detail: str = ""


class Outbox:
    """Claims due notifications and hands them to the phone provider."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        channels: Channels,
        settings: Settings,
        public_base: Callable[[], str],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._channels = channels
        self._settings = settings
        self._public_base = public_base
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=settings.twilio.concurrency, thread_name_prefix="outbox")

    def send_due(self, limit: int = 200) -> list[SendResult]:
        """Send every due notification, ``twilio.concurrency`` API calls at a time.

        Rows are claimed one by one in this thread (cheap transactions); the API
        calls, which mostly wait on the network, run in the pool.
        """
        futures: list[Future[SendResult]] = []
        while len(futures) < limit:
            claimed = self._claim()
            if claimed is None:
                break
            futures.append(self._pool.submit(self._send, claimed))
        return [future.result() for future in futures]

    def close(self) -> None:
        """Finish the API calls in flight, then stop the pool."""
        self._pool.shutdown(wait=True)

    def next_due_at(self) -> datetime | None:
        with self._sessions() as session:
            return session.execute(
                select(Notification.next_attempt_at)
                .where(Notification.state == "pending")
                .order_by(Notification.next_attempt_at)
                .limit(1)
            ).scalar_one_or_none()

    def recover_abandoned(self) -> int:
        """Rows left in ``sending`` by a dead sender become ``unknown`` (never resent)."""
        horizon = self._clock() - timedelta(seconds=self._settings.twilio.timeout_s * 3 + 30)
        with transaction(self._sessions) as session:
            rows = session.execute(
                select(Notification).where(Notification.state == "sending", Notification.claimed_at < horizon)
            ).scalars()
            count = 0
            for row in rows:
                row.state = "unknown"
                row.last_error = "sender stopped during the API call; outcome unknown, not resent"
                timeline.record(
                    session,
                    "notification_unknown",
                    actor="system",
                    incident_id=row.incident_id,
                    notification_id=row.id,
                    channel=row.channel,
                    recipient=row.recipient_id,
                )
                count += 1
        if count:
            log.warning("%d notifications left mid-send by a dead sender marked unknown", count)
        return count

    def _claim(self) -> Notification | None:
        now = self._clock()
        with transaction(self._sessions) as session:
            due = (
                select(Notification.id)
                .where(Notification.state == "pending", Notification.next_attempt_at <= now)
                .order_by(Notification.next_attempt_at, Notification.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            claimed_id = session.execute(
                update(Notification)
                .where(Notification.id == due.scalar_subquery(), Notification.state == "pending")
                .values(state="sending", claimed_at=now, attempts=Notification.attempts + 1, updated_at=now)
                .returning(Notification.id)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            if claimed_id is None:
                return None
            row = session.get_one(Notification, claimed_id)
            session.refresh(row)
            session.expunge(row)
            return row

    def _send(self, row: Notification) -> SendResult:
        base = self._public_base()
        if row.outcome_unknown:
            try:
                found = self._find_earlier_attempt(row)
            except Exception as exc:
                return self._failed(row, exc, lookup=True)
            if found is not None:
                log.warning(
                    "%s %s: the timed-out attempt had reached Twilio as %s; not resent", row.channel, row.id, found
                )
                return self._record_sent(row, found, recovered=True)
        try:
            if row.channel == "voice":
                sid = self._channels.place_call(row.to_number, row.body, status_callback=f"{base}/twilio/voice/status")
            else:
                sid = self._channels.send_sms(row.to_number, row.body, status_callback=f"{base}/twilio/sms/status")
        except Exception as exc:
            return self._failed(row, exc)
        return self._record_sent(row, sid)

    def _find_earlier_attempt(self, row: Notification) -> str | None:
        """What an earlier, unanswered attempt created at Twilio, if anything."""
        if row.channel != "voice":
            return self._channels.find_sms(row.to_number, row.body, since=row.created_at)
        with self._sessions() as session:
            owned = session.execute(
                select(Notification.provider_sid).where(
                    Notification.to_number == row.to_number,
                    Notification.channel == "voice",
                    Notification.provider_sid.is_not(None),
                )
            ).scalars()
            exclude = {sid for sid in owned if sid}
        return self._channels.find_call(row.to_number, since=row.created_at, exclude=exclude)

    def _record_sent(self, row: Notification, sid: str, *, recovered: bool = False) -> SendResult:
        now = self._clock()
        with transaction(self._sessions) as session:
            session.execute(
                update(Notification)
                .where(Notification.id == row.id, Notification.state == "sending")
                .values(
                    state="queued",
                    provider_sid=sid,
                    sent_at=now,
                    updated_at=now,
                    last_error=None,
                    outcome_unknown=False,
                )
            )
            timeline.record(
                session,
                # Twilio answered with a SID: the message or call is queued there. Named like
                # Twilio's own states so the callbacks that follow (sent, delivered) read in order.
                f"{row.channel}_queued",
                actor="system",
                incident_id=row.incident_id,
                at=now,
                notification_id=row.id,
                recipient_kind=row.recipient_kind,
                recipient=row.recipient_id,
                to=mask_phone(row.to_number),
                sid=sid,
                attempt=row.attempts,
                alert_code=row.alert_code,
                found_after_timeout=True if recovered else None,  # said only when it happened
            )
        return SendResult(row.id, "sent", sid)

    def _failed(self, row: Notification, exc: Exception, *, lookup: bool = False) -> SendResult:
        """Record a failed attempt; ``lookup`` when it was the check for an earlier attempt that failed."""
        kind, code = classify_twilio_error(exc)
        detail = mask_phones_in(f"{'lookup ' if lookup else ''}{type(exc).__name__}: {exc}")[:500]
        now = self._clock()
        retry = kind == "transient" and row.attempts < self._settings.twilio.send_attempts
        # A failed lookup learns nothing, so the earlier doubt stands.
        unknown = row.outcome_unknown if lookup else request_may_have_arrived(exc)
        with transaction(self._sessions) as session:
            current = session.get_one(Notification, row.id)
            current.last_error, current.error_code, current.updated_at = detail, code, now
            current.outcome_unknown = unknown
            if retry:
                delay = self._settings.twilio.retry_backoff_s * 2 ** (row.attempts - 1)
                current.state = "pending"
                current.next_attempt_at = now + timedelta(seconds=delay)
            else:
                current.state = "failed"
                timeline.record(
                    session,
                    f"{row.channel}_failed",
                    actor="system",
                    incident_id=row.incident_id,
                    at=now,
                    notification_id=row.id,
                    recipient=row.recipient_id,
                    error_kind=kind,
                    error_code=code,
                    attempts=row.attempts,
                    outcome_unknown=unknown,
                    error=detail,
                )
                if row.assignment_id is not None:
                    advance_now(session, row.assignment_id, now)
        log.warning(
            "%s %s to %s failed (%s, code %s, attempt %d): %s",
            row.channel,
            row.id,
            mask_phone(row.to_number),
            kind,
            code,
            row.attempts,
            "retrying" if retry else "giving up",
        )
        return SendResult(row.id, "retry" if retry else "failed", detail)


def advance_now(session: Session, assignment_id: int, now: datetime) -> int:
    """Bring the assignment's pending step forward to now (a channel failed for good)."""
    moved = session.execute(
        update(EscalationStep)
        .where(
            EscalationStep.assignment_id == assignment_id,
            EscalationStep.state == "pending",
            EscalationStep.due_at > now,
        )
        .values(due_at=now)
    )
    return int(moved.rowcount or 0)  # type: ignore[attr-defined]
