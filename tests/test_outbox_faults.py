"""No page lost, none sent twice: Twilio outages, a SIGKILL mid-burst, the database going away.

Real `dispatch serve` processes, the real twilio SDK against a Twilio-compatible server that
fails on command (tests/fleet.py), the real broker and database. These are the short runs;
tests/soak/ repeats them long (30 s outages, 5 SIGKILLs, 20 database outages).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests import outage_scenarios as scenarios
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
