"""What the pipeline, burst and scale-out benchmarks share: processes, clocks and counting.

Everything that is not the service under test runs in a process of its own, so it never takes
the GIL from the service: the Twilio-compatible server (or the SMS Gateway stand-in), the paho
publishers, and the floor relay (a bare paho subscriber -> HTTP POST, the least any MQTT -> SMS
service can do). The service runs either in the bench process (``InProcessService``: its SQL
statements and commits are counted with engine events) or as real ``python -m dispatch serve``
processes (``ServeProcesses``) on a shared MQTT subscription.

Clocks: every process on one machine reads the same ``CLOCK_MONOTONIC`` (``time.monotonic``
on Linux is system-wide), so a latency is arrival monotonic - publish monotonic, taken in two
processes. ``time.time()`` is stamped beside it at both ends and the same latency on the wall
clock is printed as a cross-check (they differ only if the wall clock was stepped mid-run).
Database timestamps (the stages) are wall clock, compared with the publisher's wall stamps.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import multiprocessing
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import distinct, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from devices.gateway import BrokerAddress
from foundation.db import make_engine, make_session_factory, transaction

ROOT = Path(__file__).resolve().parent.parent
ROSTER = ROOT / "config" / "roster.example.yaml"
ACCOUNT_SID = "AC" + "1" * 32
DEVICES = [f"BTN-{i:04d}" for i in range(1, 13)]
SERVICES = ("police", "disaster", "ambulance")
PRESS_TOPIC = "devices/{device}/press"
# spawn, not fork: the bench process runs threads (the service, paho loops) a fork would copy mid-flight.
SPAWN = multiprocessing.get_context("spawn")


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """A command line with the options every benchmark has: where the database and the broker are."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--mqtt", help="broker URL (default: an embedded broker)")
    return parser


def add_load_arguments(parser: argparse.ArgumentParser, timeout_s: float) -> None:
    """Options of the runs that load the service with many presses (burst, scale-out)."""
    parser.add_argument("--clients", type=int, default=1, help="publishing paho clients, one process each")
    parser.add_argument(
        "--timeout", type=float, default=timeout_s, help=f"seconds to wait for every SMS (default {timeout_s:g})"
    )
    parser.add_argument("--progress", type=float, default=10, help="print progress every this many seconds")


def fresh_run(database: str | None, mqtt_url: str | None, count: int, heading: str, **options: Any) -> Run:
    """``run_service`` on a fresh database and broker, after a line saying where and how loaded."""
    with environment(database, mqtt_url) as env:
        print(f"{heading}: backend={env.backend} broker={env.broker_label}; load average {load_average()}", flush=True)
        return run_service(env, count, **options)


def one_step_policy(channel: str) -> list[dict[str, Any]]:
    """One SMS (or chat) to the chosen unit at once, nothing after: a press costs exactly one page."""
    return [{"after_s": 0, "action": "notify_unit", "channels": [channel]}]


