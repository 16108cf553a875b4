"""No page lost, none sent twice: Twilio outages, a SIGKILL mid-burst, the database going away.

Real `dispatch serve` processes, the real twilio SDK against a Twilio-compatible server that
fails on command (tests/fleet.py), the real broker and database. These are the short runs;
tests/soak/ repeats them long (30 s outages, 5 SIGKILLs, 20 database outages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.service import DispatchService
from tests import outage_scenarios as scenarios
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, fast_escalation, kinds, notifications, sandbox, texts_to
from tests.tcp_fault_proxy import TcpFaultProxy


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["500", "429", "hang", "slow", "hang-then-500"])
def test_an_outage_of_twilio_delays_pages_but_loses_and_doubles_none(
    processes: scenarios.Processes, roster: None, sessions: sessionmaker[Session], broker_url: str, kind: str
) -> None:
    scenarios.twilio_outage(processes, sessions, broker_url, kind, seconds=8)


@pytest.mark.slow
def test_a_sigkill_mid_burst_with_a_slow_twilio_loses_and_doubles_no_first_alert(
    processes: scenarios.Processes, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    scenarios.sigkill_mid_burst(processes, sessions, broker_url, presses=60, kills=1)


@pytest.mark.slow
def test_a_sigkill_mid_burst_with_a_slow_sms_gateway_loses_and_doubles_no_first_alert(
    processes: scenarios.Processes, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    scenarios.sigkill_mid_burst_through_the_gateway(processes, sessions, broker_url, presses=60)


@pytest.fixture
def proxied_database(database_url: str) -> Iterator[tuple[str, TcpFaultProxy]]:
    """The test's PostgreSQL database behind a proxy the test can cut (SQLite has no server to lose)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a database outage needs a database server (run with DISPATCH_TEST_DATABASE_URL)")
    parts = urlsplit(database_url)
    proxy = TcpFaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    yield urlunsplit(parts._replace(netloc=netloc)), proxy
    proxy.stop()


@pytest.mark.slow
def test_the_database_going_away_twice_loses_no_press_and_no_page(
    processes: scenarios.Processes,
    roster: None,
    sessions: sessionmaker[Session],
    broker_url: str,
    proxied_database: tuple[str, TcpFaultProxy],
) -> None:
    url, proxy = proxied_database
    scenarios.database_outages(processes, sessions, broker_url, url, proxy.outage, outages=2, seconds=5)


@pytest.mark.slow
def test_an_sms_that_went_out_while_the_database_was_down_is_recorded_as_sent_when_it_is_back(
    start_service: Callable[..., DispatchService],
    roster: None,
    sessions: sessionmaker[Session],
    proxied_database: tuple[str, TcpFaultProxy],
) -> None:
    url, proxy = proxied_database
    service = start_service(database={"url": url}, escalation=fast_escalation(scenarios.SMS_ONLY))
    store = sandbox(service)
    store.stall_next(1, 1.5)  # Twilio creates the SMS at once and answers 1.5 s later
    with SimulatedDevice(service.settings.mqtt.url or "", "BTN-0001") as button:
        button.wait_status(button.press("db-down-while-sending"))
    eventually(lambda: [r for r in store.requests if r.method == "POST"])
    proxy.outage(4)  # the answer (the SID) comes back while the database is unreachable

    [message] = eventually(lambda: texts_to(store, UNIT_PHONES["POL-01"]) and store.messages)
    [row] = eventually(lambda: [n for n in notifications(sessions) if n.provider_sid], timeout=30)
    assert (row.provider_sid, row.attempts, row.lookups, row.outcome_unknown) == (message.sid, 1, 0, False)
    assert [r.method for r in store.requests if r.path.endswith("/Messages.json")] == ["POST"]  # no lookup needed
    incident_kinds = kinds(sessions, row.incident_id)
    assert "sms_queued" in incident_kinds and "notification_in_doubt" not in incident_kinds
