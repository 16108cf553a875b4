"""Real ``dispatch serve`` processes around one database, one broker and one Twilio-compatible server.

For the tests where a crash, a second worker or an outage must be real: the processes
are started as a user would start them, and the Twilio server lives in the test process
so a test can count every request the real twilio SDK makes and fail it on command.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from devices.gateway import MqttGateway
from responders.sandbox import SandboxStore, run_sandbox_server, sandbox_api_base, stop_sandbox_server
from tests.conftest import free_port, mqtt_login
from tests.service_process import ServiceProcess

ACCOUNT_SID = "AC" + "1" * 32


class TwilioServer:
    """A standalone Twilio-compatible server the service processes talk to through the SDK."""

    def __init__(self, webhook_base: str) -> None:
        self.token = secrets.token_hex(16)
        self.store = SandboxStore()
        self._thread, self._server = run_sandbox_server(
            "127.0.0.1", 0, self.store, ACCOUNT_SID, self.token, webhook_base, callback_delay_s=0.05
        )
        self.api_base = sandbox_api_base(self._server)

    def stop(self) -> None:
        stop_sandbox_server(self._thread, self._server)


def service_env(server: TwilioServer, database_url: str, broker_url: str, overlay: Path, port: int) -> dict[str, str]:
    """The environment of a ``dispatch serve`` process of the fleet (Twilio calls back on ``port``)."""
    return {
        "DISPATCH_DATABASE_URL": database_url,
        "DISPATCH_MQTT_URL": broker_url,
        "DISPATCH_CONFIG": str(overlay),
        "DISPATCH_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DISPATCH_SECRET_KEY": "test-secret-shared-by-workers",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": server.token,
        "TWILIO_API_BASE": server.api_base,
    }


@pytest.fixture
def processes(
    broker: dict[str, str], database_url: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[list[ServiceProcess], TwilioServer]]]:
    """Start N ``dispatch serve`` processes sharing one database, one broker and one Twilio server."""
    started: list[ServiceProcess] = []
    servers: list[TwilioServer] = []
    client_ids: list[str] = []

    def start(
        n: int,
        escalation: dict[str, Any],
        *,
        twilio: dict[str, Any] | None = None,
        database: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[list[ServiceProcess], TwilioServer]:
        """``twilio``: settings over the fast defaults; ``database``: another URL (a fault proxy);
        ``env``: more environment (an SMS gateway's URL and credentials)."""
        ports = [free_port() for _ in range(n)]
        # Twilio calls one public URL (a load balancer in production); the first worker here.
        server = TwilioServer(f"http://127.0.0.1:{ports[0]}")
        servers.append(server)
        overlay = tmp_path / f"overlay-{len(servers)}.yaml"
        twilio_settings = {"retry_backoff_s": 0.1, **(twilio or {})}
        overlay.write_text(yaml.safe_dump({"escalation": escalation, "twilio": twilio_settings}))
        for index, port in enumerate(ports):
            client_id = f"worker-{index}-{uuid.uuid4().hex[:6]}"
            client_ids.append(client_id)
            process = ServiceProcess(
                {
                    **service_env(server, database or database_url, broker["url"], overlay, ports[0]),
                    "DISPATCH__MQTT__CLIENT_ID": client_id,
                    "DISPATCH__DATA_DIR": str(tmp_path / f"var-{index}"),
                    **(env or {}),
                },
                tmp_path / f"worker-{index}.log",
                port=port,
            )
            started.append(process.start())
        for process in started[-n:]:
            process.wait_for_line("mqtt subscribed")
        return started[-n:], server

    yield start
    for process in started:
        process.stop()
    for server in servers:
        server.stop()
    for client_id in client_ids:
        MqttGateway(url=broker["url"], client_id=client_id, subscriptions=(), handler=print)._forget_session()


def publish_presses(url: str, presses: list[tuple[str, str]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"presser-{uuid.uuid4().hex[:6]}")
    address = mqtt_login(client, url, "presser")
    client.connect(address.host, address.port)
    client.loop_start()
    infos = [
        client.publish(f"devices/{device}/press", json.dumps({"press_id": press_id}), qos=1)
        for device, press_id in presses
    ]
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()
