"""Pipeline benchmark: a press published over MQTT -> the SMS request at the provider's server.

The provider is the Twilio-compatible server (default), the SMS Gateway for Android stand-in
(``--provider sms_gateway``: the gateway carries SMS to the roster's +62 numbers, as in the
demo), or both, one run after the other (``--provider both``), each printed, then side by side.

Starts, in this one process,
- a standalone Twilio-compatible server (``responders.sandbox``), the way
  ``tests/test_responder_durability.py`` does, that records when each SMS request arrives;
- a full dispatch service (MQTT gateway, engine, scheduler, web app for Twilio's status
  callbacks) with the example roster and a one-step escalation policy for every service:
  ``[{after_s: 0, action: notify_unit, channels: [sms]}]``, ``repeat: 0``,
  talking to that server through the real twilio SDK;

then publishes presses at a fixed rate from one paho client (QoS 1), rotating over the 12
example buttons, each with a unique ``press_id``. After the run the database joins each press
(``incidents.press_id``) to its page (``notifications.provider_sid`` = the server's message sid),
so every latency is press publish -> SMS request accepted by the Twilio server.

The arrival time of an SMS is the server's own ``created_at`` (taken when it handles the
request), moved onto this process's ``perf_counter`` base through a (wall clock, perf_counter)
reference pair taken at start; a hook on the store's ``add_message`` stamps ``perf_counter``
directly as a cross-check. The engine's tick is woken on each new incident, so latency is not
bounded below by the 1 s scheduler tick.

Usage:
    python bench/pipeline.py                       # SQLite file + embedded broker, 50/s for 30 s
    python bench/pipeline.py --rate 20 --seconds 10
    python bench/pipeline.py --rate 5 --seconds 30 --provider both
    python bench/pipeline.py --channel chat          # the step on `chat`: WhatsApp template alerts
    python bench/pipeline.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test \
                             --mqtt mqtt://127.0.0.1:1883

``--database postgresql...`` DROPS and recreates the schema ``public`` of that database first.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from devices.gateway import BrokerAddress
from dispatch.models import Incident, Notification
from dispatch.roster import apply_roster, load_roster
from dispatch.service import DispatchService
from foundation.db import make_engine, transaction
from foundation.settings import load_settings
from responders import whatsapp
from responders.sandbox import SandboxStore, run_sandbox_server, sandbox_api_base, stop_sandbox_server
from responders.sandbox.sms_gateway import GatewayStore, run_standalone
from responders.sandbox.store import SandboxMessage

ROSTER = Path(__file__).resolve().parent.parent / "config" / "roster.example.yaml"
ACCOUNT_SID = "AC" + "1" * 32
DEVICES = [f"BTN-{i:04d}" for i in range(1, 13)]
# The bench's WhatsApp alert templates (``--channel chat``), rendered by the server.
WHATSAPP_TEMPLATES = whatsapp.SANDBOX_TEMPLATES


def one_step_policy(channel: str) -> list[dict[str, Any]]:
    return [{"after_s": 0, "action": "notify_unit", "channels": [channel]}]


# -- clocks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClockReference:
    """A (wall clock, perf_counter) pair read as close together as possible."""

    wall: float
    perf: float

    @classmethod
    def take(cls, tries: int = 50) -> ClockReference:
        best: tuple[float, float, float] | None = None  # (bracket width, wall, perf midpoint)
        for _ in range(tries):
            before = time.perf_counter()
            wall = time.time()
            after = time.perf_counter()
            if best is None or after - before < best[0]:
                best = (after - before, wall, (before + after) / 2)
        assert best is not None
        return cls(wall=best[1], perf=best[2])

    def to_perf(self, moment: datetime) -> float:
        """An aware datetime on the perf_counter time base."""
        return self.perf + (moment.timestamp() - self.wall)


# -- the Twilio-compatible server ------------------------------------------------------------------


class TimedStore(SandboxStore):
    """The sandbox's store, stamping each accepted outbound SMS with ``perf_counter``."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}  # message sid -> perf_counter when stored
        self.expected = 0
        self.all_arrived = threading.Event()
        self._outbound = 0

    def add_message(self, message: SandboxMessage) -> SandboxMessage:
        stamp = time.perf_counter()
        stored = super().add_message(message)
        if message.direction == "outbound-api":
            with self._lock:
                self.arrived[message.sid] = stamp
                self._outbound += 1
                if self.expected and self._outbound >= self.expected:
                    self.all_arrived.set()
        return stored

    def expect(self, count: int) -> None:
        with self._lock:
            self.expected = count
            if self._outbound >= count:
                self.all_arrived.set()


