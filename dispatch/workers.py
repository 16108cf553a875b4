"""``dispatch serve --workers N``: N identical service processes under one small supervisor.

The supervisor prepares what must happen once (migrations, the generated secret key, the web
port), then runs N ``dispatch serve --worker K`` children and keeps them running: a child that
dies is logged and restarted with a bounded backoff; one that keeps dying at start ends the
supervisor with a non-zero status instead of looping; SIGTERM/SIGINT are passed on and every
child is waited for. Exactly-once does not depend on it: every due step and outbox row is
claimed in the shared database, the children only split the work.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from foundation.settings import MqttSettings, Settings

log = logging.getLogger(__name__)

# The shared subscription group when several workers run and none is configured.
DEFAULT_SHARED_GROUP = "dispatch"


def worker_client_id(client_id: str, index: int) -> str:
    """The MQTT client id (and outbox worker id) of worker ``index``: stable across restarts,
    so a restarted worker finds its broker session and its own rows left mid-send."""
    return f"{client_id}-w{index}"


def worker_overrides(mqtt: MqttSettings, index: int) -> dict[str, Any]:
    """Settings a child runs with: its own client id, and the shared subscription group.

    When the username in ``mqtt.url`` is the client id (the shipped Mosquitto config makes
    the client id the username, ``use_username_as_clientid``), the child logs in under its
    own client id too, with the same password: otherwise all N would share one broker
    session and close each other's connections.
    """
    client_id = worker_client_id(mqtt.client_id, index)
    section: dict[str, Any] = {"client_id": client_id, "shared_group": mqtt.shared_group or DEFAULT_SHARED_GROUP}
    if mqtt.url is not None:
        parts = urlsplit(mqtt.url)
        if parts.username is not None and unquote(parts.username) == mqtt.client_id:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            _, colon, password = userinfo.partition(":")
            netloc = f"{quote(client_id, safe='')}{colon}{password}@{hostport}"
            section["url"] = urlunsplit(parts._replace(netloc=netloc))
    return {"mqtt": section}


def refusal(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot run on these settings (None: they can)."""
    if workers < 2:
        return None
    if settings.database_url.startswith("sqlite"):
        return (
            "--workers needs PostgreSQL (DISPATCH_DATABASE_URL): SQLite has one writer at a time, "
            "so more processes only wait for each other; run one process on SQLite"
        )
    if settings.mqtt.url is None:
        return (
            "--workers needs one external broker for all workers (DISPATCH_MQTT_URL, Mosquitto or EMQX): "
            "the embedded broker belongs to one process"
        )
    if settings.twilio.sandbox or settings.sms_gateway.sandbox:
        return (
            "--workers cannot run the built-in sandbox: its phones and its credentials live in one "
            "process; use one process for a demo"
        )
    return None


def restart_delay(failures: int, minimum_s: float, maximum_s: float) -> float:
    """Seconds before restarting a worker that died ``failures`` times in a row (1, 2, 4, ... capped)."""
    return float(min(maximum_s, minimum_s * 2 ** max(0, failures - 1)))


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket that other workers bind too (SO_REUSEPORT: the kernel spreads connections).

    Raises OSError (EADDRINUSE) when another program holds the port without SO_REUSEPORT.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # deaths in a row, each soon after its start
    restart_at: float = 0.0