def escalation_settings(channel: str) -> dict[str, Any]:
    return {"repeat": 0, "policies": {service: one_step_policy(channel) for service in SERVICES}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"p50 {percentile(values, 50):.1f} ms, p90 {percentile(values, 90):.1f} ms,"
        f" p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms (n={len(values)})"
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def reset_postgresql(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()


class Stamp(NamedTuple):
    wall: float  # time.time()
    mono: float  # time.monotonic(): one base for every process on this machine

    @classmethod
    def now(cls) -> Stamp:
        return cls(time.time(), time.monotonic())


# -- the provider's server, in its own process ------------------------------------------------


class Arrival(NamedTuple):
    key: str  # the Twilio message sid, or the gateway message id (ours)
    body: str
    at: Stamp  # taken by a hook when the server stored the request
    created: float  # the server's own created_at (epoch seconds), a second wall-clock witness


def _twilio_store(arrivals: list[Arrival]) -> Any:
    from responders.sandbox import SandboxStore

    class StampingStore(SandboxStore):
        def add_message(self, message: Any) -> Any:
            at = Stamp.now()
            stored = super().add_message(message)
            if message.direction == "outbound-api":
                arrivals.append(Arrival(message.sid, message.body, at, message.created_at.timestamp()))
            return stored

    return StampingStore()


class _StampingList(list[Any]):
    """The gateway stand-in appends each SMS it accepts to its store's list: stamp it there."""

    def __init__(self, arrivals: list[Arrival]) -> None:
        super().__init__()
        self._arrivals = arrivals

    def append(self, sms: Any) -> None:
        at = Stamp.now()
        super().append(sms)
        if sms.direction == "outbound":
            self._arrivals.append(Arrival(sms.id, sms.text, at, sms.created_at.timestamp()))


def _provider_main(conn: Connection, kind: str, config: dict[str, Any]) -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request otherwise
    arrivals: list[Arrival] = []
    callbacks: Callable[[], list[int]]
    if kind == "twilio":
        from responders import whatsapp
        from responders.sandbox import run_sandbox_server, sandbox_api_base, stop_sandbox_server

        store = _twilio_store(arrivals)
        thread, server = run_sandbox_server(
            "127.0.0.1",
            0,
            store,
            ACCOUNT_SID,
            config["token"],
            config["webhook_base"],
            content_templates=whatsapp.sandbox_templates(whatsapp.SANDBOX_TEMPLATES),
        )
        conn.send({"url": sandbox_api_base(server)})

        def stop() -> None:
            stop_sandbox_server(thread, server)

        def callbacks() -> list[int]:
            return [200 if w.ok else 0 for w in store.webhooks]

    else:
        from responders.sandbox.sms_gateway import GatewayStore, run_standalone

        gateway = GatewayStore(messages=_StampingList(arrivals))
        url, stop = run_standalone(gateway, config["username"], config["password"], config["signing_key"])
        conn.send({"url": url})

        def callbacks() -> list[int]:
            with gateway.lock:
                return [int(d["status"]) for d in gateway.deliveries]

    while True:
        command = conn.recv()
        if command == "count":
            conn.send(len(arrivals))
        elif command == "arrivals":
            conn.send(list(arrivals))
        elif command == "callbacks":
            conn.send(callbacks())
        else:
            stop()
            conn.send("stopped")
            return


class ProviderServer:
    """The Twilio-compatible server (``kind="twilio"``) or the SMS Gateway stand-in, in its own process.

    A hook stamps each outbound SMS as the server stores it; the stamps come back on request.
    """

    def __init__(self, kind: str = "twilio", webhook_base: str = "http://127.0.0.1:9") -> None:
        self.kind = kind
        self.token = secrets.token_hex(16)
        self.username, self.password = "bench", secrets.token_urlsafe(18)
        self.signing_key = secrets.token_urlsafe(32)
        self._conn, child = SPAWN.Pipe()
        config = {
            "token": self.token,
            "webhook_base": webhook_base,
            "username": self.username,
            "password": self.password,
            "signing_key": self.signing_key,
        }
        self._process = SPAWN.Process(target=_provider_main, args=(child, kind, config), daemon=True)
        self._process.start()
        self.url: str = self._conn.recv()["url"]
        self._lock = threading.Lock()

    def _ask(self, command: str) -> Any:
        with self._lock:
            self._conn.send(command)
            return self._conn.recv()

    def count(self) -> int:
        return int(self._ask("count"))

    def arrivals(self) -> list[Arrival]:
        return list(self._ask("arrivals"))

    def callbacks(self) -> list[int]:
        return list(self._ask("callbacks"))

    def service_settings(self) -> dict[str, Any]:
        """What the service needs to send its pages here."""
        if self.kind == "twilio":
            return {"twilio": {"account_sid": ACCOUNT_SID, "auth_token": self.token, "api_base": self.url}}
        return {
            "sms_gateway": {
                "url": self.url,
                "username": self.username,
                "password": self.password,
                "signing_key": self.signing_key,
            }
        }

    def wait_for(self, expected: int, timeout_s: float, progress_every_s: float = 0) -> bool:
        """Until ``expected`` SMS arrived (True) or ``timeout_s`` passed; prints progress when asked."""
        start = time.monotonic()
        shown = start
        while (n := self.count()) < expected:
            now = time.monotonic()
            if now - start > timeout_s:
                return False
            if progress_every_s and now - shown >= progress_every_s:
                shown = now
                print(f"    ... {n}/{expected} SMS at the server after {now - start:.0f} s", flush=True)
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        if self._process.is_alive():
            with suppress(EOFError, OSError):
                self._ask("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


# -- publishers, each in its own process ----------------------------------------------------------


def press_ids(tag: str, count: int) -> list[str]:
    return [f"{tag}-{i:06d}" for i in range(count)]


def _connected_client(url: str, client_id: str) -> mqtt.Client:
    address = BrokerAddress.from_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    client.username_pw_set(address.username or "bench", address.password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(address.host, address.port)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"{client_id} could not connect to the broker")
    return client


def _publish_main(
    conn: Connection, url: str, client_id: str, topic: str, presses: list[tuple[str, str]], rate: float
) -> None:
    client = _connected_client(url, client_id)
    acked = [0, 0.0]  # PUBACKs, monotonic time of the last one

    def on_publish(*_: Any) -> None:
        acked[0] += 1
        acked[1] = time.monotonic()

    client.on_publish = on_publish
    conn.send("ready")
    start_at = conn.recv()  # a monotonic instant shared by every publisher
    time.sleep(max(0.0, start_at - time.monotonic()))
    sent: dict[str, Stamp] = {}
    behind = 0.0
    ts = datetime.now(UTC).isoformat()
    for i, (press_id, device) in enumerate(presses):
        if rate > 0:
            due = start_at + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            behind = max(behind, time.monotonic() - due)
        body = json.dumps({"press_id": press_id, "ts": ts, "battery": 90})
        sent[press_id] = Stamp.now()
        client.publish(topic.format(device=device), body, qos=1)
    deadline = time.monotonic() + 120
    while acked[0] < len(presses) and time.monotonic() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    conn.send({"sent": sent, "acked": acked[0], "last_ack": acked[1], "behind": behind})


@dataclass
class Published:
    sent: dict[str, Stamp]  # press_id -> just before publish()
    acked: int
    first: float  # monotonic, first publish
    last: float  # monotonic, last publish
    broker_had_all: float  # monotonic, the last PUBACK (the broker holds every press)
    max_behind_ms: float  # worst lag of a publish behind its schedule (paced runs)

    @property
    def achieved_rate(self) -> float:
        span = self.last - self.first
        return (len(self.sent) - 1) / span if span > 0 else float("nan")


def publish(url: str, ids: list[str], rate: float = 0, clients: int = 1, topic: str = PRESS_TOPIC) -> Published:
    """Publish one press per id (QoS 1) from ``clients`` paho clients, each in its own process.

    ``rate`` presses per second in all (0: as fast as the clients go), rotating over the example
    buttons. Returns when every client has its PUBACKs (or gave up after 120 s).
    """
    presses = [(press_id, DEVICES[i % len(DEVICES)]) for i, press_id in enumerate(ids)]
    links: list[tuple[Connection, Any]] = []
    for k in range(clients):
        parent, child = SPAWN.Pipe()
        process = SPAWN.Process(
            target=_publish_main,
            args=(child, url, f"bench-pub-{uuid.uuid4().hex[:8]}", topic, presses[k::clients], rate / clients),
            daemon=True,
        )
        process.start()
        links.append((parent, process))
    for parent, _ in links:
        if parent.recv() != "ready":
            raise RuntimeError("a publisher did not start")
    start_at = time.monotonic() + 0.05
    for parent, _ in links:
        parent.send(start_at)
    sent: dict[str, Stamp] = {}
    acked, last_ack, behind = 0, 0.0, 0.0
    for parent, process in links:
        result = parent.recv()
        process.join(10)
        sent.update(result["sent"])
        acked += result["acked"]
        last_ack = max(last_ack, result["last_ack"])
        behind = max(behind, result["behind"])
    monos = [s.mono for s in sent.values()]
    return Published(sent, acked, min(monos), max(monos), last_ack, behind * 1000)


# -- the floor: a bare paho -> HTTP relay ------------------------------------------------------------


def _relay_main(conn: Connection, url: str, topic: str, api_base: str, token: str) -> None:
    import requests

    http = requests.Session()  # keep-alive, as any sensible relay would
    endpoint = f"{api_base}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    failures = [0]

    def on_message(_client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        press_id = json.loads(message.payload)["press_id"]
        answer = http.post(
            endpoint, data={"To": "+15005550001", "From": "+15005550006", "Body": press_id}, auth=(ACCOUNT_SID, token)
        )
        failures[0] += answer.status_code >= 300

    subscribed = threading.Event()
    client = _connected_client(url, f"bench-floor-{uuid.uuid4().hex[:8]}")
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.subscribe(topic, qos=1)
    subscribed.wait(10)
    conn.send("subscribed")
    conn.recv()
    client.disconnect()
    client.loop_stop()
    conn.send(failures[0])


def run_floor(url: str, rate: float, count: int, settle_s: float) -> list[float]:
    """The floor at ``rate``: press publish -> the relay's POST stored by a Twilio-compatible server (ms)."""
    tag = f"floor-{uuid.uuid4().hex[:8]}"
    server = ProviderServer("twilio")
    parent, child = SPAWN.Pipe()
    relay = SPAWN.Process(
        target=_relay_main, args=(child, url, f"bench-floor/{tag}/+/press", server.url, server.token), daemon=True
    )
    relay.start()
    try:
        if not parent.poll(30) or parent.recv() != "subscribed":
            raise RuntimeError("the floor relay did not subscribe")
        published = publish(url, press_ids(tag, count), rate, topic=f"bench-floor/{tag}/{{device}}/press")
        complete = server.wait_for(count, settle_s)
        arrivals = {a.body: a for a in server.arrivals()}
        parent.send("stop")
        failures = parent.recv() if parent.poll(10) else "?"
    finally:
        relay.join(10)
        if relay.is_alive():
            relay.kill()
        server.stop()
    latencies = [(arrivals[p].at.mono - s.mono) * 1000 for p, s in published.sent.items() if p in arrivals]
    print(
        f"  floor (bare paho -> HTTP POST relay, own process): {len(arrivals)}/{count} arrived"
        f" (all within {settle_s:g}s: {complete}, relay POSTs not 2xx: {failures}),"
        f" achieved rate {published.achieved_rate:.1f}/s"
    )
    return latencies


# -- the service under test ------------------------------------------------------------------------------


class SqlCounter:
    """SQL statements and commits on one engine, from its events; statements also by their shape,
    with the wall time each shape spent in the database driver (to see which query grows)."""

    def __init__(self, engine: Engine) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.commits = 0
        self.shapes: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self._started = threading.local()
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "after_cursor_execute", self._finished)
        event.listen(engine, "commit", self._commit)

    def _statement(self, _connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        shape = " ".join(statement.split())[:110]
        self._started.at = (shape, time.perf_counter())
        with self._lock:
            self.statements += 1
            self.shapes[shape] += 1

    def _finished(self, *_: Any) -> None:
        started = getattr(self._started, "at", None)
        if started is not None:
            shape, at = started
            with self._lock:
                self.seconds[shape] += time.perf_counter() - at

    def report_shapes(self, presses: int, top: int = 15) -> None:
        """Where the statements go: the most frequent shapes, per press, and the slowest in total."""
        with self._lock:
            common = self.shapes.most_common(top)
            slowest = self.seconds.most_common(top)
            counts = dict(self.shapes)
        print(f"  SQL statements per press by shape (top {top}, over the run):")
        for shape, n in common:
            print(f"    {n / presses:6.2f}  {shape}")
        print(f"  SQL time by shape (top {top}): total s, ms per statement")
        for shape, seconds in slowest:
            print(f"    {seconds:8.2f} s {seconds * 1000 / counts[shape]:7.2f} ms  {shape}")

    def _commit(self, *_: Any) -> None:
        with self._lock:
            self.commits += 1

    def read(self) -> tuple[int, int]:
        with self._lock:
            return self.statements, self.commits


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

    def report(self) -> None:
        print(f"  log records at WARNING or above: {sum(self.counts.values()) or 'none'}")
        for (name, level, template), n in self.counts.most_common(10):
            expected = "  (expected: repeat 0 and nobody answers)" if "exhausted" in template else ""
            print(f"    {n:6d} x {level} {name}: {self.examples[(name, level, template)]}{expected}")


@dataclass
class Environment:
    """Where a run happens: a database and a broker (an embedded one started here when none is given)."""

    database: str
    mqtt_url: str
    tmp: Path
    backend: str
    broker_label: str


@contextmanager
def environment(database: str | None, mqtt_url: str | None) -> Iterator[Environment]:
    """A fresh database (``postgresql...``: schema public DROPPED and recreated) and a broker."""
    from devices.broker import EmbeddedBroker

    with tempfile.TemporaryDirectory() as tmp:
        if database and database.startswith("postgresql"):
            reset_postgresql(database)
        url = database or f"sqlite:///{tmp}/bench.sqlite3"
        broker = None
        if mqtt_url is None:
            broker = EmbeddedBroker(Path(tmp) / "broker", free_port())
            mqtt_url = broker.start()
        address = BrokerAddress.from_url(mqtt_url)
        label = f"{'embedded ' + broker.kind + ' ' if broker else ''}{address.host}:{address.port}"
        try:
            yield Environment(url, mqtt_url, Path(tmp), url.split(":", 1)[0].split("+", 1)[0], label)
        finally:
            if broker is not None:
                broker.stop()


def prepare_database(url: str) -> None:
    """Migrate and import the example roster before any service process starts (no race on upgrade)."""
    from dispatch import database
    from dispatch.roster import apply_roster, load_roster

    engine = make_engine(url)
    database.upgrade(engine)
    with transaction(make_session_factory(engine)) as session:
        apply_roster(session, load_roster(ROSTER))
    engine.dispose()


def service_settings(env: Environment, servers: list[ProviderServer], channel: str, public_url: str) -> dict[str, Any]:
    """The settings every service of a run shares: the one-step policy and this run's provider servers."""
    settings: dict[str, Any] = {
        "database": {"url": env.database},
        "mqtt": {"url": env.mqtt_url},
        "public_url": public_url,
        "escalation": escalation_settings(channel),
    }
    for server in servers:
        settings.update(server.service_settings())
    if channel == "chat":  # the roster's AMB-01 prefers WhatsApp whenever it exists
        from responders import whatsapp

        settings["whatsapp"] = {"from_number": "+15005550010", "templates": whatsapp.SANDBOX_TEMPLATES}
    return settings


class InProcessService:
    """A full DispatchService in the bench process, with its SQL statements, commits and CPU counted."""

    def __init__(self, env: Environment, settings: dict[str, Any], web_port: int) -> None:
        from dispatch.service import DispatchService
        from foundation.settings import load_settings

        overrides = {
            **settings,
            "data_dir": str(env.tmp / "service"),
            "mqtt": {**settings["mqtt"], "client_id": f"bench-{uuid.uuid4().hex[:8]}"},
            "web": {"host": "127.0.0.1", "port": web_port},
        }
        self.service = DispatchService(load_settings(environ={}, overrides=overrides))
        self.processes = 1
        self.sql: SqlCounter | None = None

    def start(self) -> None:
        from dispatch.roster import apply_roster, load_roster

        self.service.start()
        if not self.service.gateway.wait_connected(10):
            raise RuntimeError("the service did not connect to the broker within 10 s")
        with transaction(self.service.sessions) as session:
            apply_roster(session, load_roster(ROSTER))
        self.sql = SqlCounter(self.service.engine)

    def cpu_seconds(self) -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # the publishers and servers are other processes
        return usage.ru_utime + usage.ru_stime

    def stop(self) -> None:
        self.service.stop(forget_mqtt_session=True)


class ServeProcesses:
    """``count`` real ``python -m dispatch serve`` processes on one database and one shared subscription."""

    def __init__(self, env: Environment, settings: dict[str, Any], ports: list[int]) -> None:
        self.env, self.ports, self.processes = env, ports, len(ports)
        overlay = copy.deepcopy(settings)
        # One group per run: a group shared with another run on the same broker would split the presses.
        overlay["mqtt"]["shared_group"] = f"bench-{uuid.uuid4().hex[:8]}"
        token = overlay.get("twilio", {}).pop("auth_token", None)  # environment only, never in a file
        self._overlay = env.tmp / f"overlay-{uuid.uuid4().hex[:6]}.yaml"
        self._overlay.write_text(yaml.safe_dump(overlay))
        self._token = token
        self.client_ids = [f"bench-worker-{i}-{uuid.uuid4().hex[:6]}" for i in range(len(ports))]
        self.logs = [env.tmp / f"{client_id}.log" for client_id in self.client_ids]
        self._children: list[subprocess.Popen[bytes]] = []
        self.sql: SqlCounter | None = None  # another process's engine: not countable from here

    def start(self, timeout_s: float = 60) -> None:
        for index, (port, client_id, log) in enumerate(zip(self.ports, self.client_ids, self.logs, strict=True)):
            env = {
                **os.environ,
                "DISPATCH_CONFIG": str(self._overlay),
                "DISPATCH_SECRET_KEY": "bench-secret-shared-by-workers",
                "DISPATCH__MQTT__CLIENT_ID": client_id,
                "DISPATCH__DATA_DIR": str(self.env.tmp / f"var-{index}"),
                "TWILIO_AUTH_TOKEN": self._token or "",
            }
            with log.open("wb") as out:
                self._children.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "dispatch", "serve", "--port", str(port)],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=ROOT,
                    )
                )
        deadline = time.monotonic() + timeout_s
        for child, log in zip(self._children, self.logs, strict=True):
            while "mqtt subscribed" not in log.read_text(errors="replace"):
                if child.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"a dispatch serve process did not subscribe; its log:\n{tail}")
                time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """User + system CPU of every serve process so far, from /proc (Linux)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for child in self._children:
            try:
                fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def log_summary(self) -> str:
        levels: Counter[str] = Counter()
        examples: dict[str, str] = {}  # the first line of each unexpected level
        received = []  # presses per process: how the shared subscription split them
        for log in self.logs:
            text = log.read_text(errors="replace")
            received.append(text.count("/press bytes="))
            for line in text.splitlines():
                for level in ("WARNING", "ERROR", "CRITICAL"):
                    if f" {level} " in line:
                        # repeat 0 and nobody answers: one per incident, expected
                        key = "ERROR escalation exhausted (expected)" if "exhausted" in line else level
                        levels[key] += 1
                        examples.setdefault(key, line[:300])
        counts = ", ".join(f"{n} {level}" for level, n in sorted(levels.items())) or "none"
        shown = "".join(f"\n    first {key}: {line}" for key, line in examples.items() if key in ("ERROR", "CRITICAL"))
        return f"{counts}; presses received per process: {received}{shown}"

    def stop(self) -> None:
        from devices.gateway import MqttGateway

        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        for client_id in self.client_ids:  # the broker keeps each persistent session otherwise
            MqttGateway(url=self.env.mqtt_url, client_id=client_id, subscriptions=(), handler=print)._forget_session()


# -- counting: exactly once, latencies -----------------------------------------------------------------


@dataclass
class PressOutcome:
    incidents: set[int] = field(default_factory=set)
    opened: float | None = None  # wall clock, the first incident's opened_at
    written: float | None = None  # its first unit page written
    claimed: float | None = None  # claimed by a sender
    arrivals: list[Arrival] = field(default_factory=list)  # that page (or pages) at the server


@dataclass
class Outcome:
    """Every press of a run joined to its incidents, their unit pages and the server's arrivals."""

    presses: dict[str, PressOutcome]
    sms_per_incident: Counter[int]
    stray: int  # outbound SMS at the server that no page in the database claims (sent twice?)
    foreign: int  # pages for presses not of this run (a shared broker: someone else's button)

    @property
    def lost_presses(self) -> int:
        return sum(not p.incidents for p in self.presses.values())

    @property
    def incidents_without_sms(self) -> int:
        return sum(self.sms_per_incident[i] == 0 for p in self.presses.values() for i in p.incidents)

    @property
    def duplicate_incidents(self) -> int:
        """Presses with more than one incident."""
        return sum(len(p.incidents) > 1 for p in self.presses.values())

    @property
    def duplicate_sms(self) -> int:
        """Incidents with more than one first SMS at the server."""
        return sum(n > 1 for n in self.sms_per_incident.values())

    def first_arrival(self, press_id: str) -> Arrival | None:
        arrivals = self.presses[press_id].arrivals
        return min(arrivals, key=lambda a: a.at.mono) if arrivals else None

    def paged(self) -> int:
        return sum(bool(p.arrivals) for p in self.presses.values())

    def exactly_once(self) -> str:
        incidents = sum(len(p.incidents) for p in self.presses.values())
        return (
            f"presses {len(self.presses)}, incidents {incidents}, first SMS at the server"
            f" {sum(self.sms_per_incident.values())};"
            f" LOST: {self.lost_presses} presses without an incident, {self.incidents_without_sms} incidents"
            f" without a first SMS; DUPLICATES: {self.duplicate_incidents} presses with > 1 incident,"
            f" {self.duplicate_sms} incidents with > 1 first SMS, {self.stray} SMS at the server matching no page"
            f" (and {self.foreign} pages for presses not of this run, from other clients of the broker)"
        )


