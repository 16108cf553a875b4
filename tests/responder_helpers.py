"""Helpers for responder-loop tests: fast policies, phones played through the Twilio sandbox."""

from __future__ import annotations

from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.auth import hash_password, issue_token
from dispatch.models import Notification, TimelineEvent, User
from dispatch.service import SANDBOX_PREFIX, DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from responders.sandbox import SandboxStore

# Same shape as the default policy, compressed from 30 s steps to 1 s steps.
FAST_POLICY = [
    {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
    {"after_s": 1, "action": "notify_unit", "channels": ["voice"]},
    {"after_s": 2, "action": "next_unit", "channels": ["sms", "voice"]},
    {"after_s": 3, "action": "supervisor", "channels": ["sms", "voice"]},
]


def fast_escalation(policy: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    chosen = policy or FAST_POLICY
    return {"policies": {s: chosen for s in ("police", "disaster", "ambulance")}, "repeat": 0, **extra}


UNIT_PHONES = {
    "POL-01": "+628110000101",
    "POL-02": "+628110000102",
    "POL-03": "+628110000103",
    "POL-04": "+628110000104",
    "AMB-01": "+628110000301",
    "AMB-02": "+628110000302",
    "SUP-POL": "+628110000901",
}


def sandbox(service: DispatchService) -> SandboxStore:
    assert service.sandbox is not None, "service runs without the built-in sandbox"
    return service.sandbox


def texts_to(store: SandboxStore, phone: str) -> list[str]:
    """Alerts we sent through the API to this phone (not TwiML replies to its SMS)."""
    return [m.body for m in store.messages if m.to == phone and m.direction == "outbound-api"]


def replies_to(store: SandboxStore, phone: str) -> list[str]:
    """What the app answered to this phone's SMS (TwiML <Message>)."""
    return [m.body for m in store.messages if m.to == phone and m.direction == "outbound-reply"]


def calls_to(store: SandboxStore, phone: str) -> list[Any]:
    return [c for c in store.calls if c.to == phone]


def reply_sms(service: DispatchService, phone: str, body: str) -> dict[str, Any]:
    """Type an SMS on a responder's phone in the sandbox; it reaches /twilio/sms signed like Twilio's."""
    response = requests.post(
        f"http://127.0.0.1:{service.web_port}{SANDBOX_PREFIX}/phones/sms",
        data={"From": phone, "Body": body},
        timeout=20,
    )
    response.raise_for_status()
    return dict(response.json())


def press_key(service: DispatchService, call_sid: str, digits: str) -> dict[str, Any]:
    response = requests.post(
        f"http://127.0.0.1:{service.web_port}{SANDBOX_PREFIX}/phones/calls/{call_sid}/digits",
        data={"Digits": digits},
        timeout=20,
    )
    response.raise_for_status()
    return dict(response.json())


def kinds(sessions: sessionmaker[Session], incident_id: int) -> list[str]:
    with sessions() as session:
        query = select(TimelineEvent.kind).where(TimelineEvent.incident_id == incident_id)
        return list(session.execute(query.order_by(TimelineEvent.id)).scalars())


def notifications(sessions: sessionmaker[Session], incident_id: int | None = None) -> list[Notification]:
    with sessions() as session:
        query = select(Notification).order_by(Notification.id)
        if incident_id is not None:
            query = query.where(Notification.incident_id == incident_id)
        return list(session.execute(query).scalars())


def api_token(sessions: sessionmaker[Session], username: str, role: str) -> str:
    """A new user with ``role`` and a bearer token for the HTTP API."""
    with transaction(sessions) as session:
        user = User(username=username, name=username.title(), role=role, password_hash=hash_password("pw"))
        session.add(user)
        session.flush()
        return issue_token(session, user, "tests", utcnow())
