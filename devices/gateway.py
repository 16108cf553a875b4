"""MQTT gateway: the only place that speaks to the broker.

Guarantees, in order of importance:
1. A message is acknowledged only after the handler returned, i.e. after its
   effect (or its dead-letter record) is committed. Under load, the messages already
   waiting are handed to the batch handler together (one transaction for all) and
   each is acknowledged after that commit. A crash before that means
   the broker redelivers it; nothing is lost. A handler that cannot commit (the
   database is down) keeps the message and tries again until it can; it is never
   dropped and never acknowledged before.
2. paho is used as its documentation requires: one network loop (``loop_start``,
   paho's own thread, which also reconnects); callbacks only hand messages over;
   other threads publish and acknowledge through paho's thread-safe queue; nothing
   calls ``disconnect()`` from a callback. The handler runs in our own thread, so a
   slow database never stops the keepalive pings.
3. The session is persistent (clean_session=False, QoS 1), so messages published
   while we are down wait in the broker for us. A broker that answers "session
   present: false" after we had one has lost those messages: that is an alarm.

The handler is passed in; this module knows nothing about incidents.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch handler did with a batch: the first ``committed`` messages are committed.

    When ``error`` is set, the message right after them raised (its own work was rolled back,
    the others' kept) and was not handled; the messages after it were not tried.
    """

    committed: int
    error: BaseException | None = None