def count_outcome(sessions: sessionmaker[Session], ids: list[str], tag: str, arrivals: list[Arrival]) -> Outcome:
    from dispatch.models import Incident, Notification

    presses = {press_id: PressOutcome() for press_id in ids}
    with sessions() as session:
        rows = session.execute(
            select(
                Incident.id,
                Incident.press_id,
                Incident.opened_at,
                Notification.created_at,
                Notification.claimed_at,
                Notification.provider_sid,
            )
            .outerjoin(
                Notification,
                (Notification.incident_id == Incident.id)
                & (Notification.channel != "voice")
                & (Notification.recipient_kind == "unit"),
            )
            .where(Incident.press_id.like(f"{tag}-%"))
            .order_by(Incident.id, Notification.id)
        ).all()
    by_key = {a.key: a for a in arrivals}
    sms_per_incident: Counter[int] = Counter()
    claimed_keys: set[str] = set()
    for incident_id, press_id, opened_at, written_at, claimed_at, sid in rows:
        press = presses.get(press_id or "")
        if press is None:
            continue
        if incident_id not in press.incidents:
            press.incidents.add(incident_id)
            sms_per_incident[incident_id] += 0
        if press.opened is None:
            press.opened = opened_at.timestamp()
        if press.written is None and written_at is not None:
            press.written = written_at.timestamp()
            press.claimed = claimed_at.timestamp() if claimed_at is not None else None
        if sid and sid in by_key:
            claimed_keys.add(sid)
            sms_per_incident[incident_id] += 1
            press.arrivals.append(by_key[sid])
    with sessions() as session:
        known = set(session.scalars(select(Notification.provider_sid).where(Notification.provider_sid.is_not(None))))
    others = [a.key for a in arrivals if a.key not in claimed_keys]
    return Outcome(
        presses, sms_per_incident, sum(key not in known for key in others), sum(key in known for key in others)
    )


