"""The responder loop under failure: crashes, Twilio errors, and several workers at once.

These tests run ``dispatch serve`` as real processes where a crash or a second
worker matters, against a standalone Twilio-compatible server in the test
process that counts every request the real twilio SDK makes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.models import EscalationStep, Incident, Notification, TimelineEvent
from dispatch.service import DispatchService
from responders.sandbox import SandboxStore
from tests.conftest import count, eventually
from tests.fleet import TwilioServer, publish_presses
from tests.responder_helpers import (
    UNIT_PHONES,
    calls_to,
    fast_escalation,
    kinds,
    notifications,
    sandbox,
    texts_to,
)
from tests.service_process import ServiceProcess

Start = Callable[..., DispatchService]
POL01, POL02 = UNIT_PHONES["POL-01"], UNIT_PHONES["POL-02"]
ACCOUNT_SID = "AC" + "1" * 32


@pytest.mark.slow
def test_a_step_pending_during_a_sigkill_fires_exactly_once_after_restart(
    processes: Callable[..., tuple[list[ServiceProcess], TwilioServer]],
    roster: None,
    sessions: sessionmaker[Session],
    broker_url: str,
) -> None:
    policy = [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
        {"after_s": 3, "action": "notify_unit", "channels": ["voice"]},
    ]
    [worker], twilio = processes(1, fast_escalation(policy))
    publish_presses(broker_url, [("BTN-0001", "sigkill-1")])
    eventually(lambda: texts_to(twilio.store, POL01), timeout=15)
    worker.kill()
    with sessions() as session:
        [pending] = session.execute(select(EscalationStep).where(EscalationStep.state == "pending")).scalars()
    assert pending.action == "notify_unit"
    time.sleep(4)  # the voice step comes due while nothing runs

    worker.start().wait_for_line("mqtt subscribed")
    eventually(lambda: calls_to(twilio.store, POL01), timeout=15)
    time.sleep(2)
    assert len(calls_to(twilio.store, POL01)) == 1
    assert len(texts_to(twilio.store, POL01)) == 1
    [incident_id] = [i.id for i in _incidents(sessions)]
    assert kinds(sessions, incident_id).count("step_notify_unit") == 2


def test_twilio_failing_three_times_with_500_still_sends_the_sms_once(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation([{"after_s": 0, "action": "notify_unit"}]), twilio={"retry_backoff_s": 0.1}
    )
    store = sandbox(service)
    store.fail_next(3, 500)
    publish_presses(broker_url, [("BTN-0001", "flaky-1")])
    eventually(lambda: texts_to(store, POL01), timeout=15)
    time.sleep(1)
    assert len(texts_to(store, POL01)) == 1
    posts = [r for r in store.requests if r.path.endswith("/Messages.json") and r.method == "POST"]
    assert [r.response_status for r in posts] == [500, 500, 500, 201]
    [row] = notifications(sessions)
    assert (row.attempts, row.provider_sid is not None) == (4, True)


def impatient_service(start_service: Start, channel: str) -> SandboxStore:
    """A service that pages on ``channel`` at once and gives Twilio 0.5 s to answer."""
    service = start_service(
        escalation=fast_escalation([{"after_s": 0, "action": "notify_unit", "channels": [channel]}]),
        twilio={"timeout_s": 0.5, "retry_backoff_s": 0.1},
    )
    return sandbox(service)


def wait_until_sent(sessions: sessionmaker[Session]) -> None:
    eventually(lambda: [n for n in notifications(sessions) if n.provider_sid], timeout=15)
    time.sleep(1)  # room for a wrong second send to show up


def test_an_sms_that_reached_twilio_but_timed_out_is_found_not_sent_again(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    store = impatient_service(start_service, "sms")
    store.stall_next(1, 1.5)  # Twilio creates the message, but answers after our timeout
    publish_presses(broker_url, [("BTN-0001", "slow-1")])
    wait_until_sent(sessions)
    [text] = store.messages
    [row] = notifications(sessions)
    assert (row.attempts, row.provider_sid, row.outcome_unknown) == (2, text.sid, False)
    posts = [r for r in store.requests if r.path.endswith("/Messages.json") and r.method == "POST"]
    lookups = [r for r in store.requests if r.path.endswith("/Messages.json") and r.method == "GET"]
    assert (len(posts), len(lookups)) == (1, 1)
    with sessions() as session:
        sent = session.execute(select(TimelineEvent).where(TimelineEvent.kind == "sms_queued")).scalar_one()
    assert sent.data["sid"] == text.sid and sent.data["found_after_lookups"] == 1


def test_a_call_that_reached_twilio_but_timed_out_is_found_not_placed_again(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    store = impatient_service(start_service, "voice")
    store.stall_next(1, 1.5)
    publish_presses(broker_url, [("BTN-0001", "slow-call-1")])
    wait_until_sent(sessions)
    [call] = calls_to(store, POL01)
    [row] = notifications(sessions)
    assert (row.channel, row.attempts, row.provider_sid) == ("voice", 2, call.sid)


def test_an_sms_that_timed_out_before_twilio_created_it_is_sent_after_the_lookup(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    store = impatient_service(start_service, "sms")
    # The first answer is a 500 that arrives late: nothing was created, but we cannot know that.
    store.fail_next(1, 500)
    store.stall_next(1, 1.5)
    publish_presses(broker_url, [("BTN-0001", "slow-fail-1")])
    wait_until_sent(sessions)
    assert len(texts_to(store, POL01)) == 1
    requests_made = [r for r in store.requests if r.path.endswith("/Messages.json")]
    methods = [r.method for r in requests_made]
    # A slow provider may still be creating it: it is looked for (again and again) across the doubt
    # window, 3 x the 0.5 s timeout from the doubtful request, before the one resend.
    assert methods[0] == "POST" and methods[-1] == "POST" and methods.count("POST") == 2
    assert methods.count("GET") >= 1
    waited = (requests_made[-1].received_at - requests_made[0].received_at).total_seconds()
    assert waited >= 1.5
    [row] = notifications(sessions)
    assert row.attempts == 1 + methods.count("GET")
    with sessions() as session:
        decision = session.execute(
            select(TimelineEvent).where(TimelineEvent.kind == "notification_resent_after_lookup")
        ).scalar_one()
    assert decision.data["lookups"] == methods.count("GET") and decision.data["looked_for_s"] >= 1.5


def test_the_doubt_window_runs_from_the_request_even_when_the_claim_waited_for_the_database(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    # On SQLite a claim reads the clock, then may wait its turn for the write lock behind a
    # burst's writers, so the row's claimed_at can lie well before the request. Here the first
    # claim waits 1 s. The lookups must still span 3 x the 0.5 s timeout after the request.
    service = start_service(
        escalation=fast_escalation([{"after_s": 0, "action": "notify_unit", "channels": ["sms"]}]),
        twilio={"timeout_s": 0.5, "retry_backoff_s": 0.1, "concurrency": 1},
    )
    outbox, claim = service.outbox, service.outbox._claim
    waited: list[bool] = []

    def claim_after_a_wait() -> Any:
        if waited:
            return claim()
        real = outbox._clock

        def read_then_wait() -> datetime:
            now = real()
            time.sleep(1)
            return now

        outbox._clock = read_then_wait
        try:
            row = claim()
        finally:
            outbox._clock = real
        if row is not None:
            waited.append(True)
        return row

    outbox._claim = claim_after_a_wait  # type: ignore[method-assign]
    store = sandbox(service)
    store.fail_next(1, 500)
    store.stall_next(1, 1.5)
    publish_presses(broker_url, [("BTN-0001", "waited-claim-1")])
    wait_until_sent(sessions)
    posts = [r for r in store.requests if r.path.endswith("/Messages.json") and r.method == "POST"]
    assert len(posts) == 2
    assert (posts[1].received_at - posts[0].received_at).total_seconds() >= 1.5


def test_a_permanent_twilio_error_moves_the_escalation_on_at_once(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(
        escalation=fast_escalation(
            [
                {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
                {"after_s": 60, "action": "next_unit", "channels": ["sms"]},
            ]
        )
    )
    store = sandbox(service)
    store.reject_numbers[POL01] = 21211  # invalid number
    publish_presses(broker_url, [("BTN-0001", "badnumber-1")])
    eventually(lambda: texts_to(store, POL02), timeout=10)  # not 60 s later
    first = notifications(sessions)[0]
    assert (first.recipient_id, first.state, first.error_code) == ("POL-01", "failed", 21211)
    assert first.attempts == 1  # permanent: never retried


@pytest.mark.slow
def test_two_workers_and_200_incidents_send_every_notification_exactly_once(
    processes: Callable[..., tuple[list[ServiceProcess], TwilioServer]],
    roster: None,
    sessions: sessionmaker[Session],
    broker_url: str,
) -> None:
    policy = [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
        {"after_s": 1, "action": "supervisor", "channels": ["sms"]},
    ]
    workers, twilio = processes(2, fast_escalation(policy))
    devices = [f"BTN-{n:04d}" for n in range(1, 13)]
    # No shared subscription: both workers receive every press, the worst case for duplicates.
    publish_presses(broker_url, [(devices[i % 12], f"load-{i}") for i in range(200)])

    def sent() -> list[Any]:
        return [m for m in twilio.store.messages if m.direction == "outbound-api"]

    eventually(lambda: len(sent()) >= 400, timeout=240, interval=0.5)
    time.sleep(3)  # anything sent twice would show up now
    messages = sent()
    assert count(sessions, Incident) == 200
    assert len(messages) == 400
    with sessions() as session:
        rows = session.execute(select(Notification)).scalars().all()
    assert len(rows) == 400
    assert sorted(m.sid for m in messages) == sorted(r.provider_sid or "" for r in rows)
    assert len({m.body for m in messages}) == 400  # every body carries its own link token
    assert all(w.count_lines("sms ") > 0 for w in workers), "both workers should have sent some"


def _incidents(sessions: sessionmaker[Session]) -> list[Incident]:
    with sessions() as session:
        return list(session.execute(select(Incident)).scalars())


def _abandoned_row(service: DispatchService, sessions: sessionmaker[Session], body: str) -> Notification:
    """A row as a sender that died mid-request leaves it: ``sending``, claimed 5 minutes ago."""
    from datetime import timedelta

    from foundation.clock import utcnow
    from foundation.db import transaction

    publish_presses(service.settings.mqtt.url or "", [("BTN-0001", f"interrupted-{body}")])
    eventually(lambda: texts_to(sandbox(service), POL01))
    with transaction(sessions) as session:
        sent = session.execute(select(Notification)).scalar_one()
        ghost = Notification(
            idempotency_key=f"crashed-mid-send-{body}",
            incident_id=sent.incident_id,
            assignment_id=sent.assignment_id,
            recipient_kind="unit",
            recipient_id="POL-02",
            to_number=POL02,
            channel="sms",
            body=body,
            state="sending",
            attempts=1,
            claimed_at=utcnow() - timedelta(minutes=5),
            claimed_by="a-dead-worker",
        )
        session.add(ghost)
    return ghost


def test_a_send_interrupted_by_a_crash_that_reached_twilio_is_found_not_resent(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    from foundation.clock import utcnow
    from responders.sandbox.store import SandboxMessage, new_sid

    service = start_service(escalation=fast_escalation([{"after_s": 0, "action": "notify_unit"}]))
    ghost = _abandoned_row(service, sessions, "reached twilio")
    store = sandbox(service)
    now = utcnow()
    twin = SandboxMessage(
        new_sid("SM"),
        "AC" + "0" * 32,
        POL02,
        service.settings.twilio.from_number,
        ghost.body,
        "outbound-api",
        "sent",
        now,
        now,
    )
    store.add_message(twin)  # the dead sender's request had created it

    service.audit()  # the lease has run out: in doubt, looked up before anything else
    row = eventually(lambda: [n for n in notifications(sessions) if n.id == ghost.id and n.provider_sid])[0]
    assert (row.state, row.provider_sid) == ("queued", twin.sid)
    time.sleep(1)
    assert texts_to(store, POL02) == [ghost.body]  # the one the dead sender sent, nothing more
    assert [r.method for r in store.requests if r.path.endswith("/Messages.json")].count("POST") == 1
    assert {"notification_in_doubt", "sms_queued"} <= set(kinds(sessions, ghost.incident_id))


def test_a_send_interrupted_by_a_crash_that_never_reached_twilio_is_sent_once_after_the_lookups(
    start_service: Start, roster: None, sessions: sessionmaker[Session]
) -> None:
    service = start_service(escalation=fast_escalation([{"after_s": 0, "action": "notify_unit"}]))
    ghost = _abandoned_row(service, sessions, "never arrived")
    store = sandbox(service)

    service.audit()
    eventually(lambda: texts_to(store, POL02))
    time.sleep(1.5)  # room for a wrong second send
    assert texts_to(store, POL02) == [ghost.body]
    incident_kinds = kinds(sessions, ghost.incident_id)
    assert "notification_in_doubt" in incident_kinds and "notification_resent_after_lookup" in incident_kinds
