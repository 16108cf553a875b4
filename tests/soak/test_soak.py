"""The long runs of tests/test_outbox_faults.py: 30 s Twilio outages, 5 SIGKILLs, 20 database outages.

Skipped unless DISPATCH_TEST_SOAK=1 (CI sets it for its PostgreSQL phase); about 15 minutes.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests import outage_scenarios as scenarios
from tests.tcp_fault_proxy import TcpFaultProxy
from tests.test_outbox_faults import proxied_database  # noqa: F401  (a fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("DISPATCH_TEST_SOAK") != "1", reason="soak runs need DISPATCH_TEST_SOAK=1"),
]


@pytest.mark.parametrize("kind", ["500", "429", "hang", "slow", "hang-then-500"])
def test_a_30_second_outage_of_twilio_delays_pages_but_loses_and_doubles_none(
    processes: scenarios.Processes, roster: None, sessions: sessionmaker[Session], broker_url: str, kind: str
) -> None:
    scenarios.twilio_outage(processes, sessions, broker_url, kind, seconds=30)


@pytest.mark.parametrize("run", range(5))
def test_a_sigkill_mid_burst_of_500_presses_loses_and_doubles_no_first_alert(
    processes: scenarios.Processes, roster: None, sessions: sessionmaker[Session], broker_url: str, run: int
) -> None:
    scenarios.sigkill_mid_burst(processes, sessions, broker_url, presses=500, kills=1)


def test_twenty_database_outages_of_10_seconds_lose_no_press_and_no_page(
    processes: scenarios.Processes,
    roster: None,
    sessions: sessionmaker[Session],
    broker_url: str,
    proxied_database: tuple[str, TcpFaultProxy],  # noqa: F811
) -> None:
    url, proxy = proxied_database
    scenarios.database_outages(processes, sessions, broker_url, url, proxy.outage, outages=20, seconds=10)