@dataclass
class TwilioServer:
    """A standalone Twilio-compatible server in a thread of this process."""

    webhook_base: str
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    store: TimedStore = field(default_factory=TimedStore)

    def __post_init__(self) -> None:
        templates = whatsapp.sandbox_templates(WHATSAPP_TEMPLATES)
        self._thread, self._server = run_sandbox_server(
            "127.0.0.1", 0, self.store, ACCOUNT_SID, self.token, self.webhook_base, content_templates=templates
        )
        self.api_base = sandbox_api_base(self._server)

    def stop(self) -> None:
        stop_sandbox_server(self._thread, self._server)


@dataclass
class GatewayServer:
    """A standalone SMS Gateway for Android stand-in in a thread of this process."""

    username: str = "bench"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    signing_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    store: GatewayStore = field(default_factory=GatewayStore)

    def __post_init__(self) -> None:
        self.url, self._stop = run_standalone(self.store, self.username, self.password, self.signing_key)

    def settings(self) -> dict[str, Any]:
        return {"url": self.url, "username": self.username, "password": self.password, "signing_key": self.signing_key}

    def arrivals(self) -> dict[str, datetime]:
        """Message id (ours: the outbox row's key, also its provider_sid) -> when the stand-in took it."""
        with self.store.lock:
            return {m.id: m.created_at for m in self.store.messages if m.direction == "outbound"}

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals()) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        self._stop()


# -- log records worth reporting -----------------------------------------------------------------


