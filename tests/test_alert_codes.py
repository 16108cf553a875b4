"""Alert codes: short, per phone, reused once free, and never 86 (police slang for "understood")."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dispatch.alerts import alert_code, release_codes
from dispatch.models import Assignment, Incident
from foundation.db import transaction

PHONE = "+628110000101"


def new_assignment(session: Session, n: int) -> Assignment:
    incident = Incident(source="press", device_id="BTN-0001", press_id=f"p{n}", service="police")
    session.add(incident)
    session.flush()
    assignment = Assignment(incident_id=incident.id, service="police", excluded={})
    session.add(assignment)
    session.flush()
    return assignment


def test_codes_count_up_from_one_per_phone_and_skip_86(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        assignments = [new_assignment(session, n) for n in range(88)]
        codes = [alert_code(session, PHONE, a) for a in assignments]
        other_phone = alert_code(session, "+628110000102", assignments[0])
    assert codes == [*range(1, 86), 87, 88, 89]
    assert other_phone == 1


def test_a_code_is_stable_for_its_alert_and_free_again_once_released(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        first, second, third = (new_assignment(session, n) for n in range(3))
        assert [alert_code(session, PHONE, a) for a in (first, second, first)] == [1, 2, 1]
        release_codes(session, first.id)
        session.flush()
        assert alert_code(session, PHONE, third) == 1


def test_two_workers_choosing_for_one_phone_at_once_get_different_codes_and_neither_rolls_back(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("concurrent writers: SQLite lets one writer at a time")
    with transaction(sessions) as session:
        first_id, second_id = (new_assignment(session, n).id for n in range(2))
    chosen = threading.Event()

    def first_worker() -> None:
        with transaction(sessions) as session:
            assert alert_code(session, PHONE, session.get_one(Assignment, first_id)) == 1
            chosen.set()
            time.sleep(0.5)  # not committed yet: the second worker cannot see code 1 taken

    worker = threading.Thread(target=first_worker)
    worker.start()
    assert chosen.wait(5)
    with transaction(sessions) as session:
        # Picks 1 too, waits on the unique index until the first commits, then picks again.
        assert alert_code(session, PHONE, session.get_one(Assignment, second_id)) == 2
    worker.join()
