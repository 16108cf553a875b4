"""The link page and the API are never cached, framed or sniffed; HTTPS deployments pin HTTPS."""

from __future__ import annotations

import re
from collections.abc import Callable

import requests
from sqlalchemy.orm import Session, sessionmaker

from devices.simulator import SimulatedDevice
from dispatch.auth import hash_password, issue_token
from dispatch.models import User
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from tests.conftest import eventually
from tests.responder_helpers import UNIT_PHONES, fast_escalation, sandbox, texts_to

Start = Callable[..., DispatchService]


def assert_locked_down(response: requests.Response) -> None:
    headers = response.headers
    assert headers["Cache-Control"] == "no-store", response.url
    assert headers["X-Content-Type-Options"] == "nosniff", response.url
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, response.url


def test_the_link_page_is_never_cached_framed_or_sniffed(start_service: Start, roster: None, broker_url: str) -> None:
    service = start_service(escalation=fast_escalation())
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())
    [sms] = eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))
    link = re.search(r"https?://\S+/a/\S+", sms)
    assert link is not None, sms
    page = requests.get(link.group(0), timeout=10)
    assert page.status_code == 200 and "<form" in page.text
    assert_locked_down(page)
    assert page.headers["Referrer-Policy"] == "no-referrer"  # the token stays out of other sites' logs
    assert "style-src 'unsafe-inline'" in page.headers["Content-Security-Policy"]  # the page's own style
    assert_locked_down(requests.get(f"http://127.0.0.1:{service.web_port}/a/not-a-token", timeout=10))


def test_every_api_answer_is_never_cached_framed_or_sniffed(
    start_service: Start, sessions: sessionmaker[Session]
) -> None:
    service = start_service()
    with transaction(sessions) as session:
        user = User(username="rina", name="Rina", role="call_taker", password_hash=hash_password("x" * 8))
        session.add(user)
        session.flush()
        token = issue_token(session, user, "tests", utcnow())
    base = f"http://127.0.0.1:{service.web_port}/api"
    answers = [
        requests.get(f"{base}/incidents", headers={"Authorization": f"Bearer {token}"}, timeout=10),  # 200
        requests.get(f"{base}/incidents", timeout=10),  # 401
        requests.get(f"{base}/incidents/999", headers={"Authorization": f"Bearer {token}"}, timeout=10),  # 404
        requests.post(f"{base}/calls", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=10),  # 422
        requests.get(f"{base}/openapi.json", timeout=10),
    ]
    assert [a.status_code for a in answers] == [200, 401, 404, 422, 200]
    for answer in answers:
        assert_locked_down(answer)
    assert "Strict-Transport-Security" not in answers[0].headers  # plain HTTP: HSTS would mean nothing


def test_https_deployments_send_hsts_everywhere(start_service: Start) -> None:
    service = start_service(public_url="https://dispatch.example.go.id")
    base = f"http://127.0.0.1:{service.web_port}"
    for path in ("/api/openapi.json", "/a/x", "/console/login", "/healthz"):
        assert requests.get(base + path, timeout=10).headers["Strict-Transport-Security"].startswith("max-age="), path


def test_the_console_keeps_its_own_policy(start_service: Start) -> None:
    service = start_service(console={"tile_url": "https://tiles.example/{z}/{x}/{y}.png"})
    login = requests.get(f"http://127.0.0.1:{service.web_port}/console/login", timeout=10)
    assert "img-src 'self' data: https://tiles.example" in login.headers["Content-Security-Policy"]
