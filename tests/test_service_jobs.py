"""The steps and outbox jobs: woken by commits, they run again by themselves while work comes.

APScheduler counts a run until its function returns, so a run asked for from inside it is
skipped (with a WARNING) and waits for the next interval tick. These specify the rerun loop
of ``DispatchService._run_job`` that replaced that, on a started service with its real
scheduler, and what an operator's log shows under load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import event

from devices.simulator import SimulatedDevice
from dispatch.service import DispatchService
from foundation.clock import utcnow
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, fast_escalation, sandbox

Start = Callable[..., DispatchService]


def test_a_wake_that_comes_while_a_job_runs_is_served_by_the_same_run(start_service: Start) -> None:
    service = start_service()
    passes: list[int] = []

    def once() -> bool:
        passes.append(len(passes))
        if len(passes) == 1:
            service._wake_at("probe", utcnow())  # a commit elsewhere wrote work for this job
        return False

    service._run_job("probe", once, lambda: None, "probe failed")
    assert passes == [0, 1]


def test_a_job_keeps_going_while_its_passes_do_work_and_work_is_still_due(start_service: Start) -> None:
    service = start_service()
    backlog = [3]

    def once() -> bool:
        backlog[0] -= 1
        return True

    def next_due() -> object:
        return utcnow() - timedelta(seconds=1) if backlog[0] > 0 else None

    service._run_job("probe", once, next_due, "probe failed")  # type: ignore[arg-type]
    assert backlog == [0]


def test_a_pass_that_did_nothing_is_not_repeated_at_once_even_with_work_due(start_service: Start) -> None:
    # A step whose incident someone holds stays due; the interval tick tries it again,
    # so it cannot spin the job against the database.
    service = start_service()
    passes: list[int] = []

    def once() -> bool:
        passes.append(1)
        return False

    service._run_job("probe", once, lambda: utcnow() - timedelta(seconds=5), "probe failed")
    assert passes == [1]


def test_a_pass_that_raises_is_logged_and_the_job_ends_until_its_next_tick(
    start_service: Start, caplog: pytest.LogCaptureFixture
) -> None:
    service = start_service()
    passes: list[int] = []

    def once() -> bool:
        passes.append(1)
        raise RuntimeError("database said no")

    with caplog.at_level(logging.ERROR, logger="dispatch.service"):
        service._run_job("probe", once, lambda: utcnow() - timedelta(seconds=5), "probe failed")
    assert passes == [1]
    assert "probe failed" in caplog.text
    assert "probe" not in service._running


def test_a_burst_of_presses_is_paged_without_a_scheduler_warning_each_second(
    start_service: Start, roster: None, broker_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Under load the jobs run back to back and the interval tick always finds them running:
    # that is their normal work, not something for the operator's WARNING log.
    service = start_service(escalation=fast_escalation())
    store = sandbox(service)
    with caplog.at_level(logging.WARNING), SimulatedDevice(broker_url, "BTN-0001", listen=False) as button:
        for _ in range(40):
            button.press()
        eventually(lambda: len([m for m in store.messages if m.to == UNIT_PHONES["POL-01"]]) >= 40, timeout=60)
    skipped = [r.getMessage() for r in caplog.records if "maximum number of running instances" in r.getMessage()]
    assert skipped == []


def test_a_sender_pass_with_nothing_due_only_reads(start_service: Start) -> None:
    # Most passes below capacity are woken by commits that wrote nothing for the outbox; each
    # used to cost a claim (a write and a commit) per sender thread.
    service = start_service()
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        statements.append(" ".join(statement.split()[:2]).upper())  # the service's other jobs too

    event.listen(service.engine, "before_cursor_execute", seen)
    try:
        assert service.outbox.send_due() == []
    finally:
        event.remove(service.engine, "before_cursor_execute", seen)
    assert "UPDATE NOTIFICATIONS" not in statements  # a claim is an UPDATE ... RETURNING


def test_stopping_ends_a_job_that_keeps_being_woken_after_its_pass(start_service: Start) -> None:
    # Presses keep arriving while the service stops (the broker connection goes last), and each
    # wakes the jobs: a graceful stop must not wait for the traffic to end.
    service = start_service()
    passes: list[int] = []

    def once() -> bool:
        passes.append(1)
        if len(passes) == 2:
            service._jobs_stopping.set()  # what stop() does first
        service._wake_at("probe", utcnow())  # more work, every pass
        return True

    service._run_job("probe", once, lambda: None, "probe failed")
    assert passes == [1, 1]
