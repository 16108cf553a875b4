"""Embedded MQTT broker for development and the demo (never for production).

Mosquitto when it is on PATH (it keeps sessions and redelivers unacknowledged
messages after a client crash); otherwise amqtt, which is pure Python but
discards a crashed client's in-flight QoS 1 messages (see README).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


class EmbeddedBroker:
    """A broker subprocess bound to 127.0.0.1, with its state under ``data_dir``."""

    def __init__(self, data_dir: Path, port: int, *, prefer: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.kind = prefer or ("mosquitto" if shutil.which("mosquitto") else "amqtt")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the broker and wait until it accepts connections; returns its URL."""
        if _port_open(self.port):
            raise BrokerError(
                f"port {self.port} on 127.0.0.1 is already in use; set mqtt.embedded_port "
                "or point DISPATCH_MQTT_URL at a running broker"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = self._mosquitto_command() if self.kind == "mosquitto" else self._amqtt_command()
        log_file = (self.data_dir / f"{self.kind}.log").open("ab")
        self._process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(f"{self.kind} exited at start; see {self.data_dir / (self.kind + '.log')}")
            if _port_open(self.port):
                log.warning("started embedded %s broker on 127.0.0.1:%d (development only)", self.kind, self.port)
                return self.url
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"{self.kind} did not listen on port {self.port} within {timeout_s:.0f}s")

    def stop(self) -> None:
        """Stop the broker; mosquitto saves its persistence file on SIGTERM."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _mosquitto_command(self) -> list[str]:
        state = self.data_dir / "mosquitto"
        state.mkdir(exist_ok=True)
        conf = self.data_dir / "mosquitto-embedded.conf"
        conf.write_text(
            "\n".join(
                [
                    "# Written by dispatch: embedded development broker. Not for production.",
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {state}/",
                    "autosave_interval 5",
                    "max_queued_messages 0",
                    "max_inflight_messages 100",
                    "",
                ]
            )
        )
        return [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)]

    def _amqtt_command(self) -> list[str]:
        conf = self.data_dir / "amqtt-embedded.yaml"
        conf.write_text(
            "\n".join(
                [
                    "# Written by dispatch: embedded development broker. Not for production.",
                    "listeners:",
                    "  default:",
                    "    type: tcp",
                    f"    bind: 127.0.0.1:{self.port}",
                    "plugins:",
                    "  amqtt.plugins.authentication.AnonymousAuthPlugin:",
                    # Any username is accepted; anonymous sessions would not be kept.
                    "    allow_anonymous: false",
                    "",
                ]
            )
        )
        script = "from amqtt.scripts.broker_script import main; main()"
        return [sys.executable, "-c", script, "-c", str(conf)]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    # On Linux, ask the kernel to SIGTERM the broker if we die, so no orphan holds the port.
    with contextlib.suppress(OSError):  # not Linux: the broker may outlive us, nothing worse
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
