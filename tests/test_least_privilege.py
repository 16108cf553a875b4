"""Least privilege: a scraper's token reads metrics only, passwords follow one rule, calls name their taker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.auth import MIN_PASSWORD, hash_password, issue_token
from dispatch.cli import main
from dispatch.models import Incident, User
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction

EVERY_API_READ = ["/api/incidents", "/api/incidents/1", "/api/units", "/api/devices"]


def token_for(sessions: sessionmaker[Session], username: str, role: str) -> str:
    with transaction(sessions) as session:
        user = User(username=username, name=username, role=role, password_hash=hash_password("x" * MIN_PASSWORD))
        session.add(user)
        session.flush()
        return issue_token(session, user, "tests", utcnow())


def get(service: DispatchService, path: str, token: str, method: str = "GET", **kwargs: object) -> int:
    url = f"http://127.0.0.1:{service.web_port}{path}"
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, url, headers=headers, timeout=20, **kwargs).status_code  # type: ignore[arg-type]


def test_the_metrics_role_reads_metrics_and_nothing_else(
    start_service: Callable[..., DispatchService], sessions: sessionmaker[Session], roster: None
) -> None:
    service = start_service()
    scraper = token_for(sessions, "prometheus", "metrics")
    assert get(service, "/metrics", scraper) == 200
    for path in EVERY_API_READ:
        assert get(service, path, scraper) == 403, path
    assert get(service, "/api/calls", scraper, "POST", json={"call_id": "X", "services": ["police"]}) == 403
    assert get(service, "/api/incidents/1/close", scraper, "POST", json={"disposition": "resolved"}) == 403


def test_people_s_tokens_do_not_read_metrics_but_an_admin_s_does(
    start_service: Callable[..., DispatchService], sessions: sessionmaker[Session]
) -> None:
    service = start_service()
    # A call-taker's token reads every resident's address; it must not be the scraper's.
    assert get(service, "/metrics", token_for(sessions, "rina", "call_taker")) == 403
    assert get(service, "/metrics", token_for(sessions, "budi", "dispatcher")) == 403
    assert get(service, "/metrics", token_for(sessions, "admin", "admin")) == 200


def test_a_metrics_user_s_console_login_opens_no_page(
    start_service: Callable[..., DispatchService], sessions: sessionmaker[Session]
) -> None:
    from tests.test_console_web import Browser

    service = start_service()
    token_for(sessions, "prometheus", "metrics")
    browser = Browser(service)
    browser.get("/console/login")
    browser.post("/console/login", {"username": "prometheus", "password": "x" * MIN_PASSWORD})
    for path in ("/console/", "/console/board.json", "/console/units", "/console/admin/users"):
        assert browser.get(path).status_code == 403, path


def test_the_token_s_user_is_the_call_taker_whatever_the_body_says(
    start_service: Callable[..., DispatchService], sessions: sessionmaker[Session], roster: None
) -> None:
    service = start_service()
    rina = token_for(sessions, "rina", "call_taker")
    body = {"call_id": "C-77", "services": ["police"], "call_taker": "budi", "lat": -7.754, "lon": 113.216}
    assert get(service, "/api/calls", rina, "POST", json=body) == 201
    with sessions() as session:
        assert session.execute(select(Incident.call_taker)).scalar_one() == "rina"


@pytest.mark.parametrize("password", ["", "short", "x" * (MIN_PASSWORD - 1)])
def test_the_cli_refuses_a_password_the_console_would_refuse(tmp_path: Path, database_url: str, password: str) -> None:
    env = {"DISPATCH_DATABASE_URL": database_url, "DISPATCH__DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(main, ["users", "add", "budi", "--role", "dispatcher", "--password", password], env=env)
    assert result.exit_code == 2
    assert f"at least {MIN_PASSWORD} characters" in result.output
    listed = CliRunner().invoke(main, ["users", "list"], env=env)
    assert "budi" not in listed.output


def test_the_cli_creates_a_metrics_user_with_a_good_password(tmp_path: Path, database_url: str) -> None:
    env = {"DISPATCH_DATABASE_URL": database_url, "DISPATCH__DATA_DIR": str(tmp_path)}
    result = CliRunner().invoke(
        main, ["users", "add", "prometheus", "--role", "metrics", "--password", "panjang-sekali"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "prometheus\tmetrics\tactive" in CliRunner().invoke(main, ["users", "list"], env=env).output