def paged_presses(sessions: sessionmaker[Session], tag: str) -> int:
    """Presses of this run whose first unit page the provider has accepted (it answered with a sid)."""
    from dispatch.models import Incident, Notification

    with sessions() as session:
        return (
            session.scalar(
                select(func.count(distinct(Incident.press_id)))
                .join(Notification, Notification.incident_id == Incident.id)
                .where(
                    Incident.press_id.like(f"{tag}-%"),
                    Notification.provider_sid.is_not(None),
                    Notification.channel != "voice",
                    Notification.recipient_kind == "unit",
                )
            )
            or 0
        )


def wait_until_paged(
    server: ProviderServer, sessions: sessionmaker[Session], tag: str, count: int, timeout_s: float, progress_s: float
) -> bool:
    """Until every press of the run has its SMS at the server (True) or ``timeout_s`` passed.

    The server's count comes first (cheap, no load on the service); it includes SMS for other
    clients' presses on a shared broker, so the database confirms that they are this run's.
    """
    deadline = time.monotonic() + timeout_s
    while server.wait_for(count, deadline - time.monotonic(), progress_s):
        if paged_presses(sessions, tag) >= count:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return False


def latencies(outcome: Outcome, published: Published) -> tuple[list[float], list[float]]:
    """Press publish -> first SMS at the server (ms), on the shared monotonic clock and on the wall clock."""
    mono: list[float] = []
    wall: list[float] = []
    for press_id, sent in published.sent.items():
        first = outcome.first_arrival(press_id)
        if first is not None:
            mono.append((first.at.mono - sent.mono) * 1000)
            wall.append((first.at.wall - sent.wall) * 1000)
    return mono, wall


