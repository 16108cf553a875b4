"""``dispatch serve --workers N``: N processes on one database and one broker, under one supervisor.

The supervisor's decisions are tested with stand-in children; exactly-once is tested with the
real thing: ``dispatch serve --workers 4`` on PostgreSQL and Mosquitto, 1,000 presses, the
real twilio SDK against a Twilio-compatible server in the test process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devices.broker import EmbeddedBroker
from dispatch.models import Incident, Notification
from dispatch.workers import Supervisor, refusal, restart_delay, worker_overrides
from foundation.settings import MqttSettings, load_settings
from tests.conftest import eventually, free_port
from tests.fleet import TwilioServer, publish_presses, service_env
from tests.responder_helpers import fast_escalation
from tests.service_process import ServiceProcess

needs_postgresql_and_mosquitto = pytest.mark.skipif(
    not os.environ.get("DISPATCH_TEST_DATABASE_URL", "").startswith("postgresql") or not shutil.which("mosquitto"),
    reason="--workers refuses SQLite and the embedded broker: set DISPATCH_TEST_DATABASE_URL (PostgreSQL) "
    "and install mosquitto",
)
SMS_THEN_VOICE = [
    {"after_s": 0, "action": "notify_unit", "channels": ["sms"]},
    {"after_s": 2, "action": "notify_unit", "channels": ["voice"]},
]


# -- what each worker runs with --------------------------------------------------------


def test_each_worker_gets_a_stable_client_id_of_its_own_and_the_default_shared_group() -> None:
    mqtt = MqttSettings(url="mqtt://broker:1883", client_id="dispatch-1")
    assert [worker_overrides(mqtt, k)["mqtt"]["client_id"] for k in (1, 2, 3)] == [
        "dispatch-1-w1",
        "dispatch-1-w2",
        "dispatch-1-w3",
    ]
    assert worker_overrides(mqtt, 1)["mqtt"]["shared_group"] == "dispatch"
    assert "url" not in worker_overrides(mqtt, 1)["mqtt"]  # no username: the URL stays


def test_a_configured_shared_group_is_kept() -> None:
    mqtt = MqttSettings(url="mqtt://broker:1883", client_id="d", shared_group="night-shift")
    assert worker_overrides(mqtt, 2)["mqtt"]["shared_group"] == "night-shift"


def test_when_the_username_is_the_client_id_each_worker_logs_in_as_its_own_id_with_the_same_password() -> None:
    # The shipped Mosquitto config makes the username the client id: one user per worker.
    mqtt = MqttSettings(url="mqtts://dispatch-1:s3cr%40t@broker:8883")
    assert worker_overrides(mqtt, 2)["mqtt"]["url"] == "mqtts://dispatch-1-w2:s3cr%40t@broker:8883"


def test_a_username_other_than_the_client_id_is_left_as_it_is() -> None:
    mqtt = MqttSettings(url="mqtt://ops:pw@broker:1883", client_id="dispatch-1")
    assert "url" not in worker_overrides(mqtt, 2)["mqtt"]


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({"DISPATCH_MQTT_URL": "mqtt://b:1883"}, "PostgreSQL"),
        ({"DISPATCH_DATABASE_URL": "postgresql+psycopg://db/x"}, "external broker"),
        (
            {
                "DISPATCH_DATABASE_URL": "postgresql+psycopg://db/x",
                "DISPATCH_MQTT_URL": "mqtt://b:1883",
                "DISPATCH__TWILIO__SANDBOX": "true",
            },
            "sandbox",
        ),
    ],
)
def test_several_workers_are_refused_on_sqlite_the_embedded_broker_and_the_sandbox(
    environ: dict[str, str], reason: str
) -> None:
    settings = load_settings(environ=environ)
    assert reason in (refusal(settings, 2) or "")
    assert refusal(settings, 1) is None


def test_postgresql_and_an_external_broker_run_several_workers() -> None:
    settings = load_settings(
        environ={"DISPATCH_DATABASE_URL": "postgresql+psycopg://db/x", "DISPATCH_MQTT_URL": "mqtt://b:1883"}
    )
    assert refusal(settings, 4) is None


def test_a_restart_waits_twice_as_long_after_each_failure_up_to_a_cap() -> None:
    assert [restart_delay(n, 1, 30) for n in (1, 2, 3, 4, 5, 6, 10)] == [1, 2, 4, 8, 16, 30, 30]


def test_serve_with_workers_on_sqlite_says_why_and_starts_nothing(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DISPATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'd.sqlite3'}",
        "DISPATCH__DATA_DIR": str(tmp_path / "var"),
    }
    env.pop("DISPATCH_MQTT_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "dispatch.cli", "serve", "--sandbox", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers needs PostgreSQL" in done.stderr
    assert not (tmp_path / "d.sqlite3").exists()


# -- the supervisor, with stand-in children ----------------------------------------------

CHILD = """
import signal, sys, time, pathlib
pathlib.Path(sys.argv[1], f"started-{sys.argv[2]}-{time.monotonic_ns()}").touch()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.05)
"""


def _stand_in(directory: Path) -> Callable[[int], list[str]]:
    return lambda index: [sys.executable, "-c", CHILD, str(directory), str(index)]


def _starts(directory: Path, index: int) -> int:
    return len(list(directory.glob(f"started-{index}-*")))


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Supervisor, threading.Event, list[int]]]:
    """Two stand-in workers under a running supervisor; the list receives its exit status."""
    supervisor = Supervisor(_stand_in(tmp_path), 2, backoff_min_s=0.1, started_within_s=0.5, poll_s=0.05)
    stop, status = threading.Event(), []
    runner = threading.Thread(target=lambda: status.append(supervisor.run(stop)))
    runner.start()
    eventually(lambda: _starts(tmp_path, 1) == 1 and _starts(tmp_path, 2) == 1)
    yield supervisor, stop, status
    stop.set()
    runner.join(timeout=30)


def test_a_worker_that_dies_is_restarted_and_a_stop_ends_every_worker_cleanly(
    supervised: tuple[Supervisor, threading.Event, list[int]], tmp_path: Path
) -> None:
    supervisor, stop, status = supervised
    first = supervisor.pids()
    os.kill(first[1], signal.SIGKILL)
    eventually(lambda: _starts(tmp_path, 2) == 2, timeout=10)
    assert _starts(tmp_path, 1) == 1  # the others run on undisturbed
    survivors = supervisor.pids()
    assert survivors[0] == first[0] and survivors[1] != first[1]
    stop.set()
    eventually(lambda: status, timeout=30)
    assert status == [0]
    for pid in survivors:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # gone and reaped


def test_a_worker_that_keeps_failing_at_start_ends_the_supervisor_with_status_1() -> None:
    failing = Supervisor(
        lambda _: [sys.executable, "-c", "raise SystemExit(3)"], 2, backoff_min_s=0.05, give_up_after=3, poll_s=0.05
    )
    started = time.monotonic()
    assert failing.run(threading.Event()) == 1
    assert time.monotonic() - started < 30
    assert failing.pids() == []  # the other worker was stopped too


# -- the real service: PostgreSQL, Mosquitto, four processes --------------------------------


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[str]:
    """A Mosquitto of this test's own (the shipped settings that matter: no queue limit, no Nagle).

    Not the shared test broker: there, other checkouts' tests press the same example buttons,
    and their bursts would land in this test's database and its counts.
    """
    broker = EmbeddedBroker(tmp_path / "broker", free_port(), prefer="mosquitto")
    yield broker.start()
    broker.stop()


@pytest.fixture
def workers_service(
    mosquitto: str, database_url: str, tmp_path: Path
) -> Iterator[Callable[[int], tuple[ServiceProcess, TwilioServer]]]:
    """``dispatch serve --workers N`` as an operator starts it, with a Twilio server to count on."""
    port = free_port()
    started: list[tuple[ServiceProcess, TwilioServer]] = []

    def start(n: int) -> tuple[ServiceProcess, TwilioServer]:
        server = TwilioServer(f"http://127.0.0.1:{port}")
        overlay = tmp_path / "overlay.yaml"
        overlay.write_text(
            yaml.safe_dump({"escalation": fast_escalation(SMS_THEN_VOICE), "twilio": {"retry_backoff_s": 0.1}})
        )
        env = {
            **service_env(server, database_url, mosquitto, overlay, port),
            "DISPATCH__MQTT__CLIENT_ID": "dispatch-1",
            "DISPATCH__DATA_DIR": str(tmp_path / "var"),
        }
        service = ServiceProcess(env, tmp_path / "workers.log", port=port, args=["--workers", str(n)]).start()
        started.append((service, server))
        eventually(lambda: service.count_lines("mqtt subscribed") >= n, timeout=90, interval=0.2)
        return service, server

    yield start
    for service, server in started:
        # The supervisor waits up to 30 s for its workers (each finishes the jobs it is running).
        service.stop(timeout=45)
        server.stop()


def _ours(sessions: sessionmaker[Session], tag: str) -> tuple[list[Incident], list[Notification]]:
    """This test's incidents and their notifications (tests of other checkouts may press the
    same example buttons on a shared broker: those incidents are real, but not counted here)."""
    with sessions() as session:
        incidents = list(session.execute(select(Incident).where(Incident.press_id.like(f"{tag}-%"))).scalars())
        rows = session.execute(
            select(Notification).where(Notification.incident_id.in_([i.id for i in incidents]))
        ).scalars()
        return incidents, list(rows)


def _voice_steps_sent(sessions: sessionmaker[Session], tag: str) -> int:
    return sum(r.channel == "voice" and r.provider_sid is not None for r in _ours(sessions, tag)[1])


def _until_done(progress: Callable[[], int], target: int, stalled_after_s: float = 60) -> float:
    """Seconds until ``progress()`` reaches ``target``; fails only when it stops moving.

    The machine running the tests may be shared: a slow run is not a failure, a stuck one is.
    """
    began = last_move = time.monotonic()
    seen = progress()
    while seen < target:
        assert time.monotonic() - last_move < stalled_after_s, f"stuck at {seen} of {target}"
        time.sleep(1)
        now_seen = progress()
        if now_seen != seen:
            seen, last_move = now_seen, time.monotonic()
    return time.monotonic() - began


def _paged_exactly_once(sessions: sessionmaker[Session], twilio: TwilioServer, tag: str, presses: int) -> None:
    """One incident per press, one first SMS and one voice step per incident, each at Twilio once."""
    incidents, rows = _ours(sessions, tag)
    assert sorted(i.press_id or "" for i in incidents) == sorted(f"{tag}-{n}" for n in range(presses))
    by_channel = Counter((row.incident_id, row.channel) for row in rows)
    assert len(by_channel) == 2 * presses and set(by_channel.values()) == {1}
    at_twilio = Counter([m.sid for m in twilio.store.messages] + [c.sid for c in twilio.store.calls])
    assert all(at_twilio[row.provider_sid or ""] == 1 for row in rows)

    def sent_twice() -> list[str]:
        # A request Twilio carried out that no row records: a duplicate (an answer in flight
        # is recorded within moments, so look until it settles).
        with sessions() as session:
            recorded = set(session.execute(select(Notification.provider_sid)).scalars())
        return [sid for sid in at_twilio if sid not in recorded]

    eventually(lambda: not sent_twice(), timeout=15, interval=0.5)


def _child_pids(service: ServiceProcess) -> dict[int, int]:
    """The newest pid of each worker, from the supervisor's log."""
    pids: dict[int, int] = {}
    for line in service.lines():
        if found := re.search(r"worker (\d+) started \(pid (\d+)\)", line):
            pids[int(found[1])] = int(found[2])
    return pids


