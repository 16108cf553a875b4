"""Request bodies against the real waitress server: a size limit, and 422s that repeat nothing.

Issue 12: a 20 MB body was parsed and echoed back in the 422, and a 50 MB one wrote a
50-million-character log line with callers' numbers and addresses (spectree's own logger).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from dispatch.auth import hash_password, issue_token
from dispatch.models import User
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction

Start = Callable[..., DispatchService]
CALLER = "+6281234000111"
ADDRESS = "Jl. Rahasia Pribadi No. 7"


@pytest.fixture
def token(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as session:
        user = User(username="rina", name="Rina", role="call_taker", password_hash=hash_password("pw"))
        session.add(user)
        session.flush()
        return issue_token(session, user, "tests", utcnow())


def post_call(service: DispatchService, token: str, body: bytes) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{service.web_port}/api/calls",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=60,
    )


def test_a_body_over_the_limit_gets_413_json_under_api_and_is_not_echoed(
    start_service: Start, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = start_service(web={"max_content_length": 64 * 1024})
    # Over the app's limit; under waitress's own (twice as much), which answers in plain text.
    body = json.dumps({"call_id": "C-1", "caller_number": CALLER, "description": "x" * 100_000}).encode()
    with caplog.at_level(logging.DEBUG):
        answer = post_call(service, token, body)
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "payload_too_large",
        "detail": "the request body is larger than 65536 bytes",
        "max_bytes": 65536,
    }
    assert CALLER not in caplog.text and max(len(r.getMessage()) for r in caplog.records) < 1000


@pytest.mark.parametrize("megabytes", [20, 50])
def test_huge_bodies_are_refused_without_being_read_or_logged(
    start_service: Start, token: str, caplog: pytest.LogCaptureFixture, megabytes: int
) -> None:
    service = start_service()
    body = b'{"call_id": "C-1", "description": "' + b"x" * (megabytes * 1_000_000) + b'"}'
    with caplog.at_level(logging.DEBUG):
        try:
            answer = post_call(service, token, body)
        except requests.ConnectionError:
            return  # the server closed the connection before reading it all: refused, not parsed
    assert answer.status_code == 413
    assert len(answer.content) < 1000
    assert all(len(record.getMessage()) < 1000 for record in caplog.records)


def test_a_twilio_webhook_over_the_limit_gets_a_plain_413(start_service: Start) -> None:
    service = start_service(web={"max_content_length": 64 * 1024})
    url = f"{service.public_base}/twilio/sms"
    form = {"MessageSid": "SM" + "a" * 32, "From": "+6281200000001", "To": "+15005550006", "Body": "Y" * 100_000}
    signature = RequestValidator(service.twilio_auth_token).compute_signature(url, form)
    answer = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=30)
    assert answer.status_code == 413
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.text == "request body larger than 65536 bytes\n"


def test_a_422_names_the_field_but_never_repeats_the_body_nor_logs_it(
    start_service: Start, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    service = start_service()
    body = {"call_id": "C-2", "caller_number": CALLER, "address": ADDRESS, "services": ["plumber"], "priority": 9}
    with caplog.at_level(logging.DEBUG):
        answer = post_call(service, token, json.dumps(body).encode())
    assert answer.status_code == 422
    fields = {tuple(error["loc"]) for error in answer.json()}
    assert ("services", 0) in fields and ("priority",) in fields
    assert all(set(error) <= {"loc", "msg", "type"} for error in answer.json())
    for secret in (CALLER, ADDRESS, "plumber"):
        assert secret not in answer.text
        assert secret not in caplog.text
    assert "422 on POST /api/calls: services.0" in caplog.text
