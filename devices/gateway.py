"""MQTT gateway: the only place that speaks to the broker.

Guarantees, in order of importance:
1. A message is acknowledged only after the handler returned, i.e. after its
   effect (or its dead-letter record) is committed. A crash before that means
   the broker redelivers it; nothing is lost.
2. An exception never escapes a paho callback, so the network loop never dies.
3. The session is persistent (clean_session=False, QoS 1), so messages published
   while we are down wait in the broker for us.

The handler is passed in; this module knows nothing about incidents.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """Parse ``mqtt://user:pass@host:port`` (``mqtts://`` for TLS)."""
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


@dataclass(frozen=True)
class InboundMessage:
    """One message as received, before any interpretation."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    redelivered: bool


Handler = Callable[[InboundMessage], None]
# Called when the handler kept failing; True means "recorded elsewhere, acknowledge it".
FailureHandler = Callable[[InboundMessage, BaseException], bool]


class MqttGateway:
    """A persistent-session MQTT consumer and publisher with acknowledge-after-commit."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        subscriptions: Sequence[str],
        handler: Handler,
        on_failure: FailureHandler | None = None,
        shared_group: str | None = None,
        keepalive_s: int = 30,
        connect_timeout_s: float = 10.0,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
        handler_attempts: int = 3,
        default_username: str = "dispatch",
    ) -> None:
        self.address = BrokerAddress.from_url(url)
        self.client_id = client_id
        self._topics = [f"$share/{shared_group}/{t}" if shared_group else t for t in subscriptions]
        self._handler = handler
        self._on_failure = on_failure
        self._keepalive_s = keepalive_s
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._handler_attempts = handler_attempts
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = self._make_client(connect_timeout_s, default_username)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Connect and consume in a background thread; returns at once."""
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until subscribed (or the timeout passes); True when connected."""
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self, *, forget_session: bool = False) -> None:
        """Disconnect cleanly. ``forget_session`` also drops the broker-side session (tests)."""
        self._stopping.set()
        self._client.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if forget_session:
            self._forget_session()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message for the broker; False (and a log line) when it could not be queued."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to %s not queued: %s", topic, mqtt.error_string(info.rc))
            return False
        return True

    # -- internals -------------------------------------------------------------

    def _make_client(self, connect_timeout_s: float, default_username: str) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        # Some brokers (amqtt) drop the session of anonymous clients, so always send a username.
        client.username_pw_set(self.address.username or default_username, self.address.password)
        if self.address.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.connect_timeout = connect_timeout_s
        client.reconnect_delay_set(min_delay=int(self._reconnect_min_s), max_delay=int(self._reconnect_max_s))
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _run(self) -> None:
        delay = self._reconnect_min_s
        while not self._stopping.is_set():
            try:
                self._client.connect(self.address.host, self.address.port, keepalive=self._keepalive_s)
                delay = self._reconnect_min_s
                # Returns only after disconnect(); paho itself reconnects after network failures.
                self._client.loop_forever(retry_first_connection=True)
            except Exception as exc:  # the loop must survive any failure
                log.warning(
                    "mqtt %s:%s unreachable (%s); retrying in %.0fs",
                    self.address.host,
                    self.address.port,
                    exc,
                    delay,
                )
            self._connected.clear()
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self._reconnect_max_s)

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        try:
            if reason.is_failure:
                log.error("mqtt connection refused: %s", reason)
                return
            log.info(
                "mqtt connected to %s:%s as %s (session present: %s)",
                self.address.host,
                self.address.port,
                self.client_id,
                flags.session_present,
            )
            # Subscribing on every connect is what makes a lost session recover.
            client.subscribe([(topic, 1) for topic in self._topics])
        except Exception:
            log.exception("mqtt on_connect failed")

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        try:
            failed = [str(r) for r in reasons if r.is_failure]
            if failed:
                log.error("mqtt subscription refused: %s", ", ".join(failed))
                return
            # Only now are new messages routed to us (on a fresh session); say so for operators and tests.
            log.info("mqtt subscribed to %s", ", ".join(self._topics))
            self._connected.set()
        except Exception:
            log.exception("mqtt on_subscribe failed")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("mqtt disconnected: %s", reason)

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            inbound = InboundMessage(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                retain=bool(message.retain),
                redelivered=bool(message.dup),
            )
        except Exception:
            # A topic that is not UTF-8 cannot even be logged faithfully; drop it loudly.
            log.exception("mqtt message with undecodable topic; acknowledged and dropped")
            client.ack(message.mid, message.qos)
            return
        error = self._handle_with_retries(inbound)
        if error is None or self._recorded_elsewhere(inbound, error):
            client.ack(message.mid, message.qos)
            return
        # Leave it unacknowledged and reconnect: the broker redelivers it on the resumed session.
        log.error("message on %s not processed; reconnecting for redelivery", inbound.topic)
        client.disconnect()

    def _handle_with_retries(self, inbound: InboundMessage) -> BaseException | None:
        """Run the handler up to N times; the last error, or None on success."""
        error: BaseException | None = None
        for attempt in range(1, self._handler_attempts + 1):
            try:
                self._handler(inbound)
                return None
            except Exception as exc:
                error = exc
                log.exception("handler failed for %s (attempt %d/%d)", inbound.topic, attempt, self._handler_attempts)
                if attempt < self._handler_attempts:
                    time.sleep(min(0.2 * 2**attempt, 2.0))
        return error

    def _recorded_elsewhere(self, inbound: InboundMessage, error: BaseException) -> bool:
        if self._on_failure is None:
            return False
        try:
            return self._on_failure(inbound, error)
        except Exception:
            log.exception("failure handler raised for %s", inbound.topic)
            return False

    def _forget_session(self) -> None:
        eraser = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        eraser.username_pw_set(self.address.username or "dispatch", self.address.password)
        try:
            eraser.connect(self.address.host, self.address.port)
            eraser.loop_start()
            time.sleep(0.2)
            eraser.disconnect()
            eraser.loop_stop()
        except OSError:
            log.warning("could not erase mqtt session %s", self.client_id)
