"""One press that nobody answers, walked through the escalation on a simulated clock.

The real engine, database and Twilio status webhook (signed like Twilio's) run; only the
phone network is played here: Twilio takes every SMS and call, nobody picks up, and a
call ends ``no-answer`` after ringing ``RING_S`` seconds, as responders/channels.py asks
Twilio (``timeout=25``). Prints the incident's timeline in seconds after the press:

    .venv/bin/python -m tests.escalation_walk             # the default policy (config/default.yaml)
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from devices.models import Device
from dispatch import database
from dispatch.calls import CallDesk
from dispatch.escalation import EscalationEngine
from dispatch.geocoding import make_geocoder
from dispatch.metrics import Metrics
from dispatch.models import Incident, Notification, TimelineEvent
from dispatch.roster import apply_roster, load_roster
from dispatch.web import WebContext, create_app
from foundation.db import make_engine, make_session_factory, transaction
from foundation.settings import Settings, load_settings

ROSTER = Path(__file__).resolve().parent.parent / "config" / "roster.example.yaml"
BASE = "https://dispatch.walk.test"
TOKEN = "walk-auth-token"
RING_S = 25
PRESSED_AT = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)  # 08:00 WIB
# What each kind of event is about, for a one-line summary.
SHOWN = ("unit_id", "recipient", "channels", "round", "seq", "reason", "action", "state", "readmitted")
SHOWN += ("already_paged", "notifications", "shortfall")


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Row:
    second: int
    kind: str
    data: dict[str, Any]

    def __str__(self) -> str:
        facts = " ".join(f"{key}={self.data[key]}" for key in SHOWN if self.data.get(key) not in (None, [], ""))
        return f"{self.second:>4} s  {self.kind:<22} {facts}"


@dataclass(frozen=True)
class Walk:
    rows: list[Row]
    incident_state: str
    device_states: list[str]


def walk(database_url: str, data_dir: Path, *, seconds: int = 420, **escalation: Any) -> Walk:
    """Press BTN-0001, let nobody answer for ``seconds``, return what was recorded and published."""
    settings = load_settings(
        environ={},
        overrides={"data_dir": str(data_dir), "database": {"url": database_url}, "escalation": escalation},
    )
    engine = make_engine(database_url)
    database.upgrade(engine)
    sessions = make_session_factory(engine)
    with transaction(sessions) as session:
        apply_roster(session, load_roster(ROSTER))
    clock = Clock(PRESSED_AT)
    published: list[tuple[str, bytes]] = []
    escalation_engine = EscalationEngine(
        sessions, settings, lambda topic, payload: published.append((topic, payload)), lambda: BASE, clock=clock
    )
    client = webhooks(settings, engine, sessions, clock, escalation_engine).test_client()
    with transaction(sessions) as session:
        incident = pressed(session, "walk-1", PRESSED_AT)
        escalation_engine.start(session, incident, PRESSED_AT)
        incident_id = incident.id

    ringing: dict[str, datetime] = {}  # call SID -> when it rings out
    for second in range(seconds + 1):
        clock.now = PRESSED_AT + timedelta(seconds=second)
        for sid, until in sorted(ringing.items()):
            if until <= clock.now:
                del ringing[sid]
                _call_status(client, sid, "no-answer")
        escalation_engine.run_due_steps()
        ringing.update(_twilio_takes_everything(sessions, clock.now))

    with sessions() as session:
        events = session.execute(
            select(TimelineEvent).where(TimelineEvent.incident_id == incident_id).order_by(TimelineEvent.id)
        ).scalars()
        rows = [
            Row(round((e.at - PRESSED_AT).total_seconds()), e.kind, {**e.data, "unit_id": e.unit_id}) for e in events
        ]
        state = session.get_one(Incident, incident_id).state
    engine.dispose()
    device_states = [payload.decode().split('"state":"')[1].split('"')[0] for _, payload in published]
    return Walk(rows, state, device_states)


def pressed(session: Session, press_id: str, at: datetime) -> Incident:
    """The incident of a press of BTN-0001 at its registered place, as intake opens it."""
    device = session.get_one(Device, "BTN-0001")
    incident = Incident(
        source="press",
        device_id=device.id,
        press_id=press_id,
        service=device.service,
        services=[device.service],
        lat=device.lat,
        lon=device.lon,
        location_source="device_registered",
        state="received",
        opened_at=at,
    )
    session.add(incident)
    session.flush()
    return incident


def webhooks(
    settings: Settings,
    engine: Any,
    sessions: Any,
    clock: Callable[[], datetime],
    escalation: EscalationEngine,
    wake: Callable[[], None] = lambda: None,
) -> Any:
    """The service's web app on the real engine, signed with TOKEN, reachable as BASE."""
    geocoder = make_geocoder("gazetteer", gazetteer_path=str(settings.geocoding.gazetteer_path), nominatim_domain=None)
    context = WebContext(
        settings=settings,
        engine=engine,
        sessions=sessions,
        metrics=Metrics(),
        mqtt_connected=lambda: True,
        public_base=lambda: BASE,
        twilio_auth_token=TOKEN,
        signing_key=settings.signing_key(),
        clock=clock,
        publish=lambda topic, payload: None,
        wake=wake,
        calls=CallDesk(settings, geocoder, escalation.start),
        stopping=threading.Event(),
    )
    return create_app(context)


def _twilio_takes_everything(sessions: Any, now: datetime) -> dict[str, datetime]:
    """The outbox's hand-off, with Twilio accepting every message and call; calls start ringing."""
    ringing = {}
    with transaction(sessions) as session:
        for row in session.execute(select(Notification).where(Notification.state == "pending")).scalars():
            sid = f"{'CA' if row.channel == 'voice' else 'SM'}{row.id:032d}"
            session.execute(
                update(Notification)
                .where(Notification.id == row.id)
                .values(state="queued", provider_sid=sid, sent_at=now, attempts=1, updated_at=now)
            )
            if row.channel == "voice":
                ringing[sid] = now + timedelta(seconds=RING_S)
    return ringing


def _call_status(client: FlaskClient, sid: str, status: str) -> None:
    form = {"CallSid": sid, "CallStatus": status, "AccountSid": "AC" + "0" * 32}
    signature = RequestValidator(TOKEN).compute_signature(f"{BASE}/twilio/voice/status", form)
    answer = client.post("/twilio/voice/status", data=form, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 204, answer.status_code


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = walk(f"sqlite:///{tmp}/walk.sqlite3", Path(tmp))
    for row in result.rows:
        print(row)
    print(f"incident state: {result.incident_state}; device saw: {' -> '.join(result.device_states)}")


if __name__ == "__main__":
    main()
