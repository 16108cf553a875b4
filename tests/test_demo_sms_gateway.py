"""The demo acknowledges by two-way SMS through its SMS Gateway for Android stand-in, with no account anywhere.

``dispatch demo`` runs the stand-in beside the Twilio sandbox, on the same web server, with
credentials and a signing key made up at start. The service reaches it through the real
``android-sms-gateway`` client and the stand-in answers with signed webhooks, as the app does,
so the demo walks the production code path of an Indonesian responder's SMS acknowledgement.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.models import Assignment, EscalationStep
from dispatch.service import SMS_GATEWAY_SANDBOX_PREFIX, DispatchService
from foundation.settings import Settings, SettingsError
from responders import whatsapp
from responders.sandbox.sms_gateway import GatewayStore
from tests.conftest import eventually, free_port
from tests.responder_helpers import UNIT_PHONES, calls_to, fast_escalation, kinds, notifications, sandbox, texts_to

Start = Callable[..., DispatchService]
POL01 = UNIT_PHONES["POL-01"]
DEMO = {"sms_gateway": {"sandbox": True}}  # what `dispatch demo` adds to the Twilio sandbox
SMS_THEN_CALL = fast_escalation(
    [
        {"after_s": 0, "action": "notify_unit", "channels": ["sms", "voice"]},
        {"after_s": 60, "action": "supervisor", "channels": ["sms"]},
    ]
)


def stand_in(service: DispatchService) -> GatewayStore:
    assert service.sms_gateway_sandbox is not None, "service runs without the SMS gateway stand-in"
    return service.sms_gateway_sandbox


def gateway_url(service: DispatchService, path: str) -> str:
    return f"http://127.0.0.1:{service.web_port}{SMS_GATEWAY_SANDBOX_PREFIX}{path}"


def test_a_plus62_responder_is_paged_through_the_gateway_and_accepts_by_replying_from_the_simulator(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    service = start_service(**DEMO, escalation=SMS_THEN_CALL)
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        incident_id = int(button.wait_status(button.press("demo-gateway-1"))["incident_id"])

    [alert] = eventually(lambda: stand_in(service).outbound_to(POL01), timeout=15)
    assert texts_to(sandbox(service), POL01) == []  # the SMS went through the gateway, not Twilio
    [call] = eventually(lambda: [c for c in calls_to(sandbox(service), POL01) if c.status == "ringing"], timeout=15)
    [sms] = [n for n in notifications(sessions) if n.channel == "sms"]
    assert sms.provider == "sms_gateway" and f"#{sms.alert_code}" in alert.text
    eventually(lambda: [n for n in notifications(sessions) if n.channel == "sms" and n.state == "delivered"])

    # The responder types the reply on the simulator's gateway phone: a signed sms:received to us.
    answer = requests.post(
        gateway_url(service, "/phones/sms"), data={"from": POL01, "text": f"YA {sms.alert_code}"}, timeout=20
    ).json()
    assert answer["ok"] is True and answer["response"]["status_code"] == 200, answer
    assert answer["response"]["url"].endswith("/sms-gateway/events")

    with sessions() as session:
        assignment = eventually(
            lambda: session.execute(select(Assignment).where(Assignment.state == "accepted")).scalar_one_or_none()
        )
        assert assignment.accepted_unit_id == "POL-01"
        assert session.execute(select(EscalationStep).where(EscalationStep.state == "pending")).all() == []
    eventually(lambda: (c := sandbox(service).call(call.sid)) is not None and c.status == "canceled", timeout=10)
    # call_ended is written once Twilio has answered the hang-up.
    eventually(lambda: {"sms_reply", "accepted", "call_ended"} <= set(kinds(sessions, incident_id)))
    # The confirmation goes back on the channel the reply came in on, and the simulator shows it all.
    eventually(lambda: len(stand_in(service).outbound_to(POL01)) == 2, timeout=10)
    shown = requests.get(gateway_url(service, "/phones.json"), timeout=5).json()["messages"]
    assert [m["direction"] for m in shown if m["phone"] == POL01] == ["outbound", "inbound", "outbound"]


def test_the_demo_pages_amb01_on_whatsapp_with_buttons_and_a_tap_on_terima_accepts(
    start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    # What `dispatch demo` adds without a WhatsApp sender: WhatsApp on the sandbox; the example
    # roster's AMB-01 lists it first, so each channel shows on some phone of the demo.
    demo_whatsapp = {"from_number": whatsapp.SANDBOX_SENDER, "templates": whatsapp.SANDBOX_TEMPLATES}
    service = start_service(**DEMO, whatsapp=demo_whatsapp, escalation=SMS_THEN_CALL)
    with SimulatedDevice(broker_url, "BTN-0006") as button:  # Panti Wreda Kasih: AMB-01 is nearest
        incident_id = int(button.wait_status(button.press("demo-whatsapp-1"))["incident_id"])
    amb01 = UNIT_PHONES["AMB-01"]
    [alert] = eventually(
        lambda: [m for m in sandbox(service).messages if m.to == f"whatsapp:{amb01}" and m.buttons], timeout=15
    )
    assert [title for title, _ in alert.buttons] == ["Terima", "Tolak"]
    assert stand_in(service).outbound_to(amb01) == [] and texts_to(sandbox(service), amb01) == []
    tapped = requests.post(
        f"http://127.0.0.1:{service.web_port}/sandbox/twilio/phones/whatsapp/{alert.sid}/buttons/0", timeout=20
    ).json()
    assert tapped["ok"], tapped
    with sessions() as session:
        assignment = eventually(
            lambda: session.execute(select(Assignment).where(Assignment.state == "accepted")).scalar_one_or_none()
        )
        assert assignment.accepted_unit_id == "AMB-01"
    eventually(lambda: {"chat_reply", "accepted"} <= set(kinds(sessions, incident_id)))


def test_the_stand_in_keeps_its_made_up_secrets_to_itself(
    start_service: Start, roster: None, caplog: pytest.LogCaptureFixture
) -> None:
    service = start_service(**DEMO)
    gateway = service.settings.sms_gateway
    assert gateway.url == gateway_url(service, "") and gateway.password and gateway.signing_key
    password, key = gateway.password.get_secret_value(), gateway.signing_key.get_secret_value()
    assert len(password) >= 20 and len(key) >= 40
    assert password not in caplog.text and key not in caplog.text
    written = "".join(p.read_text(errors="replace") for p in service.settings.data_dir.rglob("*") if p.is_file())
    assert password not in written and key not in written
    # Its API wants them, like the app; only the simulated phones' screen and keyboard are open.
    assert requests.get(gateway_url(service, "/health"), timeout=5).status_code == 401
    assert requests.get(gateway_url(service, "/health"), auth=(gateway.username or "", password), timeout=5).ok
    # Our webhook was registered on it at start, for the four events.
    events = requests.get(gateway_url(service, "/webhooks"), auth=(gateway.username or "", password), timeout=5)
    assert sorted(h["event"] for h in events.json()) == ["sms:delivered", "sms:failed", "sms:received", "sms:sent"]


def test_the_stand_in_exists_only_beside_the_twilio_sandbox(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError, match="needs the built-in Twilio sandbox"):
        make_settings(twilio={"account_sid": "AC" + "3" * 32, "auth_token": "t" * 32}, **DEMO)
    with pytest.raises(SettingsError, match="exclude each other"):
        make_settings(sms_gateway={"sandbox": True, "url": "http://192.0.2.1:8080"})


@pytest.fixture
def demo_process(tmp_path: Path, database_url: str, broker_url: str) -> Iterator[tuple[int, list[str]]]:
    """``dispatch demo`` as a newcomer runs it (no Twilio or gateway variables): (port, its log)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_GATEWAY_", "DISPATCH"))}
    env.update(
        {"DISPATCH_DATABASE_URL": database_url, "DISPATCH_MQTT_URL": broker_url, "DISPATCH__DATA_DIR": str(tmp_path)}
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatch.cli", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)
        if "dispatch is running" in line or len(lines) > 200:
            break
    try:
        yield port, lines
    finally:
        process.terminate()
        process.wait(30)


def test_dispatch_demo_runs_the_gateway_stand_in(demo_process: tuple[int, list[str]]) -> None:
    port, log = demo_process
    assert any("dispatch is running" in line for line in log), "".join(log)
    assert any("SMS Gateway for Android stand-in" in line for line in log)
    base = f"http://127.0.0.1:{port}"
    view: dict[str, Any] = requests.get(f"{base}{SMS_GATEWAY_SANDBOX_PREFIX}/phones.json", timeout=5).json()
    assert view["messages"] == [] and view["offline"] is False
    page = requests.get(f"{base}/sandbox/twilio/phones?lang=en", timeout=5).text
    assert f"{SMS_GATEWAY_SANDBOX_PREFIX}/phones/sms" in page  # the simulator's reply box through the gateway


def test_the_gateway_phone_keeps_its_messages_across_a_restart_in_an_owner_only_file(
    make_settings: Callable[..., Settings], roster: None, sessions: sessionmaker[Session], broker_url: str
) -> None:
    settings = make_settings(**DEMO, escalation=SMS_THEN_CALL)
    with one_life(settings) as first:
        with SimulatedDevice(broker_url, "BTN-0001") as button:
            button.wait_status(button.press("demo-gateway-restart"))
        [alert] = eventually(lambda: [m for m in stand_in(first).outbound_to(POL01) if m.state == "Delivered"])
    saved = settings.data_dir / "sandbox-sms-gateway.json"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600  # numbers and live links: owner only

    with one_life(settings) as second:
        shown = requests.get(gateway_url(second, "/phones.json"), timeout=5).json()["messages"]
        assert [(m["id"], m["state"], m["text"]) for m in shown] == [(alert.id, "Delivered", alert.text)]
        [sms] = [n for n in notifications(sessions) if n.channel == "sms"]
        assert sms.provider_sid == alert.id


@contextmanager
def one_life(settings: Settings) -> Iterator[DispatchService]:
    """One run of the service on ``settings``; a restart is a second one on the same data dir."""
    service = DispatchService(settings)
    service.start()
    try:
        assert service.gateway.wait_connected(10)
        yield service
    finally:
        service.stop(forget_mqtt_session=True)
