"""A software panic button: publishes like real firmware and waits for the backend's status.

Used by ``dispatch simulate``, the tests and the benchmarks, so all three
exercise the broker exactly as a device would.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.gateway import BrokerAddress
from devices.protocol import status_topic


class SimulatedDevice:
    """One MQTT connection speaking the device protocol; use as a context manager."""

    def __init__(self, url: str, device_id: str, *, listen: bool = True, timeout_s: float = 10.0) -> None:
        self.device_id = device_id
        self._address = BrokerAddress.from_url(url)
        self._timeout_s = timeout_s
        self._listen = listen
        self.statuses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ready = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"sim-{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,
        )
        self._client.username_pw_set(self._address.username or f"device-{device_id}", self._address.password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.on_message = self._on_message

    def __enter__(self) -> SimulatedDevice:
        self._client.connect(self._address.host, self._address.port, keepalive=30)
        self._client.loop_start()
        if not self._ready.wait(self._timeout_s):
            self.close()
            raise TimeoutError(f"broker {self._address.host}:{self._address.port} did not answer")
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, kind: str, body: dict[str, Any] | bytes) -> None:
        """Publish on ``devices/{id}/{kind}`` at QoS 1 and wait for the broker's PUBACK."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        info = self._client.publish(f"devices/{self.device_id}/{kind}", payload, qos=1)
        info.wait_for_publish(self._timeout_s)
        if not info.is_published():
            raise TimeoutError(f"broker did not acknowledge devices/{self.device_id}/{kind}")

    def press(self, press_id: str | None = None, **fields: Any) -> str:
        """Press the button; returns the press_id used."""
        press_id = press_id or uuid.uuid4().hex[:12]
        self.publish("press", {"press_id": press_id, **{k: v for k, v in fields.items() if v is not None}})
        return press_id

    def wait_status(self, press_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The next status message for ``press_id`` (raises TimeoutError if none arrives)."""
        deadline = timeout_s if timeout_s is not None else self._timeout_s
        end = threading.Event()
        timer = threading.Timer(deadline, end.set)
        timer.start()
        try:
            while not end.is_set():
                try:
                    status = self.statuses.get(timeout=0.1)
                except queue.Empty:
                    continue
                if status.get("press_id") == press_id:
                    return status
        finally:
            timer.cancel()
        raise TimeoutError(f"no status for press {press_id} within {deadline}s")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        if self._listen:
            client.subscribe(status_topic(self.device_id), qos=1)
        else:
            self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):  # a test may publish garbage on a status topic
            self.statuses.put(json.loads(message.payload))
