"""The shipped Mosquitto configuration, booted as shipped, keeps clients in their lanes.

``config/mosquitto.conf`` and ``config/mosquitto.acl`` are copied with only the paths, the port
and the TLS listener changed (no certificates here); every security line stays as shipped. The
password file is made with ``mosquitto_passwd``, as an operator would. Clients are real paho
clients speaking MQTT 5, so a refused publish is visible as Mosquitto's PUBACK "not authorised"
(reason code 135) or, as Mosquitto 2.0 also does, as the connection being closed; the worker's
subscription shows that nothing refused reached it.
"""

from __future__ import annotations

import getpass
import json
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.conftest import ROOT, eventually, free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
pytestmark = pytest.mark.skipif(
    not (Path(MOSQUITTO).exists() and MOSQUITTO_PASSWD),
    reason="needs mosquitto and mosquitto_passwd (apt-get install mosquitto mosquitto-clients)",
)
USERS = ("BTN-0001", "BTN-0002", "POL-01", "callcenter", "dispatch-1", "dispatch-2")
NOT_AUTHORIZED = 135
DROPPED = -1  # the broker closed the connection instead of acknowledging


def shipped_config(directory: Path, port: int) -> Path:
    """The shipped config with paths, port and TLS adapted; every other line as shipped."""
    text = (ROOT / "config" / "mosquitto.conf").read_text()
    text = text.replace("/etc/mosquitto/dispatch.passwd", str(directory / "passwd"))
    text = text.replace("/etc/mosquitto/dispatch.acl", str(directory / "acl"))
    text = text.replace("/var/lib/mosquitto/", f"{directory}/")
    # No certificates here: the TLS listener goes, the loopback listener moves to a free port.
    text = re.sub(r"\nlistener 8883\n(?:.+\n)*", "\n", text)
    text = text.replace("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    assert "listener 8883" not in text and "certfile" not in text
    assert f"listener {port} 127.0.0.1\nuse_username_as_clientid true\n" in text
    # Started as root, Mosquitto would switch to the "mosquitto" user, who cannot read pytest's
    # private temporary directory: run as whoever runs the tests.
    text += f"\nuser {getpass.getuser()}\n"
    shutil.copy(ROOT / "config" / "mosquitto.acl", directory / "acl")
    conf = directory / "mosquitto.conf"
    conf.write_text(text)
    return conf


@pytest.fixture(scope="module")
def shipped_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    directory = tmp_path_factory.mktemp("shipped-mosquitto")
    assert MOSQUITTO_PASSWD is not None
    passwd = directory / "passwd"
    passwd.touch()
    for user in USERS:
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, f"pw-{user}"], check=True)
    port = free_port()
    conf = shipped_config(directory, port)
    with (directory / "mosquitto.log").open("wb") as log:
        process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: process.poll() is not None or _listening(port), timeout=10)
        assert process.poll() is None, (directory / "mosquitto.log").read_text()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Client:
    """One paho connection that records PUBACK reason codes, messages and disconnects.

    MQTT 5 (PUBACK carries "not authorised"), or with ``kept_session`` MQTT 3.1.1 with
    clean_session=False exactly like the gateway.
    """

    def __init__(self, port: int, user: str, *, client_id: str, kept_session: bool = False) -> None:
        if kept_session:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
            )
        else:
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, f"pw-{user}")
        self.session_present = False
        self.acks: dict[int, int] = {}
        self.messages: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.disconnects = 0
        self.connack: ReasonCode | None = None
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, json.loads(msg.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._connected.wait(10), f"{user} did not connect"

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, _p: Properties | None) -> None:
        self.connack = reason
        self.session_present = bool(flags.session_present)
        self._connected.set()

    def _on_disconnect(self, *_: Any) -> None:
        self.disconnects += 1

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self.acks[mid] = reason.value

    def publish(self, topic: str, body: dict[str, Any]) -> int:
        """Publish at QoS 1: the PUBACK reason code (0 accepted, 135 not authorised) or DROPPED."""
        disconnects = self.disconnects
        info = self.client.publish(topic, json.dumps(body), qos=1)
        eventually(lambda: info.mid in self.acks or self.disconnects > disconnects)
        return self.acks.get(info.mid, DROPPED)

    def subscribe(self, *topics: str) -> None:
        granted = threading.Event()
        self.client.on_subscribe = lambda *_: granted.set()
        self.client.subscribe([(topic, 1) for topic in topics])
        assert granted.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def worker(shipped_broker: int) -> Iterator[Client]:
    """dispatch-1 with a kept session, subscribed like the gateway; the session is wiped after."""
    client = Client(shipped_broker, "dispatch-1", client_id="dispatch-1", kept_session=True)
    client.subscribe("devices/+/+", "calls/#", "responders/+/+")
    yield client
    client.close()
    Client(shipped_broker, "dispatch-1", client_id="dispatch-1").close()  # clean start: forget it


def received(worker: Client, marker: str) -> list[str]:
    """Topics the worker received up to the message whose body carries ``marker``."""
    topics: list[str] = []
    while True:
        topic, body = worker.messages.get(timeout=10)
        topics.append(topic)
        if body.get("press_id") == marker:
            return topics


