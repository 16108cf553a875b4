"""Embedded MQTT broker for development and the demo (never for production).

Mosquitto when it is on PATH (it keeps sessions and redelivers unacknowledged
messages after a client crash); otherwise amqtt, which is pure Python but
discards a crashed client's in-flight QoS 1 messages (see README).

Neither accepts anonymous clients: one user with a generated password, kept in
``data_dir/mqtt-credentials`` (0600), so another user of the machine cannot publish
presses or set units off duty. ``embedded_url`` gives the URL with the credentials.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import getpass
import hashlib
import logging
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from foundation.private_files import create_private_file, private_dir, replace_private_file

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "mqtt-credentials"
EMBEDDED_USER = "dispatch"


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
        """The broker's URL with its credentials (user:password@)."""
        return embedded_url(self.data_dir, self.port)

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the broker and wait until it accepts connections; returns its URL."""
        if _port_open(self.port):
            raise BrokerError(
                f"port {self.port} on 127.0.0.1 is already in use; set mqtt.embedded_port "
                "or point DISPATCH_MQTT_URL at a running broker"
            )
        private_dir(self.data_dir)
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
        state = private_dir(self.data_dir / "mosquitto")
        user, password = embedded_credentials(self.data_dir)
        passwords = self.data_dir / "mosquitto-embedded.passwd"
        replace_private_file(passwords, f"{user}:{mosquitto_password_hash(password)}\n")
        conf = self.data_dir / "mosquitto-embedded.conf"
        replace_private_file(
            conf,
            "\n".join(
                [
                    "# Written by dispatch: embedded development broker. Not for production.",
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous false",
                    f"password_file {passwords}",
                    # Started by root, Mosquitto would become user "mosquitto", who cannot read the
                    # private data dir: it runs as whoever runs dispatch.
                    f"user {getpass.getuser()}",
                    "persistence true",
                    f"persistence_location {state}/",
                    "autosave_interval 5",
                    "max_queued_messages 0",
                    "max_inflight_messages 100",
                    "set_tcp_nodelay true",  # no Nagle delay on small messages (config/mosquitto.conf)
                    "",
                ]
            ),
        )
        return [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)]

    def _amqtt_command(self) -> list[str]:
        from pwdlib.hashers.argon2 import Argon2Hasher  # amqtt's own dependency, for its password file

        user, password = embedded_credentials(self.data_dir)
        passwords = self.data_dir / "amqtt-embedded.passwd"
        replace_private_file(passwords, f"{user}:{Argon2Hasher().hash(password)}\n")
        conf = self.data_dir / "amqtt-embedded.yaml"
        replace_private_file(
            conf,
            "\n".join(
                [
                    "# Written by dispatch: embedded development broker. Not for production.",
                    "listeners:",
                    "  default:",
                    "    type: tcp",
                    f"    bind: 127.0.0.1:{self.port}",
                    "plugins:",
                    "  amqtt.plugins.authentication.FileAuthPlugin:",
                    f"    password_file: {passwords}",
                    "",
                ]
            ),
        )
        script = "from amqtt.scripts.broker_script import main; main()"
        return [sys.executable, "-c", script, "-c", str(conf)]


def embedded_credentials(data_dir: Path) -> tuple[str, str]:
    """The embedded broker's user and password, generated once into ``data_dir`` (0600)."""
    path = private_dir(data_dir) / CREDENTIALS_FILE
    create_private_file(path, f"{EMBEDDED_USER}:{secrets.token_urlsafe(24)}\n")
    user, _, password = path.read_text(encoding="utf-8").strip().partition(":")
    if not user or not password:
        raise BrokerError(f"{path} must hold user:password; delete it to generate a new one")
    return user, password


def embedded_url(data_dir: Path, port: int) -> str:
    """``mqtt://user:password@127.0.0.1:port`` of the embedded broker (for the CLI and tests)."""
    user, password = embedded_credentials(data_dir)
    return f"mqtt://{user}:{password}@127.0.0.1:{port}"


def mosquitto_password_hash(password: str) -> str:
    """Mosquitto 2's password-file hash ($7$: PBKDF2-SHA512, 101 rounds), as mosquitto_passwd writes it.

    Written here so the demo needs no mosquitto_passwd binary.
    """
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    # On Linux, ask the kernel to SIGTERM the broker if we die, so no orphan holds the port.
    with contextlib.suppress(OSError):  # not Linux: the broker may outlive us, nothing worse
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
