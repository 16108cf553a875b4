"""Units report position and duty status over MQTT; the matcher uses what they report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment, InboundMessage
from dispatch.service import DispatchService
from foundation.clock import utcnow
from responders.models import Unit
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, fast_escalation, sandbox, texts_to

Start = Callable[..., DispatchService]
SLOW = fast_escalation([{"after_s": 0, "action": "notify_unit"}, {"after_s": 120, "action": "supervisor"}])


def report(broker_url: str, unit: str, kind: str, body: dict[str, object]) -> None:
    with SimulatedDevice(broker_url, unit, listen=False) as radio:
        radio._client.publish(f"responders/{unit}/{kind}", __import__("json").dumps(body), qos=1).wait_for_publish(5)


def unit(sessions: sessionmaker[Session], unit_id: str) -> Unit:
    with sessions() as session:
        return session.get_one(Unit, unit_id)


def test_a_fresh_position_report_makes_a_distant_unit_the_nearest(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=SLOW)
    now = utcnow()
    # POL-03's station is ~3 km away from BTN-0001; it reports being 50 m from it.
    report(broker_url, "POL-03", "location", {"ts": now.isoformat(), "lat": -7.7542, "lon": 113.2165})
    eventually(lambda: unit(sessions, "POL-03").fix_at is not None)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-03"]))
    with sessions() as session:
        explanation = session.query(Assignment).one().explanation
    assert explanation["unit_id"] == "POL-03"
    assert explanation["position_source"] == "fix"


def test_a_stale_position_falls_back_to_the_station(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=SLOW)
    old = utcnow() - timedelta(minutes=10)
    report(broker_url, "POL-03", "location", {"ts": old.isoformat(), "lat": -7.7542, "lon": 113.2165})
    eventually(lambda: unit(sessions, "POL-03").fix_at is not None)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))


def test_an_off_duty_unit_is_skipped_with_its_reason(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(escalation=SLOW)
    report(broker_url, "POL-01", "status", {"ts": utcnow().isoformat(), "status": "off_duty"})
    eventually(lambda: unit(sessions, "POL-01").status == "off_duty")
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-02"]))
    with sessions() as session:
        assert session.query(Assignment).one().explanation["skipped"]["POL-01"] == "off_duty"


def test_out_of_order_and_bad_reports_are_kept_but_not_applied(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    now = utcnow()
    report(broker_url, "POL-02", "location", {"ts": now.isoformat(), "lat": -7.74, "lon": 113.21})
    report(
        broker_url,
        "POL-02",
        "location",
        {"ts": (now - timedelta(seconds=30)).isoformat(), "lat": 1, "lon": 1},
    )
    report(broker_url, "GHOST-9", "status", {"ts": now.isoformat(), "status": "available"})
    report(broker_url, "POL-02", "status", {"ts": now.isoformat(), "status": "sleeping"})

    def outcomes() -> list[tuple[str, str | None]]:
        with sessions() as session:
            rows = session.execute(select(InboundMessage).order_by(InboundMessage.id)).scalars()
            return [(r.outcome, r.reason) for r in rows]

    got = eventually(lambda: len(outcomes()) == 4 and outcomes())
    assert got[0] == ("accepted", None)
    assert got[1] == ("duplicate", "older than the fix already held")
    assert got[2] == ("dead_letter", "status from unregistered unit")
    assert got[3][0] == "dead_letter" and "status" in (got[3][1] or "")
    assert unit(sessions, "POL-02").fix_lat == -7.74