def test_the_shipped_config_starts_and_refuses_anonymous_clients(shipped_broker: int) -> None:
    anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anon", protocol=mqtt.MQTTv5)
    answers: list[int] = []
    anonymous.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason.value)
    anonymous.connect("127.0.0.1", shipped_broker)
    anonymous.loop_start()
    try:
        assert eventually(lambda: answers) == [NOT_AUTHORIZED]  # CONNACK: not authorised
    finally:
        anonymous.loop_stop()


def test_a_device_cannot_take_the_workers_client_id_or_wipe_its_session(shipped_broker: int, worker: Client) -> None:
    # The attack of issue 12: a device with valid credentials connects as "dispatch-1" with a
    # clean session. With use_username_as_clientid its client id is its username instead.
    intruder = Client(shipped_broker, "BTN-0002", client_id="dispatch-1")
    try:
        assert intruder.publish("devices/BTN-0002/press", {"press_id": "after-takeover"}) == 0
        assert received(worker, "after-takeover") == ["devices/BTN-0002/press"]
        assert worker.disconnects == 0, "the worker's connection was closed by the intruder"
    finally:
        intruder.close()

    # The session survives: messages published while the worker is away wait for it.
    worker.close()
    with_session = Client(shipped_broker, "BTN-0001", client_id="x")
    try:
        assert with_session.publish("devices/BTN-0001/press", {"press_id": "while-away"}) == 0
    finally:
        with_session.close()
    back = Client(shipped_broker, "dispatch-1", client_id="dispatch-1", kept_session=True)
    try:
        assert back.session_present
        assert received(back, "while-away") == ["devices/BTN-0001/press"]
    finally:
        back.close()


def test_a_device_cannot_take_another_devices_client_id(shipped_broker: int, worker: Client) -> None:
    victim = Client(shipped_broker, "BTN-0001", client_id="BTN-0001")
    intruder = Client(shipped_broker, "BTN-0002", client_id="BTN-0001")
    try:
        assert victim.publish("devices/BTN-0001/press", {"press_id": "victim-still-here"}) == 0
        assert received(worker, "victim-still-here") == ["devices/BTN-0001/press"]
        assert victim.disconnects == 0
    finally:
        intruder.close()
        victim.close()


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        ("BTN-0002", "devices/BTN-0001/press"),  # another device
        ("BTN-0002", "devices/BTN-0001/cancel"),
        ("BTN-0002", "responders/POL-01/status"),  # a police unit (e.g. "off duty")
        ("BTN-0002", "calls/112"),  # the call center
        ("BTN-0002", "devices/BTN-0001/status"),  # the backend's answer to another device
        ("POL-01", "devices/BTN-0001/press"),  # a unit as a device
        ("POL-01", "responders/POL-02/status"),  # a unit as another unit
        ("callcenter", "devices/BTN-0001/press"),  # the call center as a device
        ("callcenter", "responders/POL-01/status"),
    ],
)
def test_a_client_cannot_publish_in_someone_elses_name(
    shipped_broker: int, worker: Client, user: str, topic: str
) -> None:
    sender = Client(shipped_broker, user, client_id=user)
    try:
        assert sender.publish(topic, {"press_id": "forged", "status": "off_duty"}) in {NOT_AUTHORIZED, DROPPED}
    finally:
        sender.close()
    own = {"BTN-0002": "devices/BTN-0002/heartbeat", "POL-01": "responders/POL-01/status"}
    marker_topic = own.get(user, "calls/112")
    again = Client(shipped_broker, user, client_id=user)
    try:
        assert again.publish(marker_topic, {"press_id": f"marker-{user}"}) == 0
    finally:
        again.close()
    assert received(worker, f"marker-{user}") == [marker_topic]  # the forged one never arrived


def test_each_client_may_publish_what_is_its_own(shipped_broker: int, worker: Client) -> None:
    cases = [
        ("BTN-0001", "devices/BTN-0001/press"),
        ("BTN-0001", "devices/BTN-0001/cancel"),
        ("BTN-0001", "devices/BTN-0001/heartbeat"),
        ("POL-01", "responders/POL-01/location"),
        ("POL-01", "responders/POL-01/status"),
        ("callcenter", "calls/112"),
    ]
    for user, topic in cases:
        sender = Client(shipped_broker, user, client_id=user)
        try:
            assert sender.publish(topic, {"press_id": f"{user}-{topic}"}) == 0
            assert received(worker, f"{user}-{topic}")[-1] == topic
        finally:
            sender.close()


def test_a_second_worker_has_its_own_session_and_shared_subscriptions_work(shipped_broker: int, worker: Client) -> None:
    second = Client(shipped_broker, "dispatch-2", client_id="dispatch-2")
    try:
        second.subscribe("$share/dispatch/devices/+/+")
        sender = Client(shipped_broker, "BTN-0001", client_id="BTN-0001")
        try:
            assert sender.publish("devices/BTN-0001/press", {"press_id": "shared"}) == 0
        finally:
            sender.close()
        assert second.messages.get(timeout=10)[0] == "devices/BTN-0001/press"
        assert received(worker, "shared") == ["devices/BTN-0001/press"]
        assert worker.disconnects == 0 and second.disconnects == 0
    finally:
        second.close()