@dataclass
class Supervisor:
    """Keeps ``workers`` children of ``command(index)`` running until ``stop`` is set."""

    command: Callable[[int], Sequence[str]]
    workers: int
    backoff_min_s: float = 1.0
    # Short: a dead worker's share of presses waits in its broker session until it is back.
    backoff_max_s: float = 10.0
    # A child that dies sooner than this after its start failed to start (bad config, port taken).
    started_within_s: float = 20.0
    give_up_after: int = 5  # start failures in a row of one worker
    stop_timeout_s: float = 30.0
    poll_s: float = 0.2
    _slots: list[_Worker] = field(init=False, default_factory=list)

    def run(self, stop: threading.Event) -> int:
        """0 after a clean shutdown; 1 when a worker kept failing at start or did not stop cleanly."""
        self._slots = [_Worker(index) for index in range(1, self.workers + 1)]
        for slot in self._slots:
            self._spawn(slot)
        while not stop.wait(self.poll_s):
            now = time.monotonic()
            for slot in self._slots:
                status = slot.process.poll() if slot.process is not None else None
                if status is not None and not self._died(slot, status, now):
                    self._stop_all()
                    return 1
                if slot.process is None and now >= slot.restart_at:
                    self._spawn(slot)
        return self._stop_all()

    def pids(self) -> list[int]:
        return [slot.process.pid for slot in self._slots if slot.process is not None]

    def _spawn(self, slot: _Worker) -> None:
        slot.process = subprocess.Popen(list(self.command(slot.index)), preexec_fn=_die_with_parent)
        slot.started = time.monotonic()
        log.info("worker %d started (pid %d)", slot.index, slot.process.pid)

    def _died(self, slot: _Worker, status: int, now: float) -> bool:
        """Schedule the restart of a worker that exited on its own; False: give up."""
        assert slot.process is not None
        lived_s = now - slot.started
        pid, slot.process = slot.process.pid, None
        slot.failures = slot.failures + 1 if lived_s < self.started_within_s else 1
        if lived_s < self.started_within_s and slot.failures >= self.give_up_after:
            log.error(
                "worker %d (pid %d) exited with status %d %d times in a row within %.0f s of its start; "
                "stopping every worker (see its log above)",
                slot.index,
                pid,
                status,
                slot.failures,
                self.started_within_s,
            )
            return False
        delay = restart_delay(slot.failures, self.backoff_min_s, self.backoff_max_s)
        slot.restart_at = now + delay
        log.error(
            "worker %d (pid %d) exited unexpectedly with status %d after %.0f s; restarting it in %.0f s",
            slot.index,
            pid,
            status,
            lived_s,
            delay,
        )
        return True

    def _stop_all(self) -> int:
        """SIGTERM every child, wait for each (SIGKILL after ``stop_timeout_s``); 0 when all exited cleanly."""
        running = [slot for slot in self._slots if slot.process is not None]
        for slot in running:
            assert slot.process is not None
            slot.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        clean = True
        for slot in running:
            assert slot.process is not None
            try:
                status = slot.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in %.0f s; killed", slot.index, self.stop_timeout_s)
                slot.process.kill()
                status = slot.process.wait()
            clean = clean and status == 0
            log.info("worker %d (pid %d) stopped with status %d", slot.index, slot.process.pid, status)
            slot.process = None
        return 0 if clean else 1


def _die_with_parent() -> None:
    # Linux: a child whose supervisor was killed (SIGKILL, OOM) gets SIGTERM and shuts down
    # cleanly, instead of running on unsupervised beside a restarted supervisor's new children.
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def prepare(settings: Settings, workers: int) -> tuple[Settings, int]:
    """What runs once before the children: checks, migrations, the secret key, the web port.

    Returns the settings with the web port fixed (a free one when 0). Raises ValueError with
    a message for the operator.
    """
    from dispatch import database
    from foundation.db import make_engine
    from foundation.private_files import private_dir

    if problem := refusal(settings, workers):
        raise ValueError(problem)
    private_dir(settings.data_dir)
    engine = make_engine(settings.database_url)
    try:
        database.upgrade(engine)  # once, not N times at the same moment
    finally:
        engine.dispose()
    settings.signing_key()  # a generated key is written once, then read by every child
    port = settings.web.port
    try:
        probe = reuse_port_socket(settings.web.host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(
                f"port {port} on {settings.web.host} is already in use; "
                "set web.port (or --port) to a free port or stop the other program"
            ) from None
        raise
    with probe:
        port = probe.getsockname()[1]
    web = settings.web.model_copy(update={"port": port})
    return settings.model_copy(update={"web": web}), port


def child_command(settings: Settings, index: int) -> list[str]:
    """The command line of worker ``index``: the same ``dispatch serve``, told which worker it is."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    return [
        sys.executable,
        "-m",
        "dispatch.cli",
        "--log-level",
        str(level),
        "serve",
        "--worker",
        str(index),
        "--host",
        settings.web.host,
        "--port",
        str(settings.web.port),
    ]
