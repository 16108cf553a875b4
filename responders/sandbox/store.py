"""State of the Twilio sandbox: what it accepted, what it sent, what to break next.

Everything is guarded by one re-entrant lock; readers get deep copies so a test or the
phone page can never observe a record half-way through an update.  A condition variable
on the same lock lets tests wait for background deliveries without sleeping blindly.

Given a file, the store keeps its messages and calls there (rewritten after every change), so
the phone simulator of ``dispatch demo`` still shows every phone after a restart, as Twilio's
own log would. Calls that were live when the process stopped cannot go on (their callbacks ran
in that process): they come back ``failed``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

# Message states after which the sandbox will never touch a message again.
FINAL_MESSAGE_STATUSES = frozenset({"delivered", "undelivered", "failed", "received"})
# Call states after which the call is over.
FINAL_CALL_STATUSES = frozenset({"completed", "no-answer", "busy", "failed", "canceled"})


def new_sid(prefix: str) -> str:
    """Return a Twilio-shaped SID: two-letter prefix + 32 hex digits (34 characters)."""
    return prefix + uuid.uuid4().hex


def utcnow() -> datetime:
    """Timezone-aware current time in UTC."""
    return datetime.now(UTC)


@dataclass
class RawRequest:
    """One request received on the sandbox's Twilio REST API endpoints."""

    method: str
    path: str
    form: dict[str, list[str]]
    auth_username: str | None
    received_at: datetime
    response_status: int = 0


@dataclass
class WebhookDelivery:
    """One HTTP request the sandbox made to the application (one attempt)."""

    kind: str  # "message-status", "call-status", "incoming-sms", "call-twiml", "gather"
    method: str
    url: str
    params: dict[str, str]
    signature: str
    attempt: int
    sent_at: datetime
    status_code: int | None = None
    response_text: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the application answered with a 2xx status."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class SandboxMessage:
    """An SMS the sandbox accepted (outbound) or a phone sent in (inbound)."""

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    direction: str  # "outbound-api", "outbound-reply" or "inbound"
    status: str
    created_at: datetime
    updated_at: datetime
    validity_period: int | None = None
    status_callback: str | None = None
    num_segments: int = 1
    date_sent: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    status_history: list[str] = field(default_factory=list)
    # For inbound messages: what the application answered to the incoming-SMS webhook.
    app_response: WebhookDelivery | None = None
    # WhatsApp: the template it was rendered from, and its quick-reply buttons [title, payload].
    content_sid: str | None = None
    buttons: list[list[str]] = field(default_factory=list)


@dataclass
class SandboxCall:
    """An outbound call the sandbox accepted, and how far the simulated callee got."""

    sid: str
    account_sid: str
    to: str
    from_: str
    url: str | None
    method: str
    twiml: str | None
    status_callback: str | None
    status_callback_method: str
    status_callback_events: list[str]
    timeout_s: int
    status: str
    created_at: datetime
    updated_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    # The TwiML document the call is currently executing and the URL it came from
    # (None for inline Twiml); relative <Gather action> URLs resolve against it.
    document: str | None = None
    document_url: str | None = None
    digits: list[str] = field(default_factory=list)
    status_history: list[str] = field(default_factory=list)
    callback_sequence: int = 0
    last_response: WebhookDelivery | None = None
    error_code: int | None = None


@dataclass(frozen=True)
class Outage:
    """A stretch of time during which the sandbox's API fails (see :meth:`SandboxStore.outage`)."""

    mode: str  # error | hang | slow
    starts_at: datetime
    ends_at: datetime
    status: int
    retry_after_s: float | None
    hang_s: float
    resource: str | None = None  # "Calls", "Messages", "WhatsApp"; None: every API request


