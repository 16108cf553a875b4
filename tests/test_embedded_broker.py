"""The embedded development broker (``dispatch demo``, tests) refuses anonymous clients.

Issue 12: with ``allow_anonymous true`` anyone on the machine could publish presses or set
every police unit off duty. Now both brokers, Mosquitto and the amqtt fallback, accept only
the user whose generated password is in ``data_dir/mqtt-credentials`` (0600).
"""

from __future__ import annotations

import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.broker import CREDENTIALS_FILE, EmbeddedBroker, embedded_credentials
from devices.gateway import BrokerAddress
from tests.conftest import free_port

KINDS = [
    pytest.param(
        "mosquitto", marks=pytest.mark.skipif(not shutil.which("mosquitto"), reason="mosquitto not installed")
    ),
    "amqtt",
]


@pytest.fixture(params=KINDS)
def embedded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "var", free_port(), prefer=request.param)
    broker.start()
    yield broker
    broker.stop()


def connack(port: int, username: str | None, password: str | None) -> int:
    """The broker's CONNACK reason code for these credentials (0 = accepted)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{username}", protocol=mqtt.MQTTv311)
    if username is not None:
        client.username_pw_set(username, password)
    answered = threading.Event()
    codes: list[int] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        codes.append(reason.value)
        answered.set()

    client.on_connect = on_connect
    client.on_disconnect = lambda *_: answered.set()  # amqtt may just close the connection
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10), "the broker did not answer the CONNECT"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0] if codes else -1


def test_only_the_generated_user_gets_in(embedded: EmbeddedBroker) -> None:
    address = BrokerAddress.from_url(embedded.url)
    user, password = embedded_credentials(embedded.data_dir)
    assert (address.username, address.password) == (user, password)
    assert len(password) >= 24
    assert connack(embedded.port, address.username, address.password) == 0
    assert connack(embedded.port, None, None) != 0  # anonymous
    assert connack(embedded.port, "any", None) != 0  # what the README used to suggest
    assert connack(embedded.port, user, password + "x") != 0


def test_the_credentials_and_the_data_dir_are_private(embedded: EmbeddedBroker) -> None:
    assert stat.S_IMODE(embedded.data_dir.stat().st_mode) == 0o700
    for name in (CREDENTIALS_FILE, f"{embedded.kind}-embedded.passwd"):
        assert stat.S_IMODE((embedded.data_dir / name).stat().st_mode) == 0o600, name


def test_the_password_is_kept_across_restarts(tmp_path: Path) -> None:
    # `dispatch simulate` in another terminal reads the same file, so it must not change.
    first = embedded_credentials(tmp_path / "var")
    assert embedded_credentials(tmp_path / "var") == first
    assert embedded_credentials(tmp_path / "other") != first
