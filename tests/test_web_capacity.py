"""The web server keeps answering Twilio and /healthz whatever consoles and slow clients do.

Issue 12: 32 console event streams held every waitress thread, and 110 idle half-sent
connections filled waitress's connection limit; either way `POST /twilio/sms` and `/healthz`
timed out. These tests run the real waitress server of DispatchService with real sockets.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from dispatch.auth import hash_password
from dispatch.models import User
from dispatch.service import DispatchService, StartupError
from foundation.db import transaction
from tests.conftest import ROOT, eventually, free_port

Start = Callable[..., DispatchService]
PASSWORD = "rahasia-123"


@pytest.fixture
def operator(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as session:
        session.add(User(username="rina", name="Rina", role="call_taker", password_hash=hash_password(PASSWORD)))
    return "rina"


def login(service: DispatchService, username: str) -> str:
    """A logged-in console session; its Cookie header."""
    http = requests.Session()
    base = f"http://127.0.0.1:{service.web_port}"
    page = http.get(f"{base}/console/login", timeout=20).text
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = http.post(
        f"{base}/console/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf}, timeout=20
    )
    assert answer.ok and "/console/login" not in answer.url
    return "; ".join(f"{name}={value}" for name, value in http.cookies.items())


def open_stream(service: DispatchService, cookie: str) -> tuple[socket.socket, str]:
    """GET /console/events on a raw socket; the socket and the head of the answer."""
    sock = socket.create_connection(("127.0.0.1", service.web_port), timeout=20)
    sock.sendall(f"GET /console/events HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n".encode())
    head = b""

    def complete() -> bool:
        if b"\r\n\r\n" not in head:
            return False
        headers, body = head.split(b"\r\n\r\n", 1)
        if b" 200 " in headers.split(b"\r\n")[0]:
            return b"retry: 1000" in body  # the stream's first bytes
        length = [line for line in headers.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        return not length or len(body) >= int(length[0].split(b":")[1])

    while not complete():
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head.decode(errors="replace")


def signed_sms(service: DispatchService) -> tuple[int, float]:
    """A correctly signed Twilio SMS webhook: (status, seconds to the answer)."""
    url = f"{service.public_base}/twilio/sms"
    form = {"MessageSid": "SM" + "c" * 32, "From": "+6281299990000", "To": "+15005550006", "Body": "YA 1"}
    signature = RequestValidator(service.twilio_auth_token).compute_signature(url, form)
    started = time.monotonic()
    answer = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10)
    return answer.status_code, time.monotonic() - started


def healthz(service: DispatchService) -> tuple[int, float]:
    started = time.monotonic()
    answer = requests.get(f"http://127.0.0.1:{service.web_port}/healthz", timeout=10)
    return answer.status_code, time.monotonic() - started


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_two_hundred_open_event_streams_leave_the_webhooks_answering_within_a_second(
    start_service: Start, operator: str, sockets: list[socket.socket]
) -> None:
    service = start_service(web={"event_streams_total": 200, "event_streams_per_session": 200})
    cookie = login(service, operator)
    for _ in range(200):
        sock, head = open_stream(service, cookie)
        sockets.append(sock)
        assert head.startswith("HTTP/1.1 200") and "retry: 1000" in head, head
    assert service.web_server.task_dispatcher.streams.active_count == 200  # all streaming now

    status, seconds = signed_sms(service)
    assert status == 200 and seconds < 1.0, (status, seconds)
    status, seconds = healthz(service)
    assert status == 200 and seconds < 1.0, (status, seconds)


def test_streams_are_capped_per_session_and_in_total_with_a_clear_answer(
    start_service: Start, operator: str, sockets: list[socket.socket]
) -> None:
    service = start_service(web={"event_streams_total": 6, "event_streams_per_session": 4})
    first, second = login(service, operator), login(service, operator)
    answers = []
    for cookie in [first] * 5 + [second] * 3:
        sock, head = open_stream(service, cookie)
        sockets.append(sock)
        answers.append(head)
    statuses = [head.split(" ", 2)[1] for head in answers]
    assert statuses == ["200"] * 4 + ["429"] + ["200"] * 2 + ["429"]
    per_session = json.loads(answers[4].split("\r\n\r\n", 1)[1])
    assert per_session == {"error": "too_many_streams", "limit": "per_session", "poll_s": 10, "retry_s": 60}
    assert "Retry-After: 60" in answers[4]
    assert json.loads(answers[7].split("\r\n\r\n", 1)[1])["limit"] == "total"

    # A closed tab frees its place.
    sockets[0].close()
    reopened = eventually(lambda: open_stream(service, second)[1].startswith("HTTP/1.1 200"), timeout=15)
    assert reopened
    assert signed_sms(service)[0] == 200


def test_three_hundred_half_sent_requests_do_not_block_the_webhooks(
    start_service: Start, sockets: list[socket.socket]
) -> None:
    service = start_service()
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", service.web_port), timeout=10)
        sock.sendall(b"POST /twilio/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nFrom=%2B62")
        sockets.append(sock)
    status, seconds = signed_sms(service)
    assert status == 200 and seconds < 1.0, (status, seconds)
    status, seconds = healthz(service)
    assert status == 200 and seconds < 1.0, (status, seconds)


def test_an_idle_half_sent_connection_is_closed_after_the_channel_timeout(start_service: Start) -> None:
    service = start_service(web={"channel_timeout_s": 2, "cleanup_interval_s": 1})
    with socket.create_connection(("127.0.0.1", service.web_port), timeout=15) as sock:
        sock.sendall(b"POST /twilio/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed by the server, no answer
        assert 1.0 < time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("settings", "advice"),
    [
        ({"web": {}}, "set web.port (or --port) to a free port or stop the other program"),
        ({"mqtt": {"url": None}}, "set mqtt.embedded_port or point DISPATCH_MQTT_URL at a running broker"),
    ],
    ids=["web", "embedded-broker"],
)
def test_a_taken_port_is_one_clear_line_naming_the_setting(
    start_service: Start, settings: dict[str, dict[str, object]], advice: str
) -> None:
    port = free_port()
    section = next(iter(settings))
    settings[section]["port" if section == "web" else "embedded_port"] = port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with pytest.raises(StartupError) as refused:
            start_service(**settings)
    assert str(refused.value) == f"dispatch: port {port} on 127.0.0.1 is already in use; {advice}"


@pytest.mark.skipif(not (shutil.which("nginx") and shutil.which("openssl")), reason="needs nginx and openssl")
def test_the_shipped_nginx_config_is_valid(tmp_path: Path) -> None:
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    keys = ["-keyout", str(ssl / "privkey.pem"), "-out", str(ssl / "fullchain.pem")]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=dispatch", *keys],
        check=True,
        capture_output=True,
    )
    site = (ROOT / "config" / "nginx-dispatch.conf").read_text().replace("/etc/ssl/dispatch", str(ssl))
    (tmp_path / "dispatch.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{ access_log off; include {tmp_path}/dispatch.conf; }}\n"
    )
    checked = subprocess.run(
        ["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
