"""The built-in Twilio sandbox runs only when asked for (``dispatch demo``, ``serve --sandbox``).

It lists every page with its live one-tap links and takes unsigned posts from the phone
simulator, so a production server whose Twilio credentials went missing must refuse to start
rather than fall back to it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from dispatch.service import DispatchService
from responders.sandbox import SandboxStore, run_sandbox_server, sandbox_api_base, stop_sandbox_server
from tests.conftest import free_port

ACCOUNT_SID = "AC" + "2" * 32


def serve(
    tmp_path: Path, database_url: str, broker_url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``dispatch serve`` with no Twilio variables but ``env``; it must exit on its own."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "DISPATCH"))}
    clean.update(
        {
            "DISPATCH_DATABASE_URL": database_url,
            "DISPATCH_MQTT_URL": broker_url,
            "DISPATCH__DATA_DIR": str(tmp_path / "var"),
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "dispatch.cli", "serve", "--port", str(free_port()), *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TWILIO_AUTH_TOKEN": "a-token-without-its-account"}, "TWILIO_ACCOUNT_SID is required"),
        ({"TWILIO_ACCOUNT_SID": ACCOUNT_SID}, "TWILIO_AUTH_TOKEN is required"),
        ({}, "no Twilio account"),
    ],
    ids=["token-only", "sid-only", "none"],
)
def test_serve_without_a_whole_twilio_account_refuses_to_start_in_one_line(
    tmp_path: Path, database_url: str, broker_url: str, env: dict[str, str], named: str
) -> None:
    result = serve(tmp_path, database_url, broker_url, **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dispatch: ") and named in lines[0], result.stderr
    assert "a-token-without-its-account" not in result.stderr
    assert "running" not in result.stderr


def test_the_sandbox_needs_asking_for_by_name(tmp_path: Path, database_url: str, broker_url: str) -> None:
    # --sandbox together with credentials is a contradiction, not a choice to guess at.
    result = serve(
        tmp_path, database_url, broker_url, "--sandbox", TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN="t" * 32
    )
    assert result.returncode == 2
    assert "exclude each other" in result.stderr


@pytest.fixture
def twilio_server() -> Iterator[tuple[str, str]]:
    """A standalone Twilio-compatible API, standing in for Twilio itself: (api_base, auth token)."""
    token = secrets.token_hex(16)
    thread, server = run_sandbox_server("127.0.0.1", 0, SandboxStore(), ACCOUNT_SID, token, "http://127.0.0.1:9")
    yield sandbox_api_base(server), token
    stop_sandbox_server(thread, server)


def test_with_a_twilio_account_no_sandbox_route_exists(
    start_service: Callable[..., DispatchService], twilio_server: tuple[str, str]
) -> None:
    api_base, token = twilio_server
    service = start_service(twilio={"account_sid": ACCOUNT_SID, "auth_token": token, "api_base": api_base})
    base = f"http://127.0.0.1:{service.web_port}/sandbox/twilio"
    assert service.sandbox is None
    assert requests.get(f"{base}/phones.json", timeout=5).status_code == 404
    assert requests.get(f"{base}/phones", timeout=5).status_code == 404
    assert requests.post(f"{base}/phones/calls/CA{'0' * 32}/digits", data={"Digits": "1"}, timeout=5).status_code == 404
    assert requests.post(f"{base}/phones/sms", data={"From": "+6281", "Body": "YA"}, timeout=5).status_code == 404
    gateway = f"http://127.0.0.1:{service.web_port}/sandbox/sms-gateway"  # the demo's SMS gateway stand-in
    assert requests.get(f"{gateway}/phones.json", timeout=5).status_code == 404
    assert requests.post(f"{gateway}/phones/sms", data={"from": "+6281", "text": "YA"}, timeout=5).status_code == 404


def test_the_sandbox_runs_when_asked_for(start_service: Callable[..., DispatchService]) -> None:
    service = start_service(twilio={"sandbox": True})
    response = requests.get(f"http://127.0.0.1:{service.web_port}/sandbox/twilio/phones.json", timeout=5)
    assert response.status_code == 200 and service.sandbox is not None
    # `serve --sandbox` plays Twilio only; the SMS gateway stand-in is the demo's (sms_gateway.sandbox).
    gateway = requests.get(f"http://127.0.0.1:{service.web_port}/sandbox/sms-gateway/phones.json", timeout=5)
    assert gateway.status_code == 404 and service.sms_gateway_sandbox is None
