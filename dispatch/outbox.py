"""Sending the outbox: each notification row is claimed by the thread that sends it, then sent.

The rules, each a guarantee someone's life may rest on:

- **A row is ``sending`` only while a sender holds it.** Each sender thread claims one row
  (attempt counted, ``claimed_by`` and ``claimed_at`` committed) the moment it is free to
  send it, so a crash leaves at most ``outbox.concurrency`` rows per process in doubt.
- **A row in doubt is looked up, never written off and never blindly resent.** A send that
  may have reached the provider (a read timeout, a dropped connection, a sender that died
  mid-request) puts the row in doubt: it is looked up at the provider several times across
  ~3x the request timeout from the doubtful request; found, it is adopted; only when every
  lookup came back empty is it sent again. A failing lookup leaves the doubt standing. The
  decision and its evidence go on the timeline.
- **Transient failures never end a page.** 429, 5xx, timeouts and refused connections are
  retried with capped exponential backoff and jitter (longer when the provider says
  Retry-After) for as long as the page is useful (``outbox.sms_validity_s`` after it was
  written); then it is ``expired``. They never move the escalation: the next step keeps its
  time. Only permanent errors (invalid number, landline, unsubscribed, authentication) fail
  a page, and those bring the assignment's next step forward.
- **A result is never lost to a database outage.** A provider answer that cannot be saved
  is kept in memory (bounded) and saved once the database is back.
- **A page nobody needs is not sent**: once its assignment is accepted or closed, a pending
  page is cancelled and a call in progress is ended through the provider.

Every provider (responders.channels.Channels) gets the same rules; which one carries a row
is dispatch/routing.py's decision. The knobs (``settings.outbox``) are read from the
``twilio:`` section of the configuration, where existing files have them.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, null, or_, select, type_coerce, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from dispatch import provider_health, routing, timeline
from dispatch.alerts import insert_notification
from dispatch.escalation import bring_forward
from dispatch.metrics import Metrics
from dispatch.models import Assignment, EscalationStep, Notification
from dispatch.provider_health import ProviderHealth
from foundation.clock import as_utc, utcnow
from foundation.db import reading, transaction
from foundation.logsafe import mask_phone
from foundation.settings import Settings
from responders import messages
from responders.channels import Channels, ChatMessage, SendFailed
from responders.models import Supervisor, Unit

log = logging.getLogger(__name__)

# A page whose assignment is in one of these states is still wanted.
WANTED_ASSIGNMENT_STATES = ("active", "exhausted")
# Provider states of a call that may still ring or talk: a hang-up can still end it.
LIVE_CALL_STATES = ("queued", "initiated", "ringing", "in-progress", "answered")
# Results kept in memory while the database is unreachable (each is a few hundred bytes).
MAX_UNSAVED = 10_000


@dataclass(frozen=True)
class SendResult:
    notification_id: int
    outcome: str  # sent | found | retry | rerouted | looking | failed | expired | cancelled
    detail: str = ""


class _Budget:
    """How many rows one ``send_due`` may still claim, shared by its sender threads."""

    def __init__(self, limit: int) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


# The recipient's channel preferences (the roster's ``channels``), read with the row that needs
# them: only a text page chooses among providers by them (routing.candidates).
_PREFERENCES = type_coerce(
    case(
        (Notification.channel.not_in(sorted(routing.TEXT_CHANNELS)), null()),
        (
            Notification.recipient_kind == "unit",
            select(Unit.channels).where(Unit.id == Notification.recipient_id).scalar_subquery(),
        ),
        (
            Notification.recipient_kind == "supervisor",
            select(Supervisor.channels).where(Supervisor.id == Notification.recipient_id).scalar_subquery(),
        ),
        else_=null(),
    ),
    Unit.channels.type,
).label("preferences")


class Outbox:
    """Claims due notifications and hands them to the phone provider."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        providers: Mapping[str, Channels],
        settings: Settings,
        *,
        worker_id: str,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
        progress: Callable[[], None] = lambda: None,
    ) -> None:
        self._sessions = sessions
        self._providers = dict(providers)
        self._settings = settings
        self._worker_id = worker_id
        self.healths = {key: ProviderHealth(provider.name, metrics) for key, provider in self._providers.items()}
        self._clock = clock
        self._jitter = jitter
        self._progress = progress  # the watchdog's heartbeat: a long run of slow requests is not a stall
        self._pool = ThreadPoolExecutor(max_workers=settings.outbox.concurrency, thread_name_prefix="outbox")
        self._unsaved: deque[tuple[str, Callable[[Session], None]]] = deque()
        self._unsaved_lock = threading.Lock()

    # -- the job ----------------------------------------------------------------------

    def send_due(self, limit: int = 200) -> list[SendResult]:
        """Send due notifications, ``outbox.concurrency`` at a time; at most ``limit`` claims.

        Results the database could not take last time are saved first, then calls nobody
        needs any more are ended.
        """
        self.save_unsaved()
        self.hang_up_unneeded()
        due = self.next_due_at()
        if due is None or as_utc(due) > self._clock():
            # One read instead of a claim (a write and a commit) from each sender thread: most
            # passes below capacity are woken by commits that wrote nothing for the outbox.
            return []
        budget = _Budget(limit)
        futures: list[Future[list[SendResult]]] = [
            self._pool.submit(self._drain, budget) for _ in range(self._settings.outbox.concurrency)
        ]
        return [result for future in futures for result in future.result()]

    def close(self) -> None:
        """Finish the API calls in flight, then stop the pool."""
        self._pool.shutdown(wait=True)

    def next_due_at(self) -> datetime | None:
        with reading(self._sessions) as session:
            return session.execute(
                select(Notification.next_attempt_at)
                .where(Notification.state == "pending")
                .order_by(Notification.next_attempt_at)
                .limit(1)
            ).scalar_one_or_none()

    @property
    def unsaved(self) -> int:
        """Provider results waiting for the database."""
        with self._unsaved_lock:
            return len(self._unsaved)

    def _drain(self, budget: _Budget) -> list[SendResult]:
        """One sender thread: claim a row, send it, record the result; until nothing is due."""
        results: list[SendResult] = []
        while budget.take():
            row = self._claim()
            if row is None:
                break
            results.append(self._send(row))
            self._progress()
        return results

    # -- claiming and recovering ------------------------------------------------------

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
            # RETURNING the whole row and the recipient's channel preferences: the claim is one
            # statement, not an UPDATE and three SELECTs.
            claimed = session.execute(
                update(Notification)
                .where(Notification.id == due.scalar_subquery(), Notification.state == "pending")
                .values(
                    state="sending",
                    claimed_at=now,
                    claimed_by=self._worker_id,
                    attempts=Notification.attempts + 1,
                    updated_at=now,
                )
                .returning(Notification, _PREFERENCES)
                .execution_options(synchronize_session=False)
            ).one_or_none()
            if claimed is None:
                return None
            row, preferences = claimed
            if row.provider is None:
                # Chosen once, with the claim, so a request in doubt is looked up where it went.
                options = self._candidates(row, preferences or [])
                row.provider = options[0] if options else None
            session.flush()
            session.expunge(row)
            return row

    def _routes(self, session: Session, row: Notification) -> list[str]:
        """The providers able to carry this row to its recipient, best first (dispatch/routing.py)."""
        preferences = session.execute(select(_PREFERENCES).where(Notification.id == row.id)).scalar_one_or_none()
        return self._candidates(row, preferences or [])

    def _candidates(self, row: Notification, preferences: list[str]) -> list[str]:
        return routing.candidates(
            row.channel,
            row.to_number,
            preferences,
            self._providers,
            self._settings.local_sms_countries,
            templated=row.chat_variables is not None,
        )

    def recover_abandoned(self, *, at_start: bool = False) -> int:
        """Rows left ``sending`` by a dead sender go back to the queue, in doubt.

        A sender's claim is its lease: a row still ``sending`` ``outbox.lease_s`` after its
        claim has lost its sender. At start, rows this worker id claimed before it died
        are recovered at once (worker ids are unique, see ``mqtt.client_id``).
        """
        now = self._clock()
        horizon = now - timedelta(seconds=self._settings.outbox.lease_s)
        abandoned = Notification.claimed_at < horizon
        if at_start:
            abandoned = or_(abandoned, Notification.claimed_by == self._worker_id)
        with transaction(self._sessions) as session:
            rows = session.execute(select(Notification).where(Notification.state == "sending", abandoned)).scalars()
            count = 0
            for row in rows:
                row.state = "pending"
                row.outcome_unknown = True
                row.doubt_since = row.claimed_at or now
                row.lookups = 0
                row.next_attempt_at = now
                row.updated_at = now
                _record(
                    session,
                    "notification_in_doubt",
                    row,
                    now,
                    channel=row.channel,
                    claimed_at=(row.claimed_at or now).isoformat(),
                    claimed_by=row.claimed_by,
                    reason="sender stopped during the request",
                )
                count += 1
        if count:
            next(iter(self.healths.values())).in_doubt(count)
            log.warning("%d notifications left mid-send by a stopped sender: looking them up before any resend", count)
        return count

    # -- sending one row --------------------------------------------------------------

    def provider(self, key: str) -> Channels | None:
        """The provider wired under ``key`` (dispatch/routing.py), if any."""
        return self._providers.get(key)

    def _provider(self, row: Notification) -> Channels:
        return self._providers[row.provider or ""]

    def _health(self, row: Notification) -> ProviderHealth:
        return self.healths[row.provider or ""]

    def _send(self, row: Notification) -> SendResult:
        now = self._clock()
        if row.provider not in self._providers:
            failure = SendFailed("permanent", f"no provider configured for {row.channel} to this recipient")
            return self._failed(row, failure, requested_at=now)  # nothing was requested
        useful_until = row.created_at + timedelta(seconds=self._settings.outbox.sms_validity_s)
        if now >= useful_until:
            return self._expire(row, now)
        if row.outcome_unknown:
            decided = self._look_up(row, now)
            if decided is not None:
                return decided
        provider = self._provider(row)
        # Never delivered after it stopped being useful.
        validity_s = int((useful_until - now).total_seconds())
        # The doubt window runs from the request, not from the claim: on SQLite the claim may
        # have waited its turn for the write lock, and that wait must not shorten the lookups.
        requested_at = self._clock()
        try:
            medium = routing.medium(row.provider, row.channel)
            if medium == "voice":
                sid = provider.place_call(row.to_number, row.body)
            elif medium == "chat":
                sid = provider.send_chat(row.to_number, _chat(row), validity_s=validity_s, key=_key(row))
            else:
                sid = provider.send_sms(row.to_number, row.body, validity_s=validity_s, key=_key(row))
        except SendFailed as failure:
            return self._failed(row, failure, requested_at=requested_at)
        return self._sent(row, sid, now)

    def _look_up(self, row: Notification, now: datetime) -> SendResult | None:
        """Settle a row in doubt: adopt what the provider has, look again later, or decide to resend (None)."""
        try:
            found = self._find_earlier_attempt(row)
        except SendFailed as failure:
            return self._look_again(row, now, f"lookup failed: {failure.detail}")
        if found is not None:
            log.warning(
                "%s %s: the attempt in doubt had reached %s as %s; not resent",
                row.channel,
                row.id,
                self._provider(row).name,
                found,
            )
            return self._sent(row, found, now, found_after=row.lookups + 1)
        timeout_s = self._settings.outbox.timeout_s
        doubt_since = row.doubt_since or row.claimed_at or now
        # A slow provider may still be creating it: look across ~2 request timeouts after the
        # doubtful request itself timed out, before daring a second send.
        if now < doubt_since + timedelta(seconds=3 * timeout_s):
            return self._look_again(row, now, "not found yet")
        with transaction(self._sessions) as session:
            _record(
                session,
                "notification_resent_after_lookup",
                row,
                now,
                channel=row.channel,
                lookups=row.lookups + 1,
                looked_for_s=round((now - doubt_since).total_seconds(), 1),
            )
        return None

    def _look_again(self, row: Notification, now: datetime, evidence: str) -> SendResult:
        interval = max(0.2, self._settings.outbox.timeout_s / 4)

        def save(session: Session) -> None:
            current = self._release(session, row.id, now + timedelta(seconds=interval))
            if current is not None:
                current.lookups += 1
                current.last_error = evidence[:500]

        self._save(f"lookup of {row.channel} {row.id}", save)
        return SendResult(row.id, "looking", evidence)

    def _find_earlier_attempt(self, row: Notification) -> str | None:
        """What an earlier, unanswered attempt created at the provider, if anything."""
        since = row.doubt_since or row.created_at
        medium = routing.medium(row.provider, row.channel)
        if medium == "chat":
            return self._provider(row).find_chat(row.to_number, _chat(row), since=since, key=_key(row))
        if medium == "sms":
            return self._provider(row).find_sms(row.to_number, row.body, since=since, key=_key(row))
        with self._sessions() as session:
            owned = session.execute(
                select(Notification.provider_sid).where(
                    Notification.to_number == row.to_number,
                    Notification.channel == "voice",
                    Notification.provider_sid.is_not(None),
                )
            ).scalars()
            exclude = {sid for sid in owned if sid}
        return self._provider(row).find_call(row.to_number, since=since, exclude=exclude)

    # -- recording results ------------------------------------------------------------

    def _sent(self, row: Notification, sid: str, now: datetime, *, found_after: int | None = None) -> SendResult:
        def save(session: Session) -> None:
            # Still in doubt (pending) counts too: a lease may have run out while the result
            # waited for the database.
            session.execute(
                update(Notification)
                .where(
                    Notification.id == row.id,
                    Notification.provider_sid.is_(None),
                    Notification.state.in_(("sending", "pending")),
                )
                .values(
                    state="queued",
                    provider_sid=sid,
                    sent_at=now,
                    updated_at=now,
                    last_error=None,
                    outcome_unknown=False,
                    doubt_since=None,
                )
            )
            _record(
                session,
                # The provider answered with a SID: the message or call is queued there. Named
                # like the providers' own states so the callbacks that follow (sent, delivered) read in order.
                f"{_medium(row)}_queued",
                row,
                now,
                recipient_kind=row.recipient_kind,
                to=mask_phone(row.to_number),
                sid=sid,
                provider=self._provider(row).name,  # which provider carried it, for the operator
                attempt=row.attempts,
                alert_code=row.alert_code,
                found_after_lookups=found_after,  # said only when it happened
            )
            self._health(row).succeeded(session, row.channel, now)

        self._save(f"{row.channel} {row.id} sent as {sid}", save)
        return SendResult(row.id, "found" if found_after else "sent", sid)

    def _failed(self, row: Notification, failure: SendFailed, *, requested_at: datetime) -> SendResult:
        now = self._clock()
        if failure.kind == "permanent":
            if row.provider in self.healths:
                self._health(row).permanent_failure(row.channel)
            self._save(
                f"{row.channel} {row.id} failed", lambda session: self._fail_for_good(session, row, failure, now)
            )
            log.warning(
                "%s %s to %s failed for good (code %s): %s",
                row.channel,
                row.id,
                mask_phone(row.to_number),
                failure.code,
                failure.detail,
            )
            return SendResult(row.id, "failed", failure.detail)
        delay = self._backoff(row.attempts, failure.retry_after_s)
        if not failure.may_have_arrived and not row.outcome_unknown:
            rerouted = self._reroute(row, failure, now)
            if rerouted is not None:
                return rerouted

        def save(session: Session) -> None:
            since = self._health(row).failed(session, row.channel, failure.detail, now, row.incident_id)
            current = self._release(session, row.id, now + timedelta(seconds=delay))
            if current is None:
                return
            first_failure = current.last_error is None
            current.last_error, current.error_code = failure.detail, failure.code
            if failure.may_have_arrived:
                self._health(row).in_doubt()
                current.outcome_unknown = True
                current.doubt_since = requested_at
                current.lookups = 0
            if first_failure:
                _record(
                    session,
                    "provider_unreachable",
                    row,
                    now,
                    provider=self._provider(row).name,
                    channel=row.channel,
                    since=since.isoformat(),
                    error=failure.detail[:200],
                    retrying=True,
                )

        self._save(f"{row.channel} {row.id} retry", save)
        log.warning(
            "%s %s to %s: %s unreachable (%s), retrying in %.1fs",
            row.channel,
            row.id,
            mask_phone(row.to_number),
            self._provider(row).name,
            failure.detail[:200],
            delay,
        )
        return SendResult(row.id, "retry", failure.detail)

    def _reroute(self, row: Notification, failure: SendFailed, now: datetime) -> SendResult | None:
        """The provider is down and the page surely did not go through it: use the recipient's next one."""
        with self._sessions() as session:
            options = self._routes(session, row)
        following = routing.after(row.provider or "", options)
        if following is None:
            return None

        def save(session: Session) -> None:
            self._health(row).failed(session, row.channel, failure.detail, now, row.incident_id)
            current = self._release(session, row.id, now)
            if current is None:
                return
            current.provider, current.last_error, current.error_code = following, failure.detail, failure.code
            _record(
                session,
                "page_rerouted",
                row,
                now,
                channel=row.channel,
                provider=self._provider(row).name,
                to_provider=self._providers[following].name,
                reason=failure.detail[:200],
            )

        self._save(f"{row.channel} {row.id} rerouted", save)
        log.warning("%s %s: %s down (%s); using %s", row.channel, row.id, row.provider, failure.detail[:120], following)
        return SendResult(row.id, "rerouted", failure.detail)

    def _backoff(self, attempts: int, retry_after_s: float | None) -> float:
        knobs = self._settings.outbox
        capped = min(knobs.retry_max_backoff_s, knobs.retry_backoff_s * 2 ** max(attempts - 1, 0))
        # Jitter spreads the retries of a whole backlog so a recovering provider is not hit at once.
        delay = capped * (0.5 + 0.5 * self._jitter())
        return max(delay, retry_after_s or 0.0)

    def _release(self, session: Session, notification_id: int, next_attempt_at: datetime) -> Notification | None:
        """Put a claimed row back in the queue, or cancel it if its assignment no longer needs it."""
        current = session.get(Notification, notification_id, with_for_update=True)
        if current is None or current.state != "sending":
            return None  # its lease ran out meanwhile: someone else has it now
        now = self._clock()
        current.updated_at = now
        if not _still_wanted(session, current):
            current.state = "cancelled"
            _record_cancelled(session, current, now, "no longer needed")
            return None
        current.state = "pending"
        current.next_attempt_at = next_attempt_at
        return current

    def _fail_for_good(self, session: Session, row: Notification, failure: SendFailed, now: datetime) -> None:
        current = session.get_one(Notification, row.id, with_for_update=True)
        current.state = "failed"
        current.last_error, current.error_code, current.updated_at = failure.detail, failure.code, now
        _record(
            session,
            f"{_medium(row)}_failed",
            row,
            now,
            error_kind=failure.kind,
            error_code=failure.code,
            attempts=row.attempts,
            error=failure.detail,
        )
        if row.assignment_id is not None and row.step_id is not None:
            reason = "failed" if row.channel == "voice" else "permanent_sms_failure"
            bring_forward(session, row.assignment_id, now, reason, step_id=row.step_id)

    def _expire(self, row: Notification, now: datetime) -> SendResult:
        def save(session: Session) -> None:
            current = session.get_one(Notification, row.id, with_for_update=True)
            current.state, current.updated_at = "expired", now
            _record(
                session,
                f"{_medium(row)}_expired",
                row,
                now,
                attempts=row.attempts - 1,
                useful_s=self._settings.outbox.sms_validity_s,
                error=current.last_error,
            )

        self._save(f"{row.channel} {row.id} expired", save)
        log.error(
            "%s %s to %s never went out: expired after %d attempts",
            row.channel,
            row.id,
            mask_phone(row.to_number),
            row.attempts - 1,
        )
        return SendResult(row.id, "expired")

    # -- results that wait for the database -----------------------------------------

    def _save(self, what: str, save: Callable[[Session], None]) -> None:
        """Run ``save`` in its own transaction; if the database is unreachable, keep it for later."""
        try:
            with transaction(self._sessions) as session:
                save(session)
        except DBAPIError as exc:
            log.error("database unreachable; keeping in memory: %s (%s)", what, type(exc).__name__)
            with self._unsaved_lock:
                if len(self._unsaved) >= MAX_UNSAVED:
                    dropped, _ = self._unsaved.popleft()
                    # The row's lease runs out and it is looked up: found, never resent.
                    log.error("too many unsaved results; dropping the oldest (%s), its row will be looked up", dropped)
                self._unsaved.append((what, save))

    def save_unsaved(self) -> int:
        """Save results kept while the database was down, oldest first; stops at the first failure."""
        saved = 0
        while True:
            with self._unsaved_lock:
                if not self._unsaved:
                    return saved
                what, save = self._unsaved[0]
            try:
                with transaction(self._sessions) as session:
                    save(session)
            except DBAPIError:
                return saved
            with self._unsaved_lock:
                self._unsaved.popleft()
            saved += 1
            log.warning("saved after the database came back: %s", what)

    # -- calls nobody needs -----------------------------------------------------------

    def hang_up_unneeded(self) -> int:
        """End the calls whose assignment was accepted or closed while they rang."""
        now = self._clock()
        with transaction(self._sessions) as session:
            rows = (
                session.execute(
                    select(Notification)
                    .where(
                        Notification.hangup_requested_at.is_not(None),
                        Notification.hangup_done_at.is_(None),
                        Notification.provider_sid.is_not(None),
                    )
                    .limit(50)
                    .with_for_update(skip_locked=True)
                )
                .scalars()
                .all()
            )
            for row in rows:
                row.hangup_done_at = now  # claimed; reset below if the provider could not be reached
            claimed = [
                (row.id, row.incident_id, row.provider_sid or "", row.state, row.recipient_id, row.provider)
                for row in rows
            ]
        ended = 0
        for notification_id, incident_id, sid, state, recipient, provider in claimed:
            if state not in LIVE_CALL_STATES or provider not in self._providers:
                continue  # it ended by itself
            error: str | None = None
            try:
                self._providers[provider].end_call(sid, answered=state in ("in-progress", "answered"))
                ended += 1
            except SendFailed as failure:
                if failure.kind == "transient":
                    self._save(f"hang-up of {sid} retry", _hangup_retry(notification_id))
                    continue
                error = failure.detail  # e.g. the call is already over: nothing left to end
            self._save(f"hang-up of {sid}", _call_ended(incident_id, notification_id, recipient, sid, error, now))
        return ended

    # -- supervisors told about an outage -------------------------------------------

    def alert_outages(self) -> int:
        """Tell every supervisor about a long provider outage through a channel that still works."""
        now = self._clock()
        settings = self._settings
        written = 0
        with transaction(self._sessions) as session:
            provider_health.close_recovered(session, now)
            for alert in provider_health.alerts_due(
                session, now, settings.outbox.outage_alert_after_s, ("sms", "voice")
            ):
                supervisor = alert.supervisor
                language: messages.Language = "en" if supervisor.language == "en" else "id"
                since_local = alert.outage.started_at.astimezone(settings.local_zone).strftime("%H:%M:%S")
                text = messages.outage_text(
                    language,
                    provider=alert.outage.provider,
                    channel=alert.outage.channel,
                    since_local=since_local,
                    waiting=alert.waiting,
                )
                body = messages.outage_twiml(language, text) if alert.channel == "voice" else text
                if insert_notification(
                    session,
                    idempotency_key=f"outage:{alert.outage.id}:{supervisor.id}:{alert.channel}",
                    incident_id=alert.outage.first_incident_id,
                    recipient_kind="supervisor",
                    recipient_id=supervisor.id,
                    to_number=supervisor.phone,
                    channel=alert.channel,
                    language=language,
                    body=body,
                    next_attempt_at=now,
                ):
                    written += 1
        return written


