"""Routing MQTT messages to their handlers, filing each one in the inbound log.

Called by the MQTT gateway for every message, or for the messages waiting together
(``handle_batch``: one transaction, a savepoint each). Returns normally only once the
message's effect, or its dead-letter record, is committed; raising means
"not handled, do not acknowledge".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from devices import protocol as device_protocol
from devices.gateway import BatchOutcome
from devices.gateway import InboundMessage as Received
from dispatch import intake, status
from dispatch.calls import CallDesk, CallRecord, Geocoded
from dispatch.metrics import Metrics
from dispatch.models import InboundMessage, Incident
from foundation.clock import utcnow
from foundation.db import transaction
from foundation.settings import Settings
from foundation.wire import InvalidMessage, decode_json_object, validate
from responders import protocol as responder_protocol

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], object]

# Broad on purpose: a message on a topic we do not (yet) handle is kept as a dead
# letter for inspection instead of never reaching us. calls/ and responders/ are
# reserved for the 112 feed and unit reports.
SUBSCRIPTIONS: tuple[str, ...] = ("devices/+/+", "calls/#", "responders/+/+")


Parsed = device_protocol.DeviceMessage | responder_protocol.ResponderMessage | CallRecord


@dataclass(frozen=True)
class _Work:
    """One message checked and parsed outside the transaction: what to write inside it."""

    message: Received
    now: datetime
    started: float  # perf_counter when taken, for the receive-to-commit histogram
    parsed: Parsed | None = None
    rejected: str | None = None  # the dead-letter reason when parsed is None
    geocoded: Geocoded | None = None


class InboundRouter:
    """Validate, apply and log one inbound message per call."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publish: Publish,
        settings: Settings,
        metrics: Metrics,
        on_opened: Callable[[Session, Incident, datetime], object] | None = None,
        wake: Callable[[], None] | None = None,
        calls: CallDesk | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._calls = calls
        self._on_opened = on_opened
        self._wake = wake
        self._sessions = sessions
        self._metrics = metrics
        self._publish = publish
        self._settings = settings
        self._clock = clock

    def __call__(self, message: Received) -> None:
        work = self._prepare(message)
        if work is None:
            return
        with transaction(self._sessions) as session:
            outcome = self._write(session, work)
        self._report(work, outcome)
        if outcome.opened is not None and self._wake is not None:
            self._wake()

    def handle_batch(self, messages: Sequence[Received]) -> BatchOutcome:
        """Several messages in one transaction, each in its own savepoint (group commit at intake).

        A message that raises is rolled back alone; the ones before it are committed and
        the ones after it are left for the gateway, which handles that message on its own
        first (so effects keep the order of arrival). Raising: nothing is committed.
        """
        works: list[_Work | None] = []
        error: BaseException | None = None
        for message in messages:
            try:
                works.append(self._prepare(message))
            except Exception as exc:
                error = exc
                break
        handled = 0
        done: list[tuple[_Work, intake.Outcome]] = []
        if any(work is not None for work in works):
            with transaction(self._sessions) as session:
                for work in works:
                    if work is not None:
                        try:
                            with session.begin_nested():
                                done.append((work, self._write(session, work)))
                        except Exception as exc:
                            error = exc
                            break
                    handled += 1
        else:
            handled = len(works)
        if error is not None:
            log.warning(
                "message %d of a batch of %d failed (%s); it is retried alone", handled + 1, len(messages), error
            )
        for work, outcome in done:
            self._report(work, outcome)
        if self._wake is not None and any(outcome.opened is not None for _work, outcome in done):
            self._wake()
        return BatchOutcome(committed=handled, error=error)

    def _prepare(self, message: Received) -> _Work | None:
        """Check and parse one message outside any transaction; None when there is nothing to do."""
        if device_protocol.is_own_output(message.topic) or status.is_call_status(message.topic):
            return None  # our own status messages echoed back by the broker
        now = self._clock()
        started = time.perf_counter()
        log.info("mqtt message received topic=%s bytes=%d", message.topic, len(message.payload))
        limit = self._settings.mqtt.max_payload_bytes
        if len(message.payload) > limit:
            return _Work(
                message, now, started, rejected=f"payload of {len(message.payload)} bytes exceeds {limit} bytes"
            )
        try:
            parsed = (
                device_protocol.parse_device_message(message.topic, message.payload)
                or responder_protocol.parse_responder_message(message.topic, message.payload)
                or self._parse_call(message.topic, message.payload)
            )
        except InvalidMessage as exc:
            return _Work(message, now, started, rejected=exc.reason)
        if parsed is None:
            return _Work(message, now, started, rejected=f"unknown topic {message.topic[:200]!r}")
        # Geocoding may call a remote service: do it before taking the database's write lock.
        geocoded = self._calls.geocode(parsed) if self._calls and isinstance(parsed, CallRecord) else None
        return _Work(message, now, started, parsed=parsed, geocoded=geocoded)

    def _write(self, session: Session, work: _Work) -> intake.Outcome:
        """Everything one message writes, in the caller's transaction."""
        if work.parsed is None:
            row = self._log(work.message, work.now, "dead_letter")
            row.reason = work.rejected
            session.add(row)
            return intake.Outcome("dead_letter", work.rejected)
        parsed, now = work.parsed, work.now
        # Added to the session only once its outcome is known: one INSERT, not an INSERT and an
        # UPDATE. The timeline names it by a timeline.Later, read when the events are written.
        row = self._log(work.message, now, "accepted")
        outcome = self._apply(session, parsed, now, row, work.geocoded)
        row.outcome, row.reason, row.incident_id = outcome.outcome, outcome.reason, outcome.incident_id
        session.add(row)
        is_press = isinstance(parsed, device_protocol.DeviceMessage)  # calls start their own dispatch
        if is_press and outcome.opened is not None and self._on_opened and intake.dispatchable(outcome.opened):
            # Same transaction: an incident is never committed without its first escalation step.
            self._on_opened(session, outcome.opened, now)
        return outcome

    def _report(self, work: _Work, outcome: intake.Outcome) -> None:
        """After the commit: metrics, log lines and the status messages the device waits for."""
        message = work.message
        if work.parsed is None:
            self._metrics.inbound.labels("unknown", "dead_letter").inc()
            log.warning("dead letter on %s: %s", message.topic[:200], work.rejected)
            return
        kind = "call" if isinstance(work.parsed, CallRecord) else work.parsed.kind
        self._metrics.receive_to_commit.labels(kind).observe(time.perf_counter() - work.started)
        self._metrics.inbound.labels(kind, outcome.outcome).inc()
        if outcome.outcome == "dead_letter":
            log.warning("dead letter on %s: %s", message.topic, outcome.reason)
        else:
            log.info(
                "%s %s -> incident %s (%s)",
                message.topic,
                outcome.outcome,
                outcome.incident_id,
                outcome.reason or "ok",
            )
        for publication in outcome.publications:
            self._publish(publication.topic, publication.payload)

    def _parse_call(self, topic: str, payload: bytes) -> CallRecord | None:
        if topic != status.CALL_TOPIC or self._calls is None:
            return None
        return validate(CallRecord, decode_json_object(payload))  # type: ignore[return-value]

    def record_failure(self, message: Received, error: BaseException) -> bool:
        """Dead-letter a message whose handling kept failing because of a bug.

        Database errors are not the message's fault: answer False so the message
        stays unacknowledged and is redelivered once the database is back.
        """
        if isinstance(error, DBAPIError):
            return False
        try:
            self._dead_letter(message, self._clock(), f"internal error: {type(error).__name__}: {error}")
        except Exception:
            log.exception("could not record failed message on %s", message.topic)
            return False
        return True

    def _apply(
        self,
        session: Session,
        parsed: Parsed,
        now: datetime,
        row: InboundMessage,
        geocoded: Geocoded | None = None,
    ) -> intake.Outcome:
        if isinstance(parsed, CallRecord):
            assert self._calls is not None
            return self._calls.accept(session, parsed, geocoded, actor="callcenter", now=now)
        if isinstance(parsed, responder_protocol.ResponderMessage):
            if isinstance(parsed.payload, responder_protocol.LocationPayload):
                return intake.accept_unit_location(session, parsed.unit_id, parsed.payload, now=now)
            return intake.accept_unit_status(session, parsed.unit_id, parsed.payload, now=now)
        payload = parsed.payload
        if isinstance(payload, device_protocol.PressPayload):
            return intake.accept_press(session, parsed.device_id, payload, now=now, inbound=row)
        if isinstance(payload, device_protocol.CancelPayload):
            grace = self._settings.intake.cancel_grace_s
            return intake.accept_cancel(session, parsed.device_id, payload, now=now, grace_s=grace)
        return intake.accept_heartbeat(session, parsed.device_id, payload, now=now)

    def _log(self, message: Received, now: datetime, outcome: str) -> InboundMessage:
        limit = self._settings.mqtt.max_payload_bytes
        return InboundMessage(
            received_at=now,
            topic=message.topic,
            payload=message.payload[:limit],
            payload_size=len(message.payload),
            redelivered=message.redelivered,
            outcome=outcome,
        )

    def _dead_letter(self, message: Received, now: datetime, reason: str) -> None:
        work = _Work(message, now, time.perf_counter(), rejected=reason)
        with transaction(self._sessions) as session:
            outcome = self._write(session, work)
        self._report(work, outcome)