class SandboxStore:
    """Thread-safe record of everything the sandbox saw, plus fault injection.

    Fault injection knobs (plain attributes, safe to assign from a test thread):

    * ``reject_numbers``: E.164 number -> Twilio error code returned with HTTP 400 when a
      message or call is created for it (e.g. ``{"+6281200000000": 21211}``).
    * ``undeliverable_numbers``: E.164 number -> Twilio error code; the message is
      accepted and "sent", then ends ``undelivered`` with that ``ErrorCode`` (e.g. 30003).
    * ``queue_delay_s``: extra seconds each message waits in the queue before being sent;
      a message whose ``ValidityPeriod`` is shorter ends ``failed`` with 30036, as on Twilio.
    * :meth:`fail_next`: the next *n* API requests fail with a given HTTP status.
    * :meth:`outage`: for a while, every API request fails the way a real outage does
      (error answers, requests that hang, or requests carried out but answered late).
    """

    def __init__(self, path: Path | None = None) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._path = path
        self._messages: dict[str, SandboxMessage] = {}
        self._calls: dict[str, SandboxCall] = {}
        if path is not None and path.exists():
            self._load(path)
        self._requests: list[RawRequest] = []
        self._webhooks: list[WebhookDelivery] = []
        self._failures: deque[tuple[int, int | None]] = deque()
        self._stalls: deque[float] = deque()
        self._outages: list[Outage] = []
        self.reject_numbers: dict[str, int] = {}
        self.undeliverable_numbers: dict[str, int] = {}
        self.queue_delay_s: float = 0.0

    # -- fault injection -------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500, code: int | None = None) -> None:
        """Make the next ``n`` API requests fail with HTTP ``status`` and a Twilio error body.

        Calls accumulate: ``fail_next(2)`` twice fails the next four requests.  ``code``
        defaults to Twilio's code for the status (20500 for 500, 20429 for 429, ...).
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (4xx or 5xx)")
        with self._lock:
            self._failures.extend([(status, code)] * n)

    def outage(
        self,
        mode: str,
        seconds: float,
        *,
        status: int = 500,
        retry_after_s: float | None = None,
        hang_s: float = 0.0,
        resource: str | None = None,
    ) -> Outage:
        """From the end of the last scheduled outage (or now), for ``seconds``, every API request:

        * ``error``: is answered ``status`` (500, 429, 503 ...) with Twilio's error body, and a
          ``Retry-After`` header when ``retry_after_s`` is given; nothing is created;
        * ``hang``: is held ``hang_s`` seconds, then answered 503; nothing is created (a client
          with a shorter timeout sees a read timeout for a request that did not take effect);
        * ``slow``: is carried out, then answered only after ``hang_s`` (a client with a shorter
          timeout sees a read timeout for a request that did take effect).

        Calls chain: ``outage("hang", 15, hang_s=20)`` then ``outage("error", 15)`` is "hangs for
        15 s, then answers 500 for 15 s". ``resource`` ("Calls", "Messages") limits it to one API;
        "WhatsApp" to requests for ``whatsapp:`` addresses (SMS and calls go on working).
        """
        if mode not in ("error", "hang", "slow"):
            raise ValueError("mode must be error, hang or slow")
        if seconds <= 0 or hang_s < 0:
            raise ValueError("seconds must be > 0 and hang_s >= 0")
        with self._lock:
            start = max([utcnow(), *(o.ends_at for o in self._outages)])
            ends = start + timedelta(seconds=seconds)
            scheduled = Outage(mode, start, ends, status, retry_after_s, hang_s, resource)
            self._outages.append(scheduled)
            return scheduled

    def current_outage(self, path: str = "", *, whatsapp: bool = False) -> Outage | None:
        """The outage in force now for a request to ``path`` (``whatsapp``: for a whatsapp: address), if any."""
        now = utcnow()

        def hits(outage: Outage) -> bool:
            if outage.resource == "WhatsApp":
                return whatsapp
            return outage.resource is None or f"/{outage.resource}" in path

        with self._lock:
            return next((o for o in self._outages if o.starts_at <= now < o.ends_at and hits(o)), None)

    def end_outages(self) -> None:
        """Every outage, scheduled or running, is over now."""
        with self._lock:
            self._outages.clear()

    def outage_over_at(self) -> datetime | None:
        """When the last scheduled outage ends."""
        with self._lock:
            return max((o.ends_at for o in self._outages), default=None)

    def take_injected_failure(self) -> tuple[int, int | None] | None:
        """Consume one pending injected failure, if any: ``(status, code)``."""
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def stall_next(self, n: int, seconds: float) -> None:
        """Carry out the next ``n`` API requests but answer each only after ``seconds``.

        A client whose timeout is shorter sees a read timeout for a request that did
        take effect: the case where a careless retry sends a page twice.
        """
        if n < 0 or seconds < 0:
            raise ValueError("n and seconds must be >= 0")
        with self._lock:
            self._stalls.extend([seconds] * n)

    def take_stall(self) -> float:
        """Consume one pending stall, if any: the seconds to wait before answering (else 0)."""
        with self._lock:
            return self._stalls.popleft() if self._stalls else 0.0

    def rejection_for(self, number: str) -> int | None:
        """Twilio error code configured to reject ``number`` at creation, if any."""
        return self.reject_numbers.get(number)

    def undeliverable_code_for(self, number: str) -> int | None:
        """Twilio error code configured to make delivery to ``number`` fail, if any."""
        return self.undeliverable_numbers.get(number)

    # -- raw requests ----------------------------------------------------------------

    def record_request(self, raw: RawRequest) -> RawRequest:
        """Append a received API request; the caller sets ``response_status`` later."""
        with self._changed:
            self._requests.append(raw)
            self._changed.notify_all()
        return raw

    def set_response_status(self, raw: RawRequest, status: int) -> None:
        """Record the HTTP status the sandbox answered ``raw`` with."""
        with self._changed:
            raw.response_status = status
            self._changed.notify_all()

    @property
    def requests(self) -> list[RawRequest]:
        """Every API request received so far, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._requests)

    # -- messages --------------------------------------------------------------------

    def add_message(self, message: SandboxMessage) -> SandboxMessage:
        """Store a new message and return a copy of it."""
        with self._changed:
            message.status_history.append(message.status)
            self._messages[message.sid] = message
            self._save()
            self._changed.notify_all()
            return copy.deepcopy(message)

    def update_message(self, sid: str, **changes: Any) -> SandboxMessage | None:
        """Apply field changes to a message (status changes are appended to its history)."""
        with self._changed:
            message = self._messages.get(sid)
            if message is None:
                return None
            _apply(message, changes)
            self._save()
            self._changed.notify_all()
            return copy.deepcopy(message)

    def message(self, sid: str) -> SandboxMessage | None:
        """A copy of one message, or None."""
        with self._lock:
            found = self._messages.get(sid)
            return copy.deepcopy(found) if found else None

    @property
    def messages(self) -> list[SandboxMessage]:
        """All messages, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(list(self._messages.values()))

    def twilio_number_for(self, phone: str) -> str | None:
        """The sender of the most recent outbound message to ``phone`` (what a reply goes to)."""
        with self._lock:
            for message in reversed(list(self._messages.values())):
                if message.to == phone and message.direction.startswith("outbound"):
                    return message.from_
            return None

    # -- calls -----------------------------------------------------------------------

    def add_call(self, call: SandboxCall) -> SandboxCall:
        """Store a new call and return a copy of it."""
        with self._changed:
            call.status_history.append(call.status)
            self._calls[call.sid] = call
            self._save()
            self._changed.notify_all()
            return copy.deepcopy(call)

    def update_call(self, sid: str, **changes: Any) -> SandboxCall | None:
        """Apply field changes to a call (status changes are appended to its history)."""
        with self._changed:
            call = self._calls.get(sid)
            if call is None:
                return None
            _apply(call, changes)
            self._save()
            self._changed.notify_all()
            return copy.deepcopy(call)

    def transition_call(self, sid: str, from_statuses: Iterable[str], **changes: Any) -> SandboxCall | None:
        """Atomically apply ``changes`` only if the call is in one of ``from_statuses``.

        Returns the updated copy, or None when the call is unknown or in another state;
        this is what keeps the ring-out timer and a human's click from both ending a call.
        """
        with self._changed:
            call = self._calls.get(sid)
            if call is None or call.status not in set(from_statuses):
                return None
            _apply(call, changes)
            self._save()
            self._changed.notify_all()
            return copy.deepcopy(call)

    def next_call_sequence(self, sid: str) -> int:
        """Next ``SequenceNumber`` for the call's status callbacks (0, 1, 2, ...)."""
        with self._lock:
            call = self._calls[sid]
            sequence = call.callback_sequence
            call.callback_sequence += 1
            return sequence

    def call(self, sid: str) -> SandboxCall | None:
        """A copy of one call, or None."""
        with self._lock:
            found = self._calls.get(sid)
            return copy.deepcopy(found) if found else None

    @property
    def calls(self) -> list[SandboxCall]:
        """All calls, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(list(self._calls.values()))

    # -- webhooks --------------------------------------------------------------------

    def record_webhook(self, delivery: WebhookDelivery) -> None:
        """Remember one request made to the application."""
        with self._changed:
            self._webhooks.append(copy.deepcopy(delivery))
            self._changed.notify_all()

    @property
    def webhooks(self) -> list[WebhookDelivery]:
        """Every request made to the application, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._webhooks)

    # -- the file ------------------------------------------------------------------------

    def _save(self) -> None:
        # Under the lock; written beside and renamed, so a crash leaves the old file or the new one.
        if self._path is None:
            return
        state = {
            "messages": [dataclasses.asdict(m) for m in self._messages.values()],
            "calls": [dataclasses.asdict(c) for c in self._calls.values()],
        }
        partial = self._path.with_name(self._path.name + ".tmp")
        # Phone numbers and live one-tap links: readable by this user only.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(state, out, default=_iso_time)
        os.replace(partial, self._path)

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            messages = [_revive(SandboxMessage, m) for m in state["messages"]]
            calls = [_revive(SandboxCall, c) for c in state["calls"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("sandbox: cannot read %s (%s); the phones start empty", path, exc)
            return
        self._messages = {m.sid: m for m in messages}
        self._calls = {c.sid: c for c in calls}
        for call in self._calls.values():
            if call.status not in FINAL_CALL_STATUSES:
                _apply(call, {"status": "failed", "ended_at": utcnow()})

    # -- waiting ---------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[SandboxStore], bool], timeout_s: float = 5.0) -> bool:
        """Block until ``predicate(store)`` is true or ``timeout_s`` passes; return the outcome."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True


def _apply(record: SandboxMessage | SandboxCall, changes: dict[str, Any]) -> None:
    names = {f.name for f in dataclasses.fields(record)}
    unknown = set(changes) - names
    if unknown:
        raise AttributeError(f"unknown fields: {sorted(unknown)}")
    if "status" in changes and changes["status"] != record.status:
        record.status_history.append(changes["status"])
    for name, value in changes.items():
        setattr(record, name, value)
    record.updated_at = utcnow()


_TIMES = frozenset({"created_at", "updated_at", "date_sent", "answered_at", "ended_at", "sent_at", "received_at"})
_DELIVERIES = frozenset({"app_response", "last_response"})


def _iso_time(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


Record = TypeVar("Record", "SandboxMessage", "SandboxCall", "WebhookDelivery")


def _revive(cls: type[Record], data: dict[str, Any]) -> Record:
    """A record from its saved dict: times and nested webhook deliveries rebuilt, unknown keys ignored."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if value is not None and f.name in _TIMES:
            value = datetime.fromisoformat(value)
        elif value is not None and f.name in _DELIVERIES:
            value = _revive(WebhookDelivery, value)
        values[f.name] = value
    return cls(**values)