# Handles several messages in one transaction; raising means none of them is committed.
BatchHandler = Callable[[Sequence[InboundMessage]], BatchOutcome]
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
        on_session_lost: Callable[[], None] | None = None,
        batch_handler: BatchHandler | None = None,
        batch_max: int = 1,
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
        self._batch_handler = batch_handler
        self._batch_max = max(1, batch_max) if batch_handler is not None else 1
        self._on_session_lost = on_session_lost
        self._stopping = threading.Event()
        self._connected = threading.Event()
        # Messages handed over by the network thread, with the connection they came on.
        # Unbounded here, bounded in practice by the broker's in-flight window (unacknowledged
        # QoS 1 messages; max_inflight_messages in config/mosquitto.conf).
        self._inbox: queue.Queue[tuple[int, mqtt.MQTTMessage] | None] = queue.Queue()
        self._generation = 0  # bumped on every disconnect; acks belong to one connection
        self._had_session = False
        self._busy_since: float | None = None  # monotonic time the messages in hand were taken
        self._in_hand = 0
        self._last_done = time.monotonic()
        self.session_lost_at: datetime | None = None
        self.sessions_lost = 0
        self._worker: threading.Thread | None = None
        self._client = self._make_client(connect_timeout_s, default_username)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Connect and consume in background threads; returns at once."""
        self._worker = threading.Thread(target=self._work, name=f"mqtt-handler-{self.client_id}", daemon=True)
        self._worker.start()
        self._client.connect_async(self.address.host, self.address.port, keepalive=self._keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Block until subscribed (or the timeout passes); True when connected."""
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stalled_for(self) -> float:
        """Seconds a message has been waiting to be handled with nothing finishing; 0 when flowing."""
        busy_since = self._busy_since
        if busy_since is None and self._inbox.empty():
            return 0.0
        waiting_since = max(self._last_done, busy_since or 0.0)
        return max(0.0, time.monotonic() - waiting_since)

    @property
    def backlog(self) -> int:
        """Messages received and not yet handled."""
        return self._inbox.qsize() + self._in_hand

    def stop(self, *, forget_session: bool = False) -> None:
        """Finish the messages in hand, then disconnect; ``forget_session`` also drops the broker's session (tests)."""
        self._stopping.set()
        self._inbox.put(None)
        if self._worker is not None:
            self._worker.join(timeout=10)
        self._client.disconnect()
        self._client.loop_stop()
        if forget_session:
            self._forget_session()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message for the broker (any thread); False (and a log line) when it could not be queued."""
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
        # paho takes whole seconds; below 1 it would retry in a tight loop.
        client.reconnect_delay_set(
            min_delay=max(1, round(self._reconnect_min_s)), max_delay=max(1, round(self._reconnect_max_s))
        )
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

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
            if self._had_session and not flags.session_present:
                # Whatever was published for us while we were away went with the session.
                self.session_lost_at = datetime.now(UTC)
                self.sessions_lost += 1
                if self._on_session_lost is not None:
                    self._on_session_lost()
                log.error(
                    "mqtt session LOST: the broker kept no session for %s; presses published while we were "
                    "disconnected may be lost (was the client id taken by someone else, or the broker reset?)",
                    self.client_id,
                )
            self._had_session = True
            # Subscribing on every connect is what makes a lost session recover.
            client.subscribe([(topic, 1) for topic in self._topics])
        except Exception:
            log.exception("mqtt on_connect failed")

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        log.warning("mqtt %s:%s unreachable; paho retries", self.address.host, self.address.port)

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
        self._generation += 1
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("mqtt disconnected: %s (paho reconnects)", reason)

    def _on_message(self, _client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        # The network thread only hands over: it must stay free for keepalives and acks.
        self._inbox.put((self._generation, message))

    def _work(self) -> None:
        """The handler thread: the messages waiting, in the order received (one or a batch)."""
        while True:
            item = self._inbox.get()
            if item is None:
                return
            items = [item, *self._drain(self._batch_max - 1)]
            if self._stopping.is_set():
                return  # unacknowledged: the broker keeps them for our next start
            self._busy_since = time.monotonic()
            self._in_hand = len(items)
            try:
                if len(items) == 1:
                    self._process(*items[0])
                else:
                    self._process_batch(items)
            except Exception:  # never let this thread die: a dead handler is a silent gateway
                log.exception("mqtt handler thread: unexpected error")
            finally:
                self._in_hand = 0
                self._busy_since = None
                self._last_done = time.monotonic()

    def _drain(self, limit: int) -> list[tuple[int, mqtt.MQTTMessage]]:
        """Up to ``limit`` messages already waiting; never waits for more (latency at low load)."""
        drained: list[tuple[int, mqtt.MQTTMessage]] = []
        while len(drained) < limit:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._inbox.put(None)  # stop() asked: the loop sees it after this batch
                break
            drained.append(item)
        return drained

    def _process_batch(self, items: Sequence[tuple[int, mqtt.MQTTMessage]]) -> None:
        assert self._batch_handler is not None
        pending: list[tuple[int, mqtt.MQTTMessage, InboundMessage]] = []
        for generation, message in items:
            inbound = self._inbound(generation, message)
            if inbound is not None:
                pending.append((generation, message, inbound))
        while len(pending) > 1 and not self._stopping.is_set():
            try:
                outcome = self._batch_handler([inbound for _g, _m, inbound in pending])
            except Exception:
                # Nothing of the batch is committed (the database is down?): today's path, one
                # message at a time with its retries, so an outage behaves as without batches.
                log.exception("batch of %d messages not committed; handling them one at a time", len(pending))
                break
            if outcome.committed == 0 and outcome.error is None:
                log.error("batch handler committed nothing and reported no error; one at a time")
                break
            for generation, message, _inbound in pending[: outcome.committed]:
                self._ack(generation, message)
            pending = pending[outcome.committed :]
            if outcome.error is not None and pending:
                # The message that raised gets the per-message treatment before the ones after
                # it are tried, so their effects keep the order of arrival.
                generation, message, inbound = pending.pop(0)
                self._process(generation, message, inbound, first_error=outcome.error)
        for generation, message, inbound in pending:
            if self._stopping.is_set():
                return  # unacknowledged: redelivered on our next start
            self._process(generation, message, inbound)

    def _inbound(self, generation: int, message: mqtt.MQTTMessage) -> InboundMessage | None:
        try:
            return InboundMessage(
                topic=message.topic,
                payload=bytes(message.payload),
                qos=message.qos,
                retain=bool(message.retain),
                redelivered=bool(message.dup),
            )
        except Exception:
            # A topic that is not UTF-8 cannot even be logged faithfully; drop it loudly.
            log.exception("mqtt message with undecodable topic; acknowledged and dropped")
            self._ack(generation, message)
            return None

    def _process(
        self,
        generation: int,
        message: mqtt.MQTTMessage,
        inbound: InboundMessage | None = None,
        first_error: BaseException | None = None,
    ) -> None:
        """One message: the handler with retries; ``first_error`` counts as its first attempt (in a batch)."""
        inbound = inbound or self._inbound(generation, message)
        if inbound is None:
            return
        delay = 0.5
        error = first_error
        spent = 0 if first_error is None else 1
        while True:
            if spent < self._handler_attempts:
                error = self._handle_with_retries(inbound, spent)
            spent = 0
            if error is None or self._recorded_elsewhere(inbound, error):
                self._ack(generation, message)
                return
            # Not the message's fault (the database is down): keep it, unacknowledged, and try
            # again. A crash meanwhile leaves it with the broker, which redelivers it.
            log.error("message on %s not processed (%s); retrying in %.1fs", inbound.topic, type(error).__name__, delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def _ack(self, generation: int, message: mqtt.MQTTMessage) -> None:
        # A packet id belongs to one connection: after a reconnect the broker has redelivered
        # the message under the same id, and may reuse the id for another once that copy is
        # acknowledged. Acknowledge only on the connection it came on; the copy is handled again
        # (idempotently) and acknowledged then.
        if generation == self._generation:
            self._client.ack(message.mid, message.qos)

    def _handle_with_retries(self, inbound: InboundMessage, failed: int = 0) -> BaseException | None:
        """Run the handler up to N times (``failed`` of them already spent); the last error, or None on success."""
        error: BaseException | None = None
        if failed:
            time.sleep(min(0.2 * 2**failed, 2.0))
        for attempt in range(failed + 1, self._handler_attempts + 1):
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