class LogTally(logging.Handler):
    """Counts WARNING-and-above records by (logger, level, message template); keeps one example."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.examples: dict[tuple[str, str, str], str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelname, str(record.msg))
        self.counts[key] += 1
        if key not in self.examples:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            self.examples[key] = text[:300]


# -- the run ----------------------------------------------------------------------------------------


@dataclass
class Published:
    sent: dict[str, float]  # press_id -> perf_counter just before publish()
    first: float
    last: float
    max_behind_ms: float  # worst lag of a publish behind its schedule
    acked: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def reset_postgresql(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()


def run(
    database: str | None,
    mqtt_url: str | None,
    rate: float,
    seconds: float,
    settle_s: float,
    provider: str,
    channel: str = "sms",
) -> list[float]:
    """One run through ``provider`` ("twilio" or "sms_gateway") on ``channel``; the press -> alert latencies (ms)."""
    tally = LogTally()
    root = logging.getLogger()
    root.addHandler(tally)  # also keeps logging's last-resort handler from printing each record
    root.setLevel(logging.WARNING)
    # werkzeug (the Twilio server) logs every request at INFO through its own handler otherwise.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        if database and database.startswith("postgresql"):
            reset_postgresql(database)
        web_port = free_port()
        public_url = f"http://127.0.0.1:{web_port}"
        twilio = TwilioServer(public_url)
        gateway = GatewayServer() if provider == "sms_gateway" else None
        try:
            overrides: dict[str, Any] = {
                "data_dir": tmp,
                "database": {"url": database or f"sqlite:///{tmp}/pipeline.sqlite3"},
                "mqtt": {
                    "url": mqtt_url,
                    "client_id": f"bench-{uuid.uuid4().hex[:8]}",
                    "embedded_port": free_port(),
                },
                "web": {"host": "127.0.0.1", "port": web_port},
                "public_url": public_url,
                "twilio": {
                    "account_sid": ACCOUNT_SID,
                    "auth_token": twilio.token,
                    "api_base": twilio.api_base,
                },
                "escalation": {
                    "repeat": 0,
                    "policies": {service: one_step_policy(channel) for service in ("police", "disaster", "ambulance")},
                },
                # Only for --channel chat: the roster's AMB-01 prefers WhatsApp whenever it exists.
                "whatsapp": (
                    {"from_number": "+15005550010", "templates": WHATSAPP_TEMPLATES} if channel == "chat" else {}
                ),
            }
            if gateway is not None:
                overrides["sms_gateway"] = gateway.settings()  # +62 numbers: the gateway first
            service = DispatchService(load_settings(environ={}, overrides=overrides))
            try:
                service.start()
                if not service.gateway.wait_connected(10):
                    raise RuntimeError("the service did not connect to the broker within 10 s")
                with transaction(service.sessions) as session:
                    apply_roster(session, load_roster(ROSTER))
                # The embedded broker refuses anonymous clients: publish with its generated credentials.
                url = mqtt_url or (service.broker.url if service.broker is not None else "")
                latencies = measure(service, twilio, gateway, url, rate, seconds, settle_s)
            finally:
                service.stop(forget_mqtt_session=True)
        finally:
            twilio.stop()
            if gateway is not None:
                gateway.stop()
            root.removeHandler(tally)
    report_logs(tally)
    return latencies


def publish_presses(url: str, rate: float, count: int, tag: str) -> Published:
    """Publish ``count`` presses at ``rate`` per second from one client; wait for every PUBACK."""
    address = BrokerAddress.from_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{tag}")
    client.username_pw_set(address.username or "bench", address.password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(address.host, address.port)
    client.loop_start()
    time.sleep(0.5)
    sent: dict[str, float] = {}
    infos: list[mqtt.MQTTMessageInfo] = []
    behind = 0.0
    ts = datetime.now(UTC).isoformat()
    start = time.perf_counter() + 0.01
    for i in range(count):
        due = start + i / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        press_id = f"pipe-{tag}-{i:06d}"
        body = json.dumps({"press_id": press_id, "ts": ts, "battery": 90})
        now = time.perf_counter()
        behind = max(behind, now - due)
        sent[press_id] = now
        infos.append(client.publish(f"devices/{DEVICES[i % len(DEVICES)]}/press", body, qos=1))
    stamps = list(sent.values())
    acked = 0
    for info in infos:
        try:
            info.wait_for_publish(60)
        except (RuntimeError, ValueError):
            continue
        acked += info.is_published()
    client.disconnect()
    client.loop_stop()
    return Published(sent, stamps[0], stamps[-1], behind * 1000, acked)


@dataclass(frozen=True)
class Joined:
    press_id: str
    opened_at: datetime
    notification_created_at: datetime | None
    claimed_at: datetime | None
    provider_sid: str | None
    state: str | None


def read_joins(service: DispatchService, tag: str) -> list[Joined]:
    """Every incident of this run with its SMS notification to a unit (if any)."""
    with service.sessions() as session:
        rows = session.execute(
            select(
                Incident.press_id,
                Incident.opened_at,
                Notification.created_at,
                Notification.claimed_at,
                Notification.provider_sid,
                Notification.state,
            )
            .outerjoin(
                Notification,
                (Notification.incident_id == Incident.id)
                & (Notification.channel != "voice")
                & (Notification.recipient_kind == "unit"),
            )
            .where(Incident.press_id.like(f"pipe-{tag}-%"))
            .order_by(Incident.id, Notification.id)
        ).all()
    first: dict[str, Joined] = {}
    for press_id, opened_at, created_at, claimed_at, sid, state in rows:
        if press_id is None:
            continue
        first.setdefault(press_id, Joined(press_id, opened_at, created_at, claimed_at, sid, state))
    return list(first.values())


def measure(
    service: DispatchService,
    twilio: TwilioServer,
    gateway: GatewayServer | None,
    url: str,
    rate: float,
    seconds: float,
    settle_s: float,
) -> list[float]:
    clock = ClockReference.take()
    count = max(1, round(rate * seconds))
    tag = uuid.uuid4().hex[:8]
    twilio.store.expect(count)
    published = publish_presses(url, rate, count, tag)
    if gateway is None:
        complete = twilio.store.all_arrived.wait(settle_s)
    else:
        complete = gateway.wait_for(count, settle_s)
    # Let the last status callbacks reach the service before it stops.
    time.sleep(1.0)

    joins = read_joins(service, tag)
    if gateway is None:
        server = "the Twilio server"
        messages = {m.sid: m.created_at for m in twilio.store.messages if m.direction == "outbound-api"}
        arrived_hook = dict(twilio.store.arrived)
    else:
        server = "the SMS gateway stand-in"
        messages, arrived_hook = gateway.arrivals(), {}  # no store hook there: its created_at alone
    latencies: list[float] = []
    hook_skew: list[float] = []
    stage_names = ("publish->receive", "receive->page written", "written->claimed", "claimed->SMS at server")
    stages: dict[str, list[float]] = {name: [] for name in stage_names}
    matched: set[str] = set()
    last_arrival = published.last
    for row in joins:
        sid = row.provider_sid or ""
        created_at = messages.get(sid)
        if created_at is None:
            continue
        matched.add(sid)
        sent = published.sent[row.press_id]
        arrival = clock.to_perf(created_at)
        last_arrival = max(last_arrival, arrival)
        latencies.append((arrival - sent) * 1000)
        if sid in arrived_hook:
            hook_skew.append((arrived_hook[sid] - arrival) * 1000)
        received = clock.to_perf(row.opened_at)
        stages["publish->receive"].append((received - sent) * 1000)
        if row.notification_created_at is not None and row.claimed_at is not None:
            written, claimed = clock.to_perf(row.notification_created_at), clock.to_perf(row.claimed_at)
            stages["receive->page written"].append((written - received) * 1000)
            stages["written->claimed"].append((claimed - written) * 1000)
            stages["claimed->SMS at server"].append((arrival - claimed) * 1000)

    backend = service.engine.dialect.name
    address = BrokerAddress.from_url(url)
    embedded = "embedded " if service.broker is not None else ""
    span = published.last - published.first
    achieved = (len(published.sent) - 1) / span if span > 0 else float("nan")
    states = Counter(row.state or "none" for row in joins)
    print(
        f"backend={backend} broker={embedded}{address.host}:{address.port} "
        f"rate={rate:g}/s for {seconds:g}s ({count} presses over {len(DEVICES)} buttons)"
    )
    print(
        "  the engine's tick is woken on each new incident (InboundRouter -> service.wake),"
        " so latency is not bounded by the 1 s tick"
    )
    print(
        f"  presses published: {len(published.sent)} (PUBACKed {published.acked}),"
        f" achieved rate {achieved:.2f}/s, worst publish {published.max_behind_ms:.1f} ms behind schedule"
    )
    print(f"  incidents committed: {len(joins)}")
    print(
        f"  SMS received by {server}: {len(messages)}"
        f" (matched to a press: {len(matched)}, all arrived within {settle_s:g}s: {complete});"
        f" unit SMS notifications by state: {dict(sorted(states.items()))}"
    )
    if latencies:
        print(
            f"  press publish -> SMS request at {server}:"
            f" p50 {percentile(latencies, 50):.1f} ms, p90 {percentile(latencies, 90):.1f} ms,"
            f" p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms"
            f" (min {min(latencies):.1f} ms, n={len(latencies)})"
        )
        for name, values in stages.items():
            if values:
                print(
                    f"    {name:<24} p50 {percentile(values, 50):7.1f}  p90 {percentile(values, 90):7.1f}"
                    f"  p99 {percentile(values, 99):7.1f}  max {max(values):7.1f} ms"
                )
        check = (
            f", cross-checked by a store hook: hook - created_at p50 {percentile(hook_skew, 50):.2f} ms,"
            f" max {max(hook_skew):.2f} ms"
            if hook_skew
            else " (no store hook on this server)"
        )
        print(
            f"  last SMS {(last_arrival - published.last) * 1000:.0f} ms after the last publish;"
            f" arrival from the server's created_at{check}"
        )
    if gateway is None:
        statuses = [200 if w.ok else 0 for w in twilio.store.webhooks]
    else:
        statuses = [int(d["status"]) for d in gateway.store.deliveries]
    failed = [s for s in statuses if not 200 <= s < 300]
    print(f"  status callbacks to the service: {len(statuses)} ({len(failed)} not 2xx)")
    return latencies


def report_logs(tally: LogTally) -> None:
    if not tally.counts:
        print("  log records at WARNING or above: none")
        return
    print(f"  log records at WARNING or above: {sum(tally.counts.values())}")
    for key, n in tally.counts.most_common(10):
        name, level, template = key
        expected = "  (expected: repeat 0 and nobody answers)" if "exhausted" in template else ""
        print(f"    {n:6d} x {level} {name}: {tally.examples[key]}{expected}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--mqtt", help="broker URL (default: the embedded broker)")
    parser.add_argument("--rate", type=float, default=50, help="presses per second (default 50)")
    parser.add_argument("--seconds", type=float, default=30, help="how long to publish (default 30)")
    parser.add_argument("--channel", choices=("sms", "chat"), default="sms", help="the step's channel (chat: WhatsApp)")
    parser.add_argument("--settle", type=float, default=120, help="seconds to wait after the last press for every SMS")
    parser.add_argument(
        "--provider",
        choices=("twilio", "sms_gateway", "both"),
        default="twilio",
        help="where the SMS go: the Twilio-compatible server, the SMS gateway stand-in, or one run each",
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    providers = ("twilio", "sms_gateway") if args.provider == "both" else (args.provider,)
    results = {}
    for provider in providers:
        print(f"[provider {provider}]")
        results[provider] = run(args.database, args.mqtt, args.rate, args.seconds, args.settle, provider, args.channel)
    if len(results) > 1:
        print("press publish -> first alert SMS at the provider, per provider:")
        for provider, latencies in results.items():
            summary = (
                f"p50 {percentile(latencies, 50):.1f} ms, p90 {percentile(latencies, 90):.1f} ms,"
                f" p99 {percentile(latencies, 99):.1f} ms, max {max(latencies):.1f} ms (n={len(latencies)})"
                if latencies
                else "no SMS matched"
            )
            print(f"  {provider:<12} {summary}")


if __name__ == "__main__":
    main()
