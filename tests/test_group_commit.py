"""Group commit at intake: the messages waiting together share one transaction.

Each message gets a savepoint of its own, so one that fails is rolled back alone
and then treated exactly as a single message would be (retries, dead letter or
redelivery). Every message is acknowledged to the broker only after the commit
that holds it, in the order received; a batch that cannot commit acknowledges
nothing and its messages go through the one-at-a-time path.

The gateway's handler thread is driven directly here (messages put in its inbox
before it runs), so the batch is exactly the messages of the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from devices.gateway import MqttGateway
from dispatch.inbound import InboundRouter
from dispatch.metrics import Metrics
from dispatch.models import InboundMessage, Incident
from foundation.db import make_engine, make_session_factory
from foundation.settings import Settings
from tests.conftest import count


def press(mid: int, device: str, press_id: str | None = None) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(mid=mid, topic=f"devices/{device}/press".encode())
    message.payload = json.dumps({"press_id": press_id or f"p-{mid}"}).encode()
    message.qos = 1
    return message


@dataclass
class Intake:
    """A router and a gateway around it, with the broker's acknowledgements recorded."""

    gateway: MqttGateway
    router: InboundRouter
    acked: list[int] = field(default_factory=list)
    # For each acknowledgement: was the message's press already committed (seen from another connection)?
    committed_when_acked: list[bool] = field(default_factory=list)
    commits: list[int] = field(default_factory=lambda: [0])
    batches: list[int] = field(default_factory=list)

    def run(self, *messages: mqtt.MQTTMessage) -> None:
        for message in messages:
            self.gateway._inbox.put((0, message))
        self.gateway._inbox.put(None)
        self.gateway._work()