def last_arrival(outcome: Outcome) -> float | None:
    """Monotonic time of the last first SMS of the run."""
    firsts = [a.at.mono for p in outcome.presses if (a := outcome.first_arrival(p)) is not None]
    return max(firsts) if firsts else None


def throughput(outcome: Outcome, published: Published) -> float:
    """Presses fully paged per second: paged presses / (first publish -> last first SMS)."""
    end = last_arrival(outcome)
    if end is None or end <= published.first:
        return 0.0
    return outcome.paged() / (end - published.first)


# -- one run: a service, its provider server, the presses, the counts ------------------------------------


@dataclass
class Run:
    published: Published
    outcome: Outcome
    complete: bool  # every press had its SMS at the server before the timeout
    cpu_s: float  # of the service process(es), over publishing and paging
    sql: tuple[int, int] | None  # statements, commits (in-process only)
    callbacks: list[int]  # HTTP statuses of the server's status callbacks to the service
    server_kind: str

    @property
    def presses(self) -> int:
        return len(self.published.sent)

    def exactly_once(self) -> str:
        caveat = "" if self.complete else " -- the timeout ended the wait: LOST counts unfinished work too"
        return self.outcome.exactly_once() + caveat

    def per_press(self) -> str:
        n = self.presses
        sql = (
            f"{self.sql[0] / n:.1f} SQL statements, {self.sql[1] / n:.2f} commits ({self.sql[0]} and {self.sql[1]}"
            " over the run), "
            if self.sql is not None
            else "(SQL not countable in other processes) "
        )
        return f"{sql}{self.cpu_s / n * 1000:.1f} ms CPU ({self.cpu_s:.1f} s)"


