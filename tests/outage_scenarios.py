"""The outage scenarios of the outbox and the gateway, sized by the caller.

tests/test_outbox_faults.py runs each once, short; tests/soak/ runs them long and often
(30 s outages, 5 SIGKILLs, 20 database outages). Each returns nothing and asserts the
same promise: every page sent exactly once, none lost, none doubled.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.models import Incident, Notification, TimelineEvent
from responders.sandbox.sms_gateway import GatewayStore, run_standalone
from responders.sandbox.store import SandboxStore
from tests.conftest import count, eventually
from tests.fleet import TwilioServer, publish_presses
from tests.responder_helpers import fast_escalation
from tests.service_process import ServiceProcess

Processes = Callable[..., tuple[list[ServiceProcess], TwilioServer]]

TIMEOUT_S = 2.0  # the services' Twilio request timeout in these scenarios
# First SMS at once, a call 3 s later if nobody accepted; nobody does, so both always go out.
SMS_THEN_CALL = [
    {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
    {"after_s": 3, "action": "notify_unit", "channels": ["voice"]},
]
SMS_ONLY = [{"after_s": 0, "action": "notify_unit", "channels": ["sms"]}]
DEVICES = [f"BTN-{n:04d}" for n in range(1, 13)]


def schedule_outage(store: SandboxStore, kind: str, seconds: float) -> None:
    """The five kinds of Twilio outage seen in the field (issue: "No page lost")."""
    hang_s = TIMEOUT_S * 3  # longer than the client waits
    if kind == "500":
        store.outage("error", seconds, status=500)
    elif kind == "429":
        store.outage("error", seconds, status=429, retry_after_s=1)
    elif kind == "hang":
        store.outage("hang", seconds, hang_s=hang_s)
    elif kind == "slow":  # created, but answered after the client gave up
        store.outage("slow", seconds, hang_s=TIMEOUT_S * 1.5)
    elif kind == "hang-then-500":
        store.outage("hang", seconds / 2, hang_s=hang_s)
        store.outage("error", seconds / 2, status=500)
    else:
        raise ValueError(kind)


def sent_by_twilio(store: SandboxStore) -> tuple[list[Any], list[Any]]:
    """(SMS, calls) the Twilio server created on our request."""
    return [m for m in store.messages if m.direction == "outbound-api"], list(store.calls)


def assert_each_page_once(sessions: sessionmaker[Session], store: SandboxStore) -> None:
    """Every notification row went out exactly once, and Twilio holds nothing else."""
    with sessions() as session:
        rows = session.execute(select(Notification)).scalars().all()
    messages, calls = sent_by_twilio(store)
    states = Counter(row.state for row in rows)
    assert all(row.provider_sid for row in rows), f"not sent: {states}"
    bodies = Counter(m.body for m in messages)
    twice = [body[:40] for body, n in bodies.items() if n > 1]
    assert not twice, f"{len(twice)} SMS sent twice, e.g. {twice[:3]}"
    owned = {r.provider_sid for r in rows}
    stray = [m.sid for m in [*messages, *calls] if m.sid not in owned]
    assert not stray, f"{len(stray)} created at Twilio but owned by no row"
    assert sorted(r.provider_sid or "" for r in rows if r.channel == "sms") == sorted(m.sid for m in messages)
    assert sorted(r.provider_sid or "" for r in rows if r.channel == "voice") == sorted(c.sid for c in calls)


def twilio_outage(
    processes: Processes, sessions: sessionmaker[Session], broker_url: str, kind: str, seconds: float
) -> None:
    """Presses arrive during an outage of ``kind``: every SMS and call goes out once, soon after it ends."""
    # After a recovery a page waits at most: a request failing into it (the timeout), the longest
    # backoff, a tick: 2 + 2 + 1 = 5 s. Production's defaults (10 s, 4 s) make that 15 s.
    # Except a request that *hung* into it: it may have reached Twilio, so it is in doubt and
    # looked up, and resent only 3 request timeouts after it was made (Outbox._look_up: never
    # a second SMS for one Twilio created late). That request started before the recovery, so:
    # 3 x 2 s + a lookup interval (0.5 s) and the work itself (0.5 s) = 7 s; 31 s in production.
    settings = {"timeout_s": TIMEOUT_S, "retry_max_backoff_s": 2}
    [worker], twilio = processes(1, fast_escalation(SMS_THEN_CALL), twilio=settings)
    store = twilio.store
    schedule_outage(store, kind, seconds)
    recovered_at = store.outage_over_at()
    assert recovered_at is not None
    presses = 5
    for n in range(presses):
        publish_presses(broker_url, [(DEVICES[n], f"outage-{kind}-{n}")])
        time.sleep(seconds * 0.6 / presses)

    health = eventually(lambda: _health(worker).get("degraded"), timeout=seconds + 5)
    assert "Twilio sms" in health and "unreachable since" in health["Twilio sms"]

    def all_out() -> bool:
        messages, calls = sent_by_twilio(store)
        return len(messages) >= presses and len(calls) >= presses

    eventually(all_out, timeout=seconds + 40, interval=0.2)
    time.sleep(3)  # room for a wrong second send to show up
    assert count(sessions, Incident) == presses
    assert_each_page_once(sessions, store)
    messages, calls = sent_by_twilio(store)
    assert (len(messages), len(calls)) == (presses, presses)
    latest = max([m.created_at for m in messages] + [c.created_at for c in calls])
    posts = [r for r in store.requests if r.method == "POST"]
    # The figures for the record (pytest -rA shows them): how late after the recovery, how many tries.
    print(
        f"outage {kind} {seconds:.0f}s: {len(messages)} SMS + {len(calls)} calls, each once; "
        f"last created {(latest - recovered_at).total_seconds():+.1f}s after recovery; {len(posts)} POSTs"
    )
    if kind != "slow":  # a slow Twilio created them during the outage; others must be prompt after it
        bound_s = 3 * TIMEOUT_S + 1 if kind == "hang" else 5
        assert latest <= recovered_at + timedelta(seconds=bound_s), (latest, recovered_at)
    with sessions() as session:
        warned = session.execute(
            select(func.count(func.distinct(TimelineEvent.incident_id))).where(
                TimelineEvent.kind == "provider_unreachable"
            )
        ).scalar_one()
    assert warned >= 1  # the timeline says "Twilio unreachable since ..., retrying"
    eventually(lambda: _health(worker).get("status") == "ok", timeout=15)


def sigkill_mid_burst(
    processes: Processes, sessions: sessionmaker[Session], broker_url: str, presses: int, kills: int
) -> None:
    """SIGKILL while a slow Twilio has requests in flight: after restart every first alert, once."""
    [worker], twilio = processes(1, fast_escalation(SMS_ONLY), twilio={"timeout_s": TIMEOUT_S})
    store = twilio.store
    store.outage("slow", 3600, hang_s=0.3)  # every answer takes 300 ms: many requests in flight
    publish_presses(broker_url, [(DEVICES[n % len(DEVICES)], f"burst-{n}") for n in range(presses)])
    for kill in range(kills):
        eventually(lambda k=kill: len(sent_by_twilio(store)[0]) >= (k + 1) * presses // (kills + 2), timeout=120)
        worker.kill()
        time.sleep(2)
        worker.start().wait_for_line("mqtt subscribed")
    eventually(lambda: len(sent_by_twilio(store)[0]) >= presses, timeout=60 + presses, interval=0.5)
    time.sleep(3)
    with sessions() as session:
        doubted = session.execute(
            select(func.count()).select_from(TimelineEvent).where(TimelineEvent.kind == "notification_in_doubt")
        ).scalar_one()
    print(f"sigkill: {presses} presses, {kills} kill(s): {len(sent_by_twilio(store)[0])} first SMS, {doubted} in doubt")
    assert count(sessions, Incident) == presses
    assert_each_page_once(sessions, store)
    assert len(sent_by_twilio(store)[0]) == presses


def sigkill_mid_burst_through_the_gateway(
    processes: Processes, sessions: sessionmaker[Session], broker_url: str, presses: int
) -> None:
    """The same SIGKILL with the pages going through an SMS gateway that answers slowly.

    The gateway takes a client id (the outbox row's): a page in doubt after the restart is
    asked for by that id, and a resend with it would be refused (409), so none goes out twice.
    """
    store = GatewayStore(answer_delay_s=0.3)  # queued at once, answered 300 ms later: many in flight
    url, stop = run_standalone(store, "dispatch", "gateway-password", "gateway-signing-key")
    try:
        env = {
            "SMS_GATEWAY_URL": url,
            "SMS_GATEWAY_USERNAME": "dispatch",
            "SMS_GATEWAY_PASSWORD": "gateway-password",
            "SMS_GATEWAY_SIGNING_KEY": "gateway-signing-key",
        }
        [worker], twilio = processes(1, fast_escalation(SMS_ONLY), twilio={"timeout_s": TIMEOUT_S}, env=env)
        publish_presses(broker_url, [(DEVICES[n % len(DEVICES)], f"gw-burst-{n}") for n in range(presses)])
        eventually(lambda: len(_gateway_sent(store)) >= presses // 3, timeout=120)
        worker.kill()
        time.sleep(2)
        worker.start().wait_for_line("mqtt subscribed")
        eventually(lambda: len(_gateway_sent(store)) >= presses, timeout=60 + presses, interval=0.5)
        time.sleep(3)
        with sessions() as session:
            rows = session.execute(select(Notification).where(Notification.recipient_kind == "unit")).scalars().all()
            doubted = session.execute(
                select(func.count()).select_from(TimelineEvent).where(TimelineEvent.kind == "notification_in_doubt")
            ).scalar_one()
        sent = len(_gateway_sent(store))
        print(f"sigkill via the gateway: {presses} presses: {sent} SMS at the gateway, {doubted} in doubt")
        assert count(sessions, Incident) == presses
        assert len(rows) == presses and all(r.provider == "sms_gateway" and r.provider_sid for r in rows)
        assert sorted(r.provider_sid or "" for r in rows) == sorted(m.id for m in _gateway_sent(store))
        assert sent_by_twilio(twilio.store) == ([], [])  # nothing fell back to Twilio
    finally:
        stop()


def _gateway_sent(store: GatewayStore) -> list[Any]:
    return [m for m in store.messages if m.direction == "outbound"]


def database_outages(
    processes: Processes,
    sessions: sessionmaker[Session],
    broker_url: str,
    proxied_url: str,
    cut: Callable[[float], None],
    outages: int,
    seconds: float,
) -> None:
    """The database goes away again and again while presses arrive: each becomes one incident and one SMS."""
    [worker], twilio = processes(1, fast_escalation(SMS_ONLY), twilio={"timeout_s": TIMEOUT_S}, database=proxied_url)
    store = twilio.store
    published = 0
    for outage in range(outages):
        publish_presses(broker_url, [(DEVICES[published % len(DEVICES)], f"db-{outage}-before")])
        published += 1
        time.sleep(0.5)
        cut(seconds)
        # Presses during the outage wait, unacknowledged, in our handler and the broker.
        for n in range(2):
            publish_presses(broker_url, [(DEVICES[published % len(DEVICES)], f"db-{outage}-during-{n}")])
            published += 1
        assert eventually(lambda: _health(worker).get("status") == "failing", timeout=seconds)
        time.sleep(seconds)
        eventually(lambda: _health(worker).get("status") in ("ok", "degraded"), timeout=30)
    eventually(lambda: len(sent_by_twilio(store)[0]) >= published, timeout=60, interval=0.5)
    time.sleep(2)
    print(f"database: {outages} outages of {seconds:.0f}s, {published} presses, {len(sent_by_twilio(store)[0])} SMS")
    assert count(sessions, Incident) == published
    assert_each_page_once(sessions, store)
    stalls_ended = worker.count_lines("moves again")
    assert worker.count_lines("watchdog:") == 2 * stalls_ended, "a stall that never ended"


def _health(worker: ServiceProcess) -> dict[str, Any]:
    try:
        return dict(requests.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=5).json())
    except (requests.RequestException, ValueError):
        return {}
