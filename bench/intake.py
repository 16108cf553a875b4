"""Intake benchmark: presses per second through a real broker into the database.

Starts a full service in-process, publishes N presses at QoS 1 from several
simulated buttons as fast as the broker accepts them, and reports
- throughput: presses committed per second (first publish -> last commit),
- receive-to-commit latency p50/p99, measured by the service's own histogram
  of each message's handling time (the time it holds the message unacknowledged),
- publish-to-status latency p50/p99 as a device sees it (includes broker queueing).

Usage:
    python bench/intake.py                       # SQLite file + embedded broker
    python bench/intake.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test \
                           --mqtt mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import event, func, select

from devices.broker import embedded_url
from devices.gateway import BrokerAddress
from dispatch.models import Incident
from dispatch.roster import apply_roster, load_roster
from dispatch.service import DispatchService
from foundation.db import transaction
from foundation.settings import load_settings

ROSTER = Path(__file__).resolve().parent.parent / "config" / "roster.example.yaml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def histogram_percentile(service: DispatchService, q: float) -> float:
    """Estimate a percentile from the service's receive-to-commit histogram (bucket upper bound)."""
    samples = {
        s.labels["le"]: s.value
        for metric in service.metrics.receive_to_commit.collect()
        for s in metric.samples
        if s.name.endswith("_bucket") and s.labels.get("kind") == "press"
    }
    total = samples["+Inf"]
    for bound, cumulative in sorted(((float(k), v) for k, v in samples.items()), key=lambda kv: kv[0]):
        if cumulative >= total * q / 100:
            return bound
    return float("inf")