def _call_ended(
    incident_id: int | None, notification_id: int, recipient: str, sid: str, error: str | None, now: datetime
) -> Callable[[Session], None]:
    def save(session: Session) -> None:
        timeline.record(
            session,
            "call_ended",
            actor="system",
            incident_id=incident_id,
            at=now,
            notification_id=notification_id,
            recipient=recipient,
            sid=sid,
            reason="accepted",
            error=error,
        )

    return save


def _key(row: Notification) -> str:
    """The provider-side id of a page where the provider takes ours (some do): stable per row."""
    return f"dispatch-n{row.id}"


def _medium(row: Notification) -> str:
    """How the row went (or was to go): its progress on the timeline reads "chat_read", "sms_delivered"."""
    return routing.medium(row.provider, row.channel)


def _chat(row: Notification) -> ChatMessage:
    """A row as a chat message: the approved template when it has its variables, else free text."""
    variables = row.chat_variables
    # The alert's one-tap link is signed with the row's id: only this page's message contains it.
    marker = variables.get("4", "") if variables else ""
    return ChatMessage(row.body, row.language, variables, marker)


def _hangup_retry(notification_id: int) -> Callable[[Session], None]:
    def save(session: Session) -> None:
        session.execute(update(Notification).where(Notification.id == notification_id).values(hangup_done_at=None))

    return save


