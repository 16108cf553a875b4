"""Console sessions end on the server, and a stranger cannot lock a dispatcher out by name."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.auth import FREE_LOGIN_FAILURES
from dispatch.models import ConsoleSession, LoginThrottle, User
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from tests import test_console_web as console
from tests.conftest import count
from tests.test_console_web import PASSWORD, Browser

# The console tests' fixtures: one user per role, and a running service with them.
users = console.users
service = console.service

NEW_PASSWORD = "baru-rahasia-456"


class FromAddress(HTTPAdapter):
    """Connect from another loopback address, as a browser on another machine would."""

    def __init__(self, address: str) -> None:
        self._address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._address, 0)
        super().init_poolmanager(*args, **kwargs)


def browser_at(service: DispatchService, address: str) -> Browser:
    browser = Browser(service)
    browser.http.mount("http://", FromAddress(address))
    return browser


def test_a_cookie_copied_before_logout_no_longer_works_after_it(service: DispatchService) -> None:
    desk = Browser(service)
    assert desk.login("budi").status_code == 200
    stolen = {c.name: c.value for c in desk.http.cookies}
    assert desk.post("/console/logout").url.endswith("/console/login")

    thief = requests.Session()
    thief.cookies.update(stolen)
    page = thief.get(f"{desk.base}/console/", timeout=20)
    assert page.url.endswith("/console/login?next=/console/")
    assert thief.get(f"{desk.base}/console/board.json", timeout=20).status_code == 401
    assert thief.get(f"{desk.base}/api/incidents", timeout=20).status_code == 401


def test_logout_ends_only_that_desk(service: DispatchService, sessions: sessionmaker[Session]) -> None:
    first, second = Browser(service), Browser(service)
    first.login("budi")
    second.login("budi")
    first.post("/console/logout")
    assert second.get("/console/").url.endswith("/console/")
    assert count(sessions, ConsoleSession, ConsoleSession.ended_at.is_(None)) == 1


def test_a_stranger_guessing_a_password_blocks_only_their_own_address(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    stranger = browser_at(service, "127.0.0.2")
    for n in range(FREE_LOGIN_FAILURES):
        assert stranger.login("budi", f"guess-{n}").status_code == 401
    assert stranger.login("budi").status_code == 429  # blocked there, even with the right password

    assert Browser(service).login("budi").status_code == 200  # budi at his own desk
    with sessions() as session:
        throttle = session.execute(select(LoginThrottle)).scalar_one()
    assert (throttle.username, throttle.address, throttle.failures) == ("budi", "127.0.0.2", FREE_LOGIN_FAILURES)


def test_an_admin_password_reset_lifts_the_block_and_ends_the_old_sessions(
    service: DispatchService, sessions: sessionmaker[Session], users: dict[str, int]
) -> None:
    old_desk = Browser(service)
    old_desk.login("budi")
    budi = Browser(service)
    for n in range(FREE_LOGIN_FAILURES):
        budi.login("budi", f"typo-{n}")
    assert budi.login("budi").status_code == 429

    admin = Browser(service)
    admin.login("admin")
    admin.get("/console/admin/users")
    done = admin.post(f"/console/admin/users/{users['budi']}/password", {"password": NEW_PASSWORD})
    assert done.status_code == 200 and done.url.endswith("/console/admin/users")
    assert admin.get("/console/admin/users").status_code == 200  # the admin stays logged in

    assert budi.login("budi", NEW_PASSWORD).status_code == 200  # at once, not in 30 s
    assert old_desk.get("/console/").url.endswith("/console/login?next=/console/")
    assert count(sessions, LoginThrottle) == 0


def test_an_admin_who_resets_their_own_password_stays_logged_in(
    service: DispatchService, users: dict[str, int]
) -> None:
    admin = Browser(service)
    admin.login("admin")
    admin.get("/console/admin/users")
    admin.post(f"/console/admin/users/{users['admin']}/password", {"password": NEW_PASSWORD})
    assert admin.get("/console/admin/users").url.endswith("/console/admin/users")


def test_a_trusted_proxy_s_forwarded_address_is_the_client(
    start_service: Any, roster: None, users: dict[str, int], sessions: sessionmaker[Session]
) -> None:
    proxied = start_service(web={"trusted_proxy": "127.0.0.1"})
    stranger = Browser(proxied)
    # The stranger claims an address of their own; only the entry our proxy appended counts.
    headers = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
    stranger.get("/console/login")
    for n in range(FREE_LOGIN_FAILURES):
        stranger.post("/console/login", {"username": "budi", "password": f"guess-{n}"}, headers=headers)
    with sessions() as session:
        assert session.execute(select(LoginThrottle.address)).scalar_one() == "203.0.113.7"
    desk = Browser(proxied)
    desk.get("/console/login")
    ok = desk.post(
        "/console/login", {"username": "budi", "password": PASSWORD}, headers={"X-Forwarded-For": "10.0.0.5"}
    )
    assert ok.status_code == 200


def test_the_session_cookie_holds_no_user_data(service: DispatchService, sessions: sessionmaker[Session]) -> None:
    desk = Browser(service)
    desk.login("budi")
    with sessions() as session:
        row = session.execute(select(ConsoleSession)).scalar_one()
        user = session.get_one(User, row.user_id)
    cookie = next(c.value for c in desk.http.cookies if c.name == "dispatch_console")
    assert user.username == "budi" and not re.search("budi|rahasia", cookie)


def test_a_session_ends_with_the_shift_and_run_out_sessions_are_forgotten_at_the_next_login(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    desk = Browser(service)
    desk.login("budi")
    with transaction(sessions) as session:  # twelve hours later
        row = session.execute(select(ConsoleSession)).scalar_one()
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert desk.get("/console/").url.endswith("/console/login?next=/console/")
    assert Browser(service).login("budi").status_code == 200
    with sessions() as session:
        assert session.execute(select(ConsoleSession.expires_at)).scalar_one() > utcnow()