def run(
    database: str | None,
    mqtt_url: str | None,
    presses: int,
    devices: int,
    rate: float,
    with_dispatch: bool,
    batch_max: int | None = None,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if database and database.startswith("postgresql"):
            from foundation.db import make_engine

            engine = make_engine(database)
            with engine.begin() as connection:
                connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            engine.dispose()
        overrides = {
            "data_dir": tmp,
            "database": {"url": database or f"sqlite:///{tmp}/bench.sqlite3"},
            "mqtt": {
                "url": mqtt_url,
                "client_id": f"bench-{uuid.uuid4().hex[:8]}",
                "embedded_port": 18839,
                **({"batch_max": batch_max} if batch_max else {}),
            },
            "web": {"port": 0},
            "twilio": {"sandbox": True},  # pages go to the built-in sandbox
        }
        service = DispatchService(load_settings(environ={}, overrides=overrides))
        service.start()
        assert service.gateway.wait_connected(10)
        with transaction(service.sessions) as session:
            apply_roster(session, load_roster(ROSTER))
        # The embedded broker refuses anonymous clients: log in with its generated credentials.
        url = mqtt_url or embedded_url(service.settings.data_dir, service.settings.mqtt.embedded_port)
        try:
            measure(service, url, presses, devices, rate, with_dispatch)
        finally:
            service.stop(forget_mqtt_session=True)


def measure(service: DispatchService, url: str, presses: int, devices: int, rate: float, with_dispatch: bool) -> None:
    address = BrokerAddress.from_url(url)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()
    # Unregistered buttons are recorded (and flagged for a human) but never dispatched, which
    # isolates intake; registered ones also run the escalation engine in the same process.
    prefix = "BTN" if with_dispatch else "BENCH"
    device_ids = [f"{prefix}-{i % 12 + 1:04d}" for i in range(devices)]

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        press_id = json.loads(message.payload).get("press_id")
        if press_id in sent and press_id not in seen:
            seen[press_id] = time.perf_counter()
            if len(seen) == presses:
                done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}")
    client.username_pw_set(address.username or "bench", address.password)
    client.on_message = on_message
    client.max_inflight_messages_set(200)
    client.connect(address.host, address.port)
    client.subscribe("devices/+/status", qos=1)
    client.loop_start()
    time.sleep(0.5)
    commits = {"all": 0, "intake": 0}
    # How long each intake transaction is open: on SQLite it holds the single write lock that long.
    began: list[float] = []
    held: list[float] = []

    def on_intake_thread() -> bool:
        return threading.current_thread().name.startswith("mqtt-handler")  # the gateway's handler thread

    def count_begin(_connection: object) -> None:
        if on_intake_thread():
            began[:] = [time.perf_counter()]

    def count_commit(_connection: object) -> None:
        commits["all"] += 1
        if on_intake_thread():
            commits["intake"] += 1
            if began:
                held.append((time.perf_counter() - began.pop()) * 1000)

    event.listen(service.engine, "begin", count_begin)
    event.listen(service.engine, "commit", count_commit)

    start = time.perf_counter()
    infos = []
    for i in range(presses):
        if rate:
            time.sleep(max(0.0, start + i / rate - time.perf_counter()))
        press_id = f"bench-{i}-{uuid.uuid4().hex[:6]}"
        sent[press_id] = time.perf_counter()
        body = json.dumps({"press_id": press_id, "lat": -7.75, "lon": 113.21, "battery": 90})
        infos.append(client.publish(f"devices/{device_ids[i % devices]}/press", body, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    finished = done.wait(timeout=max(60, presses / 20))
    elapsed = max(seen.values(), default=time.perf_counter()) - start
    client.disconnect()
    client.loop_stop()

    with service.sessions() as session:
        # Only ours: on a shared broker the service also receives other clients' presses.
        ours = Incident.press_id.like("bench-%")
        committed = session.execute(select(func.count()).select_from(Incident).where(ours)).scalar_one()
    device_latencies = [(seen[k] - sent[k]) * 1000 for k in seen]
    backend = service.engine.dialect.name
    pace = f"{rate:g}/s" if rate else "burst"
    scope = "intake + dispatch engine" if with_dispatch else "intake only (unregistered buttons)"
    print(f"backend={backend} broker={address.host}:{address.port} presses={presses} rate={pace} [{scope}]")
    print(f"  incidents committed: {committed} (all status replies seen: {finished})")
    if committed < presses:
        print(
            f"  WARNING: {presses - committed} presses never reached the service: the broker dropped them"
            " (Mosquitto's default max_queued_messages is 1000; config/mosquitto.conf sets 0)"
        )
    print(f"  throughput: {committed / elapsed:.0f} presses/s committed over {elapsed:.2f}s")
    per_press = max(committed, 1)
    print(
        f"  commits per press: intake {commits['intake'] / per_press:.3f} ({commits['intake']} on the MQTT handler"
        f" thread), whole process {commits['all'] / per_press:.3f} (mqtt.batch_max={service.settings.mqtt.batch_max})"
    )
    if held:
        print(
            f"  intake transaction open (on SQLite the write lock is held as long): p50 {percentile(held, 50):.1f} ms,"
            f" p99 {percentile(held, 99):.1f} ms, max {max(held):.1f} ms"
        )
    print(
        "  receive->commit (service histogram, bucket bound):"
        f" p50 <= {histogram_percentile(service, 50) * 1000:.1f} ms,"
        f" p99 <= {histogram_percentile(service, 99) * 1000:.1f} ms"
    )
    if device_latencies:
        print(
            f"  publish->status at the device (includes queueing behind the burst): "
            f"p50 {percentile(device_latencies, 50):.1f} ms, p99 {percentile(device_latencies, 99):.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--mqtt", help="broker URL (default: the embedded broker)")
    parser.add_argument("--presses", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=12)
    parser.add_argument("--rate", type=float, default=0, help="presses per second (default: burst)")
    parser.add_argument("--batch-max", type=int, help="mqtt.batch_max (default: the setting's; 1 = no group commit)")
    parser.add_argument("--with-dispatch", action="store_true", help="registered buttons: the engine pages units too")
    args = parser.parse_args()
    run(args.database, args.mqtt, args.presses, args.devices, args.rate, args.with_dispatch, args.batch_max)


if __name__ == "__main__":
    main()
