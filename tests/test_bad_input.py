"""Bad input is kept as a dead letter with its reason, acknowledged, and never stops the service."""

from __future__ import annotations

import json
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.models import InboundMessage, Incident
from dispatch.service import DispatchService
from tests.conftest import count, eventually, mqtt_login

Start = Callable[..., DispatchService]


def dead_letters(sessions: sessionmaker[Session]) -> list[InboundMessage]:
    with sessions() as session:
        query = select(InboundMessage).where(InboundMessage.outcome == "dead_letter").order_by(InboundMessage.id)
        return list(session.execute(query).scalars())


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("devices/BTN-0001/press", b"{not json", "malformed JSON"),
        ("devices/BTN-0001/press", b"\xff\xfe", "not UTF-8"),
        ("devices/BTN-0001/press", b'["press"]', "must be a JSON object"),
        ("devices/BTN-0001/press", b'{"press_id": 12}', "press_id: Input should be a valid string"),
        (
            "devices/BTN-0001/press",
            b'{"press_id": "a", "lat": -91, "lon": 113}',
            "lat: Input should be greater",
        ),
        ("devices/BTN-0001/press", b'{"press_id": "a", "lat": -7.7}', "lat and lon must be given together"),
        (
            "devices/BTN-0001/press",
            b'{"press_id": "a", "ts": "yesterday"}',
            "ts: Input should be a valid datetime",
        ),
        ("devices/BTN-0001/press", b'{"press_id": "a", "battery": 101}', "battery"),
        ("devices/BTN-0001/press", b'{"lat": -7.7, "lon": 113.2}', "press_id: Field required"),
        # PostgreSQL refuses NUL in text: refused as input, not retried as a database failure.
        ("devices/BTN-0001/press", b'{"press_id": "a\\u0000b"}', "press_id: Value error, must not contain a NUL"),
        ("calls/112", b'{"call_id": "C-0", "services": ["police"], "address": "\\u0000"}', "must not contain a NUL"),
        ("devices/BTN-0001/reboot", b"{}", "unknown topic"),
        ("devices/BTN-0001/cancel", b'{"press_id": "never-pressed"}', "cancel for unknown press"),
        ("devices/NOBODY/heartbeat", b'{"battery": 50}', "heartbeat from unregistered device"),
        ("responders/POL-01/telemetry", b"{}", "unknown topic"),
    ],
)
def test_each_kind_of_bad_input_becomes_a_dead_letter_with_a_clear_reason(
    start_service: Start,
    roster: None,
    sessions: sessionmaker[Session],
    broker_url: str,
    topic: str,
    payload: bytes,
    reason: str,
) -> None:
    start_service()
    device_id = topic.split("/")[1]
    with SimulatedDevice(broker_url, device_id, listen=False) as sender:
        sender._client.publish(topic, payload, qos=1).wait_for_publish(5)
    [letter] = eventually(lambda: dead_letters(sessions))
    assert letter.topic == topic
    assert letter.payload == payload
    assert reason in (letter.reason or "")


def test_an_oversized_payload_is_dead_lettered_with_its_size_and_a_truncated_copy(
    start_service: Start, sessions: sessionmaker[Session], broker_url: str
) -> None:
    start_service()
    big = json.dumps({"press_id": "big", "pad": "x" * 70_000}).encode()
    with SimulatedDevice(broker_url, "BTN-0001", listen=False) as sender:
        sender.publish("press", big)
    [letter] = eventually(lambda: dead_letters(sessions))
    assert letter.payload_size == len(big)
    assert len(letter.payload) == 65536
    assert "exceeds 65536 bytes" in (letter.reason or "")
    assert count(sessions, Incident) == 0


@pytest.mark.slow
def test_a_thousand_malformed_payloads_then_a_valid_press_still_works(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood", protocol=mqtt.MQTTv311)
    address = mqtt_login(client, broker_url, "flood")
    client.connect(address.host, address.port)
    client.loop_start()
    garbage = [b"{", b"null", b'{"press_id": []}', b'{"press_id": "x", "lat": "north", "lon": 1}']
    infos = [client.publish(f"devices/BTN-{i % 12:04d}/press", garbage[i % 4], qos=1) for i in range(1000)]
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()

    eventually(lambda: count(sessions, InboundMessage) >= 1000, timeout=120, interval=0.5)
    assert count(sessions, InboundMessage, InboundMessage.outcome == "dead_letter") == 1000
    assert service.gateway.connected
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        assert button.wait_status(button.press())["state"] == "received"
    assert count(sessions, Incident) == 1
