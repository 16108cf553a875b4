"""Tables owned by the dispatch engine: incidents, their timeline, the inbound log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from foundation.clock import utcnow
from foundation.db import Base

# "unanswered": every step of the escalation policy ran and nobody accepted; it stays open,
# on top of the board, until a dispatcher takes ownership and acts.
INCIDENT_STATES = ("received", "dispatched", "unanswered", "acknowledged", "on_scene", "resolved", "cancelled")
OPEN_STATES = ("received", "dispatched", "unanswered", "acknowledged", "on_scene")


class Incident(Base):
    """One emergency. A press creates at most one, keyed by (device_id, press_id)."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("device_id", "press_id"),
        UniqueConstraint("call_id"),
        CheckConstraint(
            "state IN ('received','dispatched','unanswered','acknowledged','on_scene','resolved','cancelled')",
            name="state",
        ),
        CheckConstraint("service IS NULL OR service IN ('police','disaster','ambulance')", name="service"),
        Index("ix_incidents_open", "state", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # "press" (later also "call")
    # Deliberately not a foreign key: a press from an unregistered device must still be recorded.
    device_id: Mapped[str | None] = mapped_column(String(64))
    press_id: Mapped[str | None] = mapped_column(String(128))
    service: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="received")

    lat: Mapped[float | None]
    lon: Mapped[float | None]
    accuracy_m: Mapped[float | None]
    location_source: Mapped[str | None] = mapped_column(String(32))  # device_gps | device_registered

    needs_review: Mapped[bool] = mapped_column(default=False)
    review_reason: Mapped[str | None] = mapped_column(String(200))

    # 112 call records (source == "call"); see dispatch/calls.py.
    call_id: Mapped[str | None] = mapped_column(String(128))
    caller_number: Mapped[str | None] = mapped_column(String(20), index=True)
    call_taker: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[int | None]
    classification: Mapped[str | None] = mapped_column(String(16))  # normal | ghost | prank | info
    description: Mapped[str | None] = mapped_column(Text)
    services: Mapped[list[str]] = mapped_column(JSON, default=list)  # every service dispatched
    address_text: Mapped[str | None] = mapped_column(Text)  # as the caller said it
    geocode: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # source, confidence, result
    location_needed: Mapped[bool] = mapped_column(default=False)

    opened_at: Mapped[datetime] = mapped_column(default=utcnow)  # server receive time
    source_ts: Mapped[datetime | None]  # the device's own clock
    closed_at: Mapped[datetime | None]
    disposition: Mapped[str | None] = mapped_column(String(64))

    # The dispatcher who took ownership of an unanswered or flagged incident (actions.take_ownership).
    owned_by: Mapped[str | None] = mapped_column(String(100))
    owned_at: Mapped[datetime | None]


