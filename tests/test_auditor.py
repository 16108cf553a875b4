"""The auditor flags pages that should be happening but are not, once each."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.auditor import Backlog, audit, backlog
from dispatch.escalation import schedule
from dispatch.escalation_policy import StepRef
from dispatch.models import Assignment, Incident
from foundation.clock import utcnow
from foundation.db import transaction
from tests.responder_helpers import kinds


def open_incident(sessions: sessionmaker[Session], press_id: str = "p") -> tuple[int, int]:
    with transaction(sessions) as session:
        incident = Incident(
            source="press", device_id="BTN-0001", press_id=press_id, service="police", lat=-7.75, lon=113.2
        )
        session.add(incident)
        session.flush()
        assignment = Assignment(incident_id=incident.id, service="police", excluded={})
        session.add(assignment)
        session.flush()
        return incident.id, assignment.id


def test_an_active_assignment_without_a_pending_step_is_flagged_once(sessions: sessionmaker[Session]) -> None:
    incident_id, _ = open_incident(sessions)
    for _ in range(2):
        with transaction(sessions) as session:
            findings = audit(session, utcnow(), overdue_after_s=10)
    assert findings == []  # second run: already flagged
    assert kinds(sessions, incident_id) == ["audit_no_pending_step"]


def test_a_step_the_engine_passed_by_is_flagged_once_as_stranded(sessions: sessionmaker[Session]) -> None:
    incident_id, assignment_id = open_incident(sessions)
    other_incident, other_assignment = open_incident(sessions, press_id="other")
    now = utcnow()
    with transaction(sessions) as session:
        assignment = session.get_one(Assignment, assignment_id)
        schedule(session, assignment, StepRef(0, 0), "notify_unit", now - timedelta(seconds=5))
        # A step due after it has already run: the engine went past this one.
        other = session.get_one(Assignment, other_assignment)
        later = schedule(session, other, StepRef(0, 0), "notify_unit", now)
        later.state, later.done_at, other.state = "done", now + timedelta(seconds=1), "accepted"
    with transaction(sessions) as session:
        assert audit(session, now, overdue_after_s=10) == []  # 5 s late: within the limit
    for _ in range(2):
        with transaction(sessions) as session:
            findings = audit(session, now + timedelta(seconds=10), overdue_after_s=10)
    assert findings == []  # the second pass: already flagged
    assert kinds(sessions, incident_id) == ["audit_step_overdue"]
    assert kinds(sessions, other_incident) == []


def test_late_steps_in_a_burst_are_one_backlog_not_a_finding_per_incident(sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    incidents = []
    with transaction(sessions) as session:
        for n in range(30):
            incident = Incident(source="press", device_id="BTN-0001", press_id=f"burst-{n}", service="police")
            session.add(incident)
            session.flush()
            assignment = Assignment(incident_id=incident.id, service="police", excluded={})
            session.add(assignment)
            session.flush()
            schedule(session, assignment, StepRef(0, 0), "notify_unit", now - timedelta(seconds=60 - n))
            incidents.append(incident.id)
    with transaction(sessions) as session:
        assert audit(session, now, overdue_after_s=10) == []  # nothing later has run: they wait their turn
        assert backlog(session, now) == Backlog(due=30, behind_s=60.0)
    assert all(kinds(sessions, incident_id) == [] for incident_id in incidents)


def test_an_engine_that_keeps_up_has_no_backlog(sessions: sessionmaker[Session]) -> None:
    _, assignment_id = open_incident(sessions)
    now = utcnow()
    with transaction(sessions) as session:
        schedule(session, session.get_one(Assignment, assignment_id), StepRef(0, 0), "notify_unit", now)
        assert backlog(session, now - timedelta(seconds=1)) == Backlog(due=0, behind_s=0.0)


def test_a_page_whose_final_report_never_came_is_closed_as_unconfirmed(
    sessions: sessionmaker[Session], roster: None
) -> None:
    from dispatch.auditor import close_unconfirmed
    from dispatch.models import Incident, Notification, TimelineEvent

    now = utcnow()
    with transaction(sessions) as session:
        incident = Incident(source="press", device_id="BTN-0001", press_id="lost-callback", state="dispatched")
        session.add(incident)
        session.flush()
        for key, state, sent_minutes_ago in (
            ("old", "ringing", 45),
            ("fresh", "ringing", 5),
            ("done", "completed", 45),
        ):
            session.add(
                Notification(
                    idempotency_key=key,
                    incident_id=incident.id,
                    recipient_kind="unit",
                    recipient_id="POL-01",
                    to_number="+628110000101",
                    channel="voice",
                    state=state,
                    sent_at=now - timedelta(minutes=sent_minutes_ago),
                )
            )
    with transaction(sessions) as session:
        assert close_unconfirmed(session, now, after_s=1800) == 1
    with sessions() as session:
        states = dict(session.execute(select(Notification.idempotency_key, Notification.state)).all())
        kinds = list(session.execute(select(TimelineEvent.kind)).scalars())
    assert states == {"old": "unconfirmed", "fresh": "ringing", "done": "completed"}
    assert kinds == ["notification_unconfirmed"]