@pytest.mark.slow
@needs_postgresql_and_mosquitto
def test_four_workers_and_1000_presses_page_each_incident_once_by_sms_and_once_by_voice_and_stop_cleanly(
    workers_service: Callable[[int], tuple[ServiceProcess, TwilioServer]],
    roster: None,
    sessions: sessionmaker[Session],
    mosquitto: str,
) -> None:
    service, twilio = workers_service(4)
    assert sorted(_child_pids(service)) == [1, 2, 3, 4]
    assert all(service.count_lines(f"as dispatch-1-w{k} (session present") == 1 for k in (1, 2, 3, 4))
    assert service.count_lines("mqtt subscribed to $share/dispatch/devices/+/+") == 4
    devices = [f"BTN-{n:04d}" for n in range(1, 13)]
    tag = f"burst-{uuid.uuid4().hex[:6]}"
    publish_presses(mosquitto, [(devices[i % 12], f"{tag}-{i}") for i in range(1000)])
    # Nobody answers: every incident reaches its voice step.
    took_s = _until_done(lambda: _voice_steps_sent(sessions, tag), 1000)
    print(f"1000 presses, 4 workers: every SMS and voice step at Twilio {took_s:.1f} s after the last publish")
    time.sleep(3)  # anything sent twice would show up now
    _paged_exactly_once(sessions, twilio, tag, 1000)
    print(f"notifications sent per worker: {dict(Counter(r.claimed_by for r in _ours(sessions, tag)[1]))}")

    pids = _child_pids(service)
    service.stop(timeout=45)  # SIGTERM to the supervisor
    assert service.wait(timeout=1) == 0
    assert service.count_lines("stopped with status 0") == 4
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
@needs_postgresql_and_mosquitto
def test_a_worker_killed_during_a_burst_is_restarted_under_its_own_id_and_nothing_is_lost_or_doubled(
    workers_service: Callable[[int], tuple[ServiceProcess, TwilioServer]],
    roster: None,
    sessions: sessionmaker[Session],
    mosquitto: str,
) -> None:
    service, twilio = workers_service(2)
    devices = [f"BTN-{n:04d}" for n in range(1, 13)]
    tag = f"crash-{uuid.uuid4().hex[:6]}"
    publish_presses(mosquitto, [(devices[i % 12], f"{tag}-{i}") for i in range(200)])
    eventually(lambda: len(twilio.store.messages) >= 40, timeout=60, interval=0.1)
    victim = _child_pids(service)[2]
    os.kill(victim, signal.SIGKILL)  # mid-burst: presses in its session, rows mid-send
    service.wait_for_line("worker 2 (pid", timeout=10)
    eventually(lambda: _child_pids(service)[2] != victim, timeout=15)
    _until_done(lambda: _voice_steps_sent(sessions, tag), 200)
    time.sleep(3)
    _paged_exactly_once(sessions, twilio, tag, 200)