@pytest.fixture
def observer(database_url: str, engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions on a connection pool of their own, to look at what is committed."""
    other = make_engine(database_url)
    yield make_session_factory(other)
    other.dispose()


@pytest.fixture
def make_intake(
    make_settings: Callable[..., Settings],
    engine: Engine,
    sessions: sessionmaker[Session],
    observer: sessionmaker[Session],
    roster: None,
) -> Iterator[Callable[..., Intake]]:
    gateways: list[MqttGateway] = []

    def build(on_opened: Callable[[Session, Incident, datetime], object] | None = None, attempts: int = 2) -> Intake:
        settings = make_settings()
        router = InboundRouter(sessions, lambda _t, _p: None, settings, Metrics(), on_opened=on_opened)
        gateway = MqttGateway(
            url=settings.mqtt.url or "mqtt://127.0.0.1:1",
            client_id=settings.mqtt.client_id,
            subscriptions=["devices/+/+"],
            handler=router,
            on_failure=router.record_failure,
            handler_attempts=attempts,
            batch_handler=router.handle_batch,
            batch_max=64,
        )
        gateways.append(gateway)
        intake = Intake(gateway, router)
        messages: dict[int, mqtt.MQTTMessage] = {}

        def ack(mid: int, _qos: int) -> None:
            intake.acked.append(mid)
            with observer() as session:
                row = session.execute(
                    select(InboundMessage.id).where(InboundMessage.payload == messages[mid].payload)
                ).first()
                intake.committed_when_acked.append(row is not None)

        handle_batch = router.handle_batch

        def recording_batch(batch: Any) -> Any:
            intake.batches.append(len(batch))
            return handle_batch(batch)

        gateway._batch_handler = recording_batch
        gateway._client.ack = ack  # type: ignore[method-assign,assignment]
        original_put = gateway._inbox.put

        def put(item: Any, *args: Any, **kwargs: Any) -> None:
            if item is not None:
                messages[item[1].mid] = item[1]
            original_put(item, *args, **kwargs)

        gateway._inbox.put = put  # type: ignore[method-assign]
        event.listen(engine, "commit", lambda _c: intake.commits.__setitem__(0, intake.commits[0] + 1))
        return intake

    yield build


def test_a_batch_of_good_presses_is_one_commit_and_every_press_is_acknowledged_after_it_in_order(
    make_intake: Callable[..., Intake], sessions: sessionmaker[Session]
) -> None:
    intake = make_intake()
    intake.run(*(press(mid, f"BTN-000{mid}") for mid in range(1, 9)))

    assert intake.batches == [8]
    assert intake.commits[0] == 1
    assert count(sessions, Incident) == 8
    assert intake.acked == list(range(1, 9))
    assert all(intake.committed_when_acked)


def test_one_press_alone_takes_the_single_message_path(
    make_intake: Callable[..., Intake], sessions: sessionmaker[Session]
) -> None:
    intake = make_intake()
    intake.run(press(1, "BTN-0001"))

    assert intake.batches == []
    assert count(sessions, Incident) == 1
    assert intake.acked == [1]


def test_a_message_that_raises_is_dead_lettered_alone_and_the_rest_of_its_batch_is_committed(
    make_intake: Callable[..., Intake], sessions: sessionmaker[Session]
) -> None:
    tries: list[str] = []

    def start_escalation(_session: Session, incident: Incident, _now: datetime) -> None:
        tries.append(incident.device_id or "")
        if incident.device_id == "BTN-0003":
            raise RuntimeError("a bug for this one button")

    intake = make_intake(on_opened=start_escalation, attempts=2)
    intake.run(*(press(mid, f"BTN-000{mid}") for mid in range(1, 7)))

    # The bad one: once in the batch, once more alone (handler_attempts=2), then the dead letter.
    assert tries.count("BTN-0003") == 2
    with sessions() as session:
        devices = set(session.execute(select(Incident.device_id)).scalars())
        dead = session.execute(select(InboundMessage).where(InboundMessage.outcome == "dead_letter")).scalars().all()
    assert devices == {"BTN-0001", "BTN-0002", "BTN-0004", "BTN-0005", "BTN-0006"}
    assert [row.topic for row in dead] == ["devices/BTN-0003/press"]
    assert dead[0].reason is not None and "RuntimeError" in dead[0].reason
    assert intake.acked == list(range(1, 7))
    assert all(intake.committed_when_acked)
    # The two before it in the batch's commit, the bad one's dead letter, the three after it in a second batch.
    assert intake.batches == [6, 3]


def test_a_malformed_message_is_dead_lettered_inside_the_batch_without_a_commit_of_its_own(
    make_intake: Callable[..., Intake], sessions: sessionmaker[Session]
) -> None:
    intake = make_intake()
    bad = mqtt.MQTTMessage(mid=2, topic=b"devices/BTN-0002/press")
    bad.payload, bad.qos = b"{not json", 1
    intake.run(press(1, "BTN-0001"), bad, press(3, "BTN-0003"))

    assert intake.commits[0] == 1
    assert count(sessions, Incident) == 2
    assert count(sessions, InboundMessage, InboundMessage.outcome == "dead_letter") == 1
    assert intake.acked == [1, 2, 3]


def test_the_same_press_twice_in_one_batch_opens_one_incident(
    make_intake: Callable[..., Intake], sessions: sessionmaker[Session]
) -> None:
    intake = make_intake()
    intake.run(press(1, "BTN-0001", "same"), press(2, "BTN-0002"), press(3, "BTN-0001", "same"))

    assert intake.batches == [3]
    assert count(sessions, Incident) == 2
    assert count(sessions, Incident, Incident.device_id == "BTN-0001") == 1
    with sessions() as session:
        outcomes = session.execute(
            select(InboundMessage.outcome).where(InboundMessage.topic == "devices/BTN-0001/press")
        ).scalars()
        assert sorted(outcomes) == ["accepted", "duplicate"]
    assert intake.acked == [1, 2, 3]


def test_a_database_outage_mid_batch_acknowledges_nothing_until_each_press_is_committed_once(
    make_intake: Callable[..., Intake], engine: Engine, sessions: sessionmaker[Session]
) -> None:
    intake = make_intake(attempts=2)
    down = threading.Event()
    inserts = [0]

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if "INSERT INTO incidents" in sql:
            inserts[0] += 1
            if inserts[0] == 3:  # the third press of the batch finds the database gone
                down.set()
                threading.Timer(1.5, down.clear).start()
        if down.is_set():
            raise OperationalError(sql, {}, ConnectionError("database unreachable"))

    def commit(_conn: Any) -> None:
        if down.is_set():
            raise OperationalError("COMMIT", {}, ConnectionError("database unreachable"))

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        intake.run(*(press(mid, f"BTN-000{mid}") for mid in range(1, 6)))
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)

    assert intake.batches == [5]  # the batch failed; then one message at a time
    with sessions() as session:
        devices = sorted(d or "" for d in session.execute(select(Incident.device_id)).scalars())
    assert devices == [f"BTN-000{mid}" for mid in range(1, 6)]
    assert count(sessions, InboundMessage, InboundMessage.outcome == "dead_letter") == 0
    assert intake.acked == [1, 2, 3, 4, 5]
    assert all(intake.committed_when_acked)