def _still_wanted(session: Session, row: Notification) -> bool:
    """A page (a step's alert) is wanted while its assignment is still looking for a unit."""
    if row.step_id is None or row.assignment_id is None:
        return True  # resident updates, stand-downs, outage warnings: always
    state = session.execute(select(Assignment.state).where(Assignment.id == row.assignment_id)).scalar_one()
    return state in WANTED_ASSIGNMENT_STATES


def _record(session: Session, kind: str, row: Notification, now: datetime, **data: Any) -> None:
    """A timeline event about one notification (who it was for, which row)."""
    timeline.record(
        session,
        kind,
        actor="system",
        incident_id=row.incident_id,
        at=now,
        notification_id=row.id,
        recipient=row.recipient_id,
        **data,
    )


def _record_cancelled(session: Session, row: Notification, now: datetime, reason: str) -> None:
    _record(session, "notification_cancelled", row, now, channel=row.channel, reason=reason)


def stop_other_pages(
    session: Session, assignment_id: int, now: datetime, *, accepted_by: str | None = None
) -> dict[str, int]:
    """The assignment was accepted (or closed): cancel its pages not yet sent, end its live calls.

    Runs in the caller's transaction (the acceptance's). A call the accepting unit is on
    is left alone: it may be the call that carried the acceptance, whose answer ("accepted")
    must not be cut. A row being sent right now is handled when its sender reports: a call
    is then ended, an SMS simply arrives.
    """
    pages = (
        session.execute(
            select(Notification).where(
                Notification.assignment_id == assignment_id,
                Notification.step_id.is_not(None),
                or_(Notification.state == "pending", Notification.channel == "voice"),
            )
        )
        .scalars()
        .all()
    )
    cancelled = hung_up = 0
    for row in pages:
        on_the_line = row.recipient_id == accepted_by and row.state in ("in-progress", "answered")
        if on_the_line:
            continue
        if row.state == "pending":
            row.state, row.updated_at = "cancelled", now
            _record_cancelled(session, row, now, "accepted")
            cancelled += 1
        elif row.state in ("sending", *LIVE_CALL_STATES) and row.hangup_requested_at is None:
            row.hangup_requested_at = now
            hung_up += 1
    return {"cancelled": cancelled, "calls_to_end": hung_up}


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
