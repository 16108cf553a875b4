"""Delivery reports: one guarded UPDATE each, never backwards, and the engine woken only when a step moved.

The real engine, database and Twilio status webhooks (signed like Twilio's) run; the clock is fixed.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, select, update
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from dispatch.delivery import apply_report
from dispatch.escalation import EscalationEngine
from dispatch.models import EscalationStep, Notification, TimelineEvent
from foundation.db import transaction
from foundation.settings import Settings, load_settings
from tests.escalation_walk import BASE, TOKEN, pressed, webhooks

NOW = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


class Desk:
    """A pressed button whose first step ran, Twilio holding its SMS and call, and its webhooks."""

    def __init__(self, settings: Settings, engine: Engine, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.wakes = 0
        escalation = EscalationEngine(sessions, settings, lambda _t, _p: None, lambda: BASE, clock=lambda: NOW)
        app = webhooks(settings, engine, sessions, lambda: NOW, escalation, wake=self._woken)
        self.client: FlaskClient = app.test_client()
        with transaction(sessions) as session:
            incident = pressed(session, "reports-1", NOW)
            escalation.start(session, incident, NOW)
            self.incident_id = incident.id
        escalation.run_due_steps()
        with transaction(sessions) as session:  # the outbox's hand-off: Twilio took both
            for row in session.execute(select(Notification).where(Notification.state == "pending")).scalars():
                row.state, row.provider, row.provider_sid = "queued", "twilio", f"SID{row.channel}{row.id}"

    def _woken(self) -> None:
        self.wakes += 1

    def sid(self, channel: str) -> str:
        with self.sessions() as session:
            return session.execute(
                select(Notification.provider_sid).where(Notification.channel == channel)
            ).scalar_one()  # type: ignore[return-value]

    def report(self, channel: str, status: str, **extra: str) -> None:
        path, field, sid_field = (
            ("/twilio/voice/status", "CallStatus", "CallSid")
            if channel == "voice"
            else ("/twilio/sms/status", "MessageStatus", "MessageSid")
        )
        form = {sid_field: self.sid(channel), field: status, "AccountSid": "AC" + "0" * 32, **extra}
        signature = RequestValidator(TOKEN).compute_signature(f"{BASE}{path}", form)
        answer = self.client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 204, answer.status_code

    def row(self, channel: str) -> Notification:
        with self.sessions() as session:
            return session.execute(select(Notification).where(Notification.channel == channel)).scalar_one()

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            return [
                e.data
                for e in session.execute(
                    select(TimelineEvent).where(TimelineEvent.kind == kind).order_by(TimelineEvent.id)
                ).scalars()
            ]


@pytest.fixture
def desk(database_url: str, engine: Engine, sessions: sessionmaker[Session], roster: None, tmp_path: Path) -> Desk:
    # The first step texts and calls the nearest unit; the next one is due a minute later.
    policy = [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]},
        {"after_s": 60, "action": "next_unit", "channels": ["sms", "voice"]},
    ]
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": str(tmp_path),
            "database": {"url": database_url},
            "escalation": {"policies": {"police": policy}, "repeat": 0},
        },
    )
    return Desk(settings, engine, sessions)


def test_sent_then_delivered_records_each_step_with_the_state_it_left_and_wakes_nobody(desk: Desk) -> None:
    desk.report("sms", "sent")
    desk.report("sms", "delivered")
    row = desk.row("sms")
    assert (row.state, row.reported_from) == ("delivered", "sent")
    assert [e["previous"] for e in desk.events("sms_sent")] == ["queued"]
    assert [e["previous"] for e in desk.events("sms_delivered")] == ["sent"]
    assert desk.wakes == 0  # no timer changed: the engine is left to its schedule


def test_a_late_or_repeated_report_changes_nothing(desk: Desk) -> None:
    desk.report("sms", "delivered")
    desk.report("sms", "sent")  # overtaken by "delivered"
    desk.report("sms", "delivered")  # Twilio repeating itself
    assert desk.row("sms").state == "delivered"
    assert len(desk.events("sms_delivered")) == 1 and desk.events("sms_sent") == []


def test_a_call_nobody_answers_brings_the_next_step_forward_and_wakes_the_engine(desk: Desk) -> None:
    desk.report("voice", "ringing")
    assert desk.wakes == 0
    desk.report("voice", "no-answer")
    assert desk.row("voice").state == "no-answer"
    [forward] = desk.events("step_brought_forward")
    assert forward["reason"] == "no-answer"
    with desk.sessions() as session:
        pending = session.execute(select(EscalationStep).where(EscalationStep.state == "pending")).scalar_one()
        assert pending.due_at == NOW
    assert desk.wakes == 1


def test_a_text_refused_for_good_while_the_steps_call_rings_is_recorded_and_moves_nothing(desk: Desk) -> None:
    desk.report("sms", "undelivered", ErrorCode="21614")  # a landline; the call may still be answered
    row = desk.row("sms")
    assert (row.state, row.error_code) == ("undelivered", 21614)
    assert [e["error_code"] for e in desk.events("sms_undelivered")] == [21614]
    assert desk.events("step_brought_forward") == []
    assert desk.wakes == 0


def test_a_text_refused_for_good_after_the_steps_call_ended_brings_the_next_step_forward(desk: Desk) -> None:
    desk.report("voice", "completed")  # answered, no key pressed: the policy's timing stands
    assert desk.wakes == 0
    desk.report("sms", "undelivered", ErrorCode="21614")
    assert [e["reason"] for e in desk.events("step_brought_forward")] == ["permanent_sms_failure"]
    assert desk.wakes == 1


def test_a_report_for_no_known_row_says_so_and_writes_nothing(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        reported = apply_report(
            session, Notification.provider_sid == "SM-nobody", "delivered", NOW, actor="twilio", permanent=False
        )
    assert (reported.state, reported.change) == (None, None)
    with sessions() as session:
        assert session.execute(select(TimelineEvent)).first() is None


def test_two_reports_racing_for_one_row_end_in_the_higher_state_on_postgresql(desk: Desk, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers: SQLite lets one writer at a time")
    sid = desk.sid("sms")
    held = threading.Event()

    def delivered_first() -> None:
        with transaction(desk.sessions) as session:
            apply_report(session, Notification.provider_sid == sid, "delivered", NOW, actor="twilio", permanent=False)
            held.set()
            time.sleep(0.5)  # holds the row: "sent" waits, then finds it delivered

    worker = threading.Thread(target=delivered_first)
    worker.start()
    assert held.wait(5)
    with transaction(desk.sessions) as session:
        late = apply_report(
            session,
            Notification.provider_sid == sid,
            "sent",
            NOW + timedelta(seconds=1),
            actor="twilio",
            permanent=False,
        )
    worker.join()
    assert (late.state, late.change) == ("delivered", None)
    assert (desk.row("sms").state, desk.row("sms").reported_from) == ("delivered", "queued")
    assert desk.events("sms_sent") == []


def test_a_report_that_overtakes_its_senders_commit_is_applied_not_dropped(desk: Desk, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a commit between two statements of one transaction: SQLite's writer holds its lock")
    sid = desk.sid("voice")
    with transaction(desk.sessions) as session:  # as before the sender committed what Twilio answered
        session.execute(update(Notification).where(Notification.provider_sid == sid).values(provider_sid=None))
    sender_commits = threading.Event()

    def sender(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Right after the report's first UPDATE (which matched nothing): the sender commits the SID.
        if statement.startswith("UPDATE notifications") and not sender_commits.is_set():
            sender_commits.set()
            with engine.connect() as other:
                other.execute(update(Notification).where(Notification.channel == "voice").values(provider_sid=sid))
                other.commit()

    event.listen(engine, "after_cursor_execute", sender)
    try:
        with transaction(desk.sessions) as session:
            reported = apply_report(
                session, Notification.provider_sid == sid, "busy", NOW, actor="twilio", permanent=False
            )
    finally:
        event.remove(engine, "after_cursor_execute", sender)
    assert sender_commits.is_set()
    assert (reported.state, reported.steps_moved) == ("busy", 1)
    assert desk.row("voice").state == "busy"
