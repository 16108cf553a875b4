"""A service killed after receiving a press but before committing it loses nothing.

The test holds a lock on the database so the service blocks inside its
transaction, kills it with SIGKILL there, releases the lock and restarts it:
the broker redelivers the unacknowledged press and exactly one incident exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from devices.gateway import MqttGateway
from devices.simulator import SimulatedDevice
from dispatch.models import InboundMessage, Incident
from tests.conftest import count, eventually
from tests.service_process import ServiceProcess


@contextmanager
def writes_blocked(engine: Engine) -> Iterator[None]:
    """Hold the database's write lock (SQLite) or the incidents table lock (PostgreSQL)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            transaction = connection.begin()
            connection.exec_driver_sql("LOCK TABLE inbound_messages, incidents IN ACCESS EXCLUSIVE MODE")
        else:
            transaction = connection.begin()  # our engine begins SQLite transactions IMMEDIATE
        yield
        transaction.rollback()


@pytest.mark.slow
def test_sigkill_between_receive_and_commit_redelivers_into_exactly_one_incident(
    broker: dict[str, str],
    database_url: str,
    engine: Engine,
    sessions: sessionmaker[Session],
    roster: None,
    tmp_path: Path,
) -> None:
    if broker["kind"] == "amqtt":
        pytest.skip("amqtt discards a crashed client's in-flight QoS 1 messages; needs Mosquitto (see README)")
    client_id = f"crash-{uuid.uuid4().hex[:8]}"
    service = ServiceProcess(
        {
            "DISPATCH_DATABASE_URL": database_url,
            "DISPATCH_MQTT_URL": broker["url"],
            "DISPATCH__MQTT__CLIENT_ID": client_id,
            "DISPATCH__DATA_DIR": str(tmp_path / "var"),
            "DISPATCH__TWILIO__SANDBOX": "true",
        },
        tmp_path / "service.log",
    )
    service.start().wait_for_line("mqtt subscribed")
    try:
        with writes_blocked(engine):
            with SimulatedDevice(broker["url"], "BTN-0004", listen=False) as button:
                press_id = button.press()
            service.wait_for_line("mqtt message received topic=devices/BTN-0004/press")
            service.kill()
        assert count(sessions, Incident) == 0, "nothing may be committed before the crash"

        restarted = service.start()
        restarted.wait_for_line("session present: True")
        eventually(lambda: count(sessions, Incident) == 1, timeout=20)
        with sessions() as session:
            incident = session.execute(select(Incident)).scalar_one()
            inbound = session.execute(select(InboundMessage)).scalars().all()
        assert incident.press_id == press_id
        assert [row.redelivered for row in inbound] == [True]
    finally:
        service.stop()
        MqttGateway(url=broker["url"], client_id=client_id, subscriptions=(), handler=print)._forget_session()