def run_service(
    env: Environment,
    count: int,
    prefix: str,
    *,
    rate: float = 0,
    clients: int = 1,
    processes: int = 0,
    channel: str = "sms",
    provider: str = "twilio",
    timeout_s: float = 600,
    progress_every_s: float = 10,
) -> Run:
    """Start the service (``processes`` 0: in this process; else that many ``dispatch serve``), publish
    ``count`` presses at ``rate`` (0: as fast as possible) from ``clients`` publishers, wait for every SMS
    (at most ``timeout_s``), count, stop everything."""
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ids = press_ids(tag, count)
    ports = [free_port() for _ in range(max(1, processes))]
    public_url = f"http://127.0.0.1:{ports[0]}"  # Twilio calls one public URL (a load balancer in production)
    servers = [ProviderServer("twilio", public_url)]
    if provider == "sms_gateway":
        servers.append(ProviderServer("sms_gateway"))
    server = servers[-1]
    tally = LogTally()
    root = logging.getLogger()
    service: InProcessService | ServeProcesses | None = None
    # The bench's own reads go through an engine of their own: not counted as the service's SQL.
    engine = make_engine(env.database)
    reader = make_session_factory(engine)
    try:
        settings = service_settings(env, servers, channel, public_url)
        if processes:
            prepare_database(env.database)
            service = ServeProcesses(env, settings, ports)
        else:
            root.addHandler(tally)  # also keeps logging's last-resort handler from printing each record
            root.setLevel(logging.WARNING)
            service = InProcessService(env, settings, ports[0])
        service.start()
        sql0 = service.sql.read() if service.sql is not None else (0, 0)
        cpu0 = service.cpu_seconds()
        published = publish(env.mqtt_url, ids, rate, clients)
        complete = wait_until_paged(server, reader, tag, len(ids), timeout_s, progress_every_s)
        time.sleep(1.0)  # the last status callbacks: they are part of a press's work too
        sql1 = service.sql.read() if service.sql is not None else None
        cpu = service.cpu_seconds() - cpu0
        outcome = count_outcome(reader, ids, tag, server.arrivals())
        callbacks = server.callbacks()
    finally:
        if service is not None:
            service.stop()
        for each in servers:
            each.stop()
        root.removeHandler(tally)
        engine.dispose()
    if isinstance(service, ServeProcesses):
        print(f"  log lines of the serve processes at WARNING or above: {service.log_summary()}")
    else:
        tally.report()
        if service.sql is not None:
            service.sql.report_shapes(len(ids), top=int(os.environ.get("BENCH_SQL_SHAPES", "15")))
    sql = (sql1[0] - sql0[0], sql1[1] - sql0[1]) if sql1 is not None else None
    return Run(published, outcome, complete, cpu, sql, callbacks, server.kind)