class TimelineEvent(Base):
    """An append-only record of one step. Never updated or deleted (database triggers refuse)."""

    __tablename__ = "timeline_events"
    __table_args__ = (
        Index("ix_timeline_incident", "incident_id", "id"),
        Index("ix_timeline_device", "device_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    device_id: Mapped[str | None] = mapped_column(String(64))
    unit_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)  # server time
    source_ts: Mapped[datetime | None]  # the sender's clock, when it gave one
    actor: Mapped[str] = mapped_column(String(100))  # e.g. "device:BTN-001", "system", "user:rina"
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class InboundMessage(Base):
    """Every MQTT message received, with its outcome; dead letters keep their reason."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        CheckConstraint("outcome IN ('accepted','duplicate','dead_letter')", name="outcome"),
        Index("ix_inbound_outcome", "outcome", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # truncated to the size limit for oversized ones
    payload_size: Mapped[int]
    redelivered: Mapped[bool] = mapped_column(default=False)  # the broker's DUP flag
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))


ASSIGNMENT_STATES = ("active", "accepted", "on_scene", "resolved", "cancelled", "exhausted")


class Assignment(Base):
    """One service's response to an incident: which unit is paged, who accepted.

    ``fence`` is the fencing token: every change that invalidates pending steps
    (accept, decline, reassign, cancel) increments it, and a step carrying an
    older fence exits without acting.
    """

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("incident_id", "service"),
        CheckConstraint("state IN ('active','accepted','on_scene','resolved','cancelled','exhausted')", name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    service: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="active")
    unit_id: Mapped[str | None] = mapped_column(String(64))  # the unit being paged now
    accepted_unit_id: Mapped[str | None] = mapped_column(String(64))
    round: Mapped[int] = mapped_column(default=0)  # the round of the last step executed
    fence: Mapped[int] = mapped_column(default=0)
    # unit_id -> reason: "declined" for the incident, "no answer" for the rest of the round
    excluded: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    explanation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the matcher's last answer
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    on_scene_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    audit_flagged_at: Mapped[datetime | None]


class EscalationStep(Base):
    """A pending (or finished) step of an escalation policy. The scheduler only looks for due rows."""

    __tablename__ = "escalation_steps"
    __table_args__ = (
        UniqueConstraint("assignment_id", "fence", "round", "seq"),
        CheckConstraint("state IN ('pending','done','cancelled','stale','failed')", name="state"),
        Index("ix_steps_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    fence: Mapped[int]
    round: Mapped[int]
    seq: Mapped[int]
    action: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    audit_flagged_at: Mapped[datetime | None]


NOTIFICATION_STATES = (
    "pending",  # written, not yet handed to Twilio
    "sending",  # claimed by a sender; the API call may be in flight
    "queued",
    "sent",
    "delivered",  # SMS (or WhatsApp) progress reported by the provider
    "read",  # a WhatsApp message was opened: a receipt, never an acknowledgement
    "ringing",
    "in-progress",
    "completed",  # call progress
    "answered",  # the call got a keypad answer
    "undelivered",
    "failed",
    "no-answer",
    "busy",
    "canceled",
    "cancelled",  # never sent: the assignment was accepted (or closed) before its turn came
    "expired",  # never sent: the provider stayed unreachable for as long as the page was useful
    "unconfirmed",  # sent, but the provider's final report never came (the auditor closed it)
)


class Notification(Base):
    """The outbox: one row per message or call, written before the API call.

    ``idempotency_key`` (incident, step, recipient, channel) makes a second
    attempt to create the same notification a no-op, whatever the number of workers.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_due", "state", "next_attempt_at"),
        Index("ix_notifications_incident", "incident_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # None only for an answer to an SMS that named no incident ("which alert: 3 or 5?").
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id"))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("escalation_steps.id"))
    recipient_kind: Mapped[str] = mapped_column(String(16))  # unit | supervisor | resident
    recipient_id: Mapped[str] = mapped_column(String(64))
    to_number: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(8))  # sms | chat | voice (the policy's abstract channel)
    # Which provider carries it ("twilio", "sms_gateway", "whatsapp"): chosen by the outbox when first claimed
    # (dispatch/routing.py), fixed while a request may be in doubt, changed only when one is down.
    provider: Mapped[str | None] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(2), default="id")
    alert_code: Mapped[int | None]
    body: Mapped[str] = mapped_column(Text, default="")  # SMS text, or TwiML for a call
    # An alert's values for the approved WhatsApp template ({"1": name, "2": summary, "3": code,
    # "4": link}); None for texts that cannot open a WhatsApp conversation (dispatch/routing.py).
    chat_variables: Mapped[dict[str, str] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    # The state the last delivery report moved this row from ("sent" for a "delivered"): set by
    # the report's own guarded UPDATE, so that one statement records a report (dispatch/delivery.py).
    reported_from: Mapped[str | None] = mapped_column(String(16))
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempts: Mapped[int] = mapped_column(default=0)
    # The last attempt failed after the request may have reached Twilio (a read timeout):
    # the next attempt looks for what it created before sending again.
    outcome_unknown: Mapped[bool] = mapped_column(default=False, server_default=false())
    # When the attempt in doubt started, and how often we have looked for it since: a row in
    # doubt is only sent again after several lookups across ~2x the request timeout found nothing.
    doubt_since: Mapped[datetime | None]
    lookups: Mapped[int] = mapped_column(default=0, server_default="0")
    # A call the assignment no longer needs (someone accepted): end it through the provider.
    hangup_requested_at: Mapped[datetime | None]
    hangup_done_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # the worker (mqtt.client_id) holding it
    last_error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ProviderOutage(Base):
    """One episode of a provider channel failing transiently (5xx, 429, timeouts), for every process.

    Opened by the first transient failure, closed by the auditor once a page went out on the
    channel after the last failure. The console and /healthz read the open ones.
    """

    __tablename__ = "provider_outages"
    __table_args__ = (Index("ix_provider_outages_open", "provider", "channel", "ended_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))  # the provider's display name, e.g. "Twilio"
    channel: Mapped[str] = mapped_column(String(8))  # sms | voice
    started_at: Mapped[datetime]
    last_failure_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(default=1)
    first_incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    supervisors_alerted_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class AlertCode(Base):
    """A short per-recipient number ("Y 3") naming one open assignment for one phone."""

    __tablename__ = "alert_codes"
    __table_args__ = (UniqueConstraint("phone", "code"), UniqueConstraint("phone", "assignment_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20))
    code: Mapped[int]
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboundSms(Base):
    """Every SMS webhook received, unique by Twilio's MessageSid (redeliveries answer the same)."""

    __tablename__ = "inbound_sms"
    __table_args__ = (Index("ix_inbound_sms_from", "from_number", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_sid: Mapped[str] = mapped_column(String(64), unique=True)
    from_number: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(32))  # applied | error | ignored
    reply: Mapped[str] = mapped_column(Text, default="")


class ProviderEvent(Base):
    """Each signed webhook event a provider sent us, once: a second delivery of the same event is a replay."""

    __tablename__ = "provider_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class LinkUse(Base):
    """A one-tap link is single-use: the unique notification id records its one use."""

    __tablename__ = "link_uses"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), unique=True)
    action: Mapped[str] = mapped_column(String(16))
    used_at: Mapped[datetime] = mapped_column(default=utcnow)


class KeypadAnswer(Base):
    """A keypad answer applied, once per call and alert (the gather URL names the notification).

    A replayed signed request finds its row and gets the same answer again, changing nothing.
    """

    __tablename__ = "keypad_answers"
    __table_args__ = (UniqueConstraint("call_sid", "notification_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"))
    digits: Mapped[str] = mapped_column(String(8))
    twiml: Mapped[str] = mapped_column(Text)  # what was answered, to answer a repeat the same
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


# Ordered: each role can do what the ones before it can (dispatch.auth.RANK).
ROLES = ("call_taker", "dispatcher", "admin")
# Outside that order: reads /metrics and nothing else (a Prometheus scraper's token).
METRICS_ROLE = "metrics"
ALL_ROLES = (*ROLES, METRICS_ROLE)


class User(Base):
    """A console or API user. Passwords and tokens are stored only as hashes."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('call_taker','dispatcher','admin','metrics')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(2), default="id")
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginThrottle(Base):
    """Wrong console passwords in a row for one username from one client address (auth.login_block).

    Counted per address so a stranger guessing a dispatcher's password blocks only themselves.
    """

    __tablename__ = "login_throttle"
    __table_args__ = (UniqueConstraint("username", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(default=0)
    blocked_until: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """One console login. The cookie holds only a random id whose hash is here, so logout ends it."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class ApiToken(Base):
    """A bearer token for the HTTP API, stored as its SHA-256 (the plain token is shown once)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
