"""The auditor flags pages that should be happening but are not, once each."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from dispatch.auditor import audit
from dispatch.escalation import schedule
from dispatch.escalation_policy import StepRef
from dispatch.models import Assignment, Incident
from foundation.clock import utcnow
from foundation.db import transaction
from tests.responder_helpers import kinds


def open_incident(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with transaction(sessions) as session:
        incident = Incident(source="press", device_id="BTN-0001", press_id="p", service="police", lat=-7.75, lon=113.2)
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


def test_a_step_overdue_by_more_than_the_limit_is_flagged_once(sessions: sessionmaker[Session]) -> None:
    incident_id, assignment_id = open_incident(sessions)
    now = utcnow()
    with transaction(sessions) as session:
        assignment = session.get_one(Assignment, assignment_id)
        schedule(session, assignment, StepRef(0, 0), "notify_unit", now - timedelta(seconds=5))
    with transaction(sessions) as session:
        assert audit(session, now, overdue_after_s=10) == []  # 5 s late: within the limit
    with transaction(sessions) as session:
        [finding] = audit(session, now + timedelta(seconds=10), overdue_after_s=10)
    assert "overdue by 15s" in finding
    assert kinds(sessions, incident_id) == ["audit_step_overdue"]
