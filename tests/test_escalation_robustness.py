"""Nothing one incident does may stop the escalation of the others.

- Steps run in due order, so a step that raises on every try would be claimed first on every
  tick for ever. After ``POISON_AFTER`` failures in a row it is set aside and its incident is
  put before a dispatcher; a database that is down is never a reason to set a step aside.
- The engine never waits for a lock someone else holds on an incident (a dispatcher's action, a
  responder's reply): it runs the other due steps and comes back to that one, so the two can
  never deadlock (PostgreSQL would abort one of them, perhaps the responder's acceptance).
- Nor does a step wait long for what another worker's batch is writing (the same phone's next
  alert code): it gives way and runs on the next pass, and the rest of its batch goes on.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dispatch.escalation import POISON_AFTER, STEP_FAILED, EscalationEngine, schedule
from dispatch.escalation_policy import StepRef
from dispatch.models import Assignment, EscalationStep, Incident
from foundation.clock import utcnow
from foundation.db import transaction
from foundation.settings import load_settings
from tests.responder_helpers import UNIT_PHONES, kinds


def incident_with_step(
    sessions: sessionmaker[Session], press_id: str, late_s: float, service: str = "police", **where: float | None
) -> int:
    with transaction(sessions) as session:
        incident = Incident(source="press", device_id="BTN-0001", press_id=press_id, service=service, **where)
        session.add(incident)
        session.flush()
        assignment = Assignment(incident_id=incident.id, service=service, excluded={})
        session.add(assignment)
        session.flush()
        schedule(session, assignment, StepRef(0, 0), "notify_unit", utcnow() - timedelta(seconds=late_s))
        return incident.id


def step_state(sessions: sessionmaker[Session], incident_id: int) -> str:
    """The state of the incident's first step (the one the test scheduled)."""
    with sessions() as session:
        step = session.query(EscalationStep).filter_by(incident_id=incident_id).order_by(EscalationStep.id).first()
        assert step is not None
        return step.state


@pytest.fixture
def escalation(sessions: sessionmaker[Session], tmp_path: Path) -> EscalationEngine:
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path)})
    return EscalationEngine(sessions, settings, lambda topic, payload: None, lambda: "http://dispatch.test")


def test_a_step_that_keeps_failing_is_set_aside_and_the_steps_behind_it_run(
    sessions: sessionmaker[Session], escalation: EscalationEngine
) -> None:
    broken = incident_with_step(sessions, "no-location", late_s=2, lat=None, lon=None)  # the matcher needs a pin
    healthy = incident_with_step(sessions, "located", late_s=1, lat=-7.75, lon=113.2)
    escalation.run_due_steps()
    # Rolled back alone: the step due after it ran in the same pass, the broken one waits for the next.
    assert (step_state(sessions, broken), step_state(sessions, healthy)) == ("pending", "done")
    for _ in range(POISON_AFTER - 1):
        escalation.run_due_steps()

    assert (step_state(sessions, broken), step_state(sessions, healthy)) == ("failed", "done")
    with sessions() as session:
        incident = session.get_one(Incident, broken)
        assert (incident.needs_review, incident.review_reason) == (True, STEP_FAILED)
    assert "step_failed" in kinds(sessions, broken)


def test_a_database_outage_never_sets_a_step_aside(
    sessions: sessionmaker[Session], escalation: EscalationEngine
) -> None:
    incident_id = incident_with_step(sessions, "db-down", late_s=1, lat=-7.75, lon=113.2)
    with sessions() as session:
        step_id = session.query(EscalationStep.id).filter_by(incident_id=incident_id).scalar()
    outage = OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert not any(escalation._poisoned(step_id, outage) for _ in range(POISON_AFTER * 3))


def test_a_step_whose_incident_someone_is_changing_waits_for_the_next_pass_without_holding_up_others(
    sessions: sessionmaker[Session], escalation: EscalationEngine, engine: Engine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks: SQLite serialises every writer on its one write lock")
    held = incident_with_step(sessions, "being-changed", late_s=2, lat=-7.75, lon=113.2)
    other = incident_with_step(sessions, "free", late_s=1, lat=-7.75, lon=113.2)
    with engine.connect() as dispatcher:
        dispatcher.execute(text("SELECT id FROM incidents WHERE id = :id FOR UPDATE"), {"id": held})
        escalation.run_due_steps()  # returns at once: no waiting on the dispatcher's lock
        assert (step_state(sessions, held), step_state(sessions, other)) == ("pending", "done")
        dispatcher.rollback()
    escalation.run_due_steps()
    assert step_state(sessions, held) == "done"


def test_a_step_that_would_wait_on_another_workers_uncommitted_alert_code_gives_way_and_its_batch_goes_on(
    sessions: sessionmaker[Session], escalation: EscalationEngine, engine: Engine, roster: None
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks: SQLite serialises every writer on its one write lock")
    blocker = incident_with_step(sessions, "other-worker", late_s=-3600, lat=-7.75, lon=113.2)
    waits = incident_with_step(sessions, "same-phone", late_s=2, lat=-7.7543, lon=113.2159)  # POL-01 is nearest
    free = incident_with_step(sessions, "other-phone", late_s=1, service="ambulance", lat=-7.7543, lon=113.2159)
    with sessions() as session:
        other_assignment = session.query(Assignment.id).filter_by(incident_id=blocker).scalar()
    with engine.connect() as other_worker:  # its batch gave POL-01 code 1 and has not committed yet
        other_worker.execute(
            text(
                "INSERT INTO alert_codes (phone, code, assignment_id, incident_id, created_at)"
                " VALUES (:phone, 1, :assignment, :incident, now())"
            ),
            {"phone": UNIT_PHONES["POL-01"], "assignment": other_assignment, "incident": blocker},
        )
        escalation.run_due_steps()  # waits at most the lock timeout, then goes on
        assert (step_state(sessions, waits), step_state(sessions, free)) == ("pending", "done")
        other_worker.commit()
    escalation.run_due_steps()
    assert step_state(sessions, waits) == "done"
