"""The console over plain HTTP: login, CSRF, roles, the API through a console session, live events."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.auth import FREE_LOGIN_FAILURES, hash_password, login_block
from dispatch.models import Incident, LoginThrottle, User
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from tests.conftest import count, eventually
from tests.responder_helpers import UNIT_PHONES, fast_escalation, kinds, sandbox, texts_to

Start = Callable[..., DispatchService]
SLOW = fast_escalation([{"after_s": 0, "action": "notify_unit"}, {"after_s": 120, "action": "supervisor"}])
PASSWORD = "rahasia-123"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def users(sessions: sessionmaker[Session]) -> dict[str, int]:
    """One user per role (password PASSWORD), plus an inactive one."""
    ids = {}
    with transaction(sessions) as session:
        for username, role in [
            ("rina", "call_taker"),
            ("budi", "dispatcher"),
            ("admin", "admin"),
            ("old", "dispatcher"),
        ]:
            user = User(username=username, name=username.title(), role=role, password_hash=hash_password(PASSWORD))
            user.active = username != "old"
            session.add(user)
            session.flush()
            ids[username] = user.id
    return ids


@pytest.fixture
def service(start_service: Start, roster: None, users: dict[str, int]) -> DispatchService:
    return start_service(escalation=SLOW)


class Browser:
    """A requests session that behaves like a form-posting browser (keeps the CSRF token of the last page)."""

    def __init__(self, service: DispatchService) -> None:
        self.base = f"http://127.0.0.1:{service.web_port}"
        self.http = requests.Session()
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        response = self.http.get(self.base + path, timeout=20, **kwargs)
        if match := CSRF.search(response.text):
            self.csrf = match.group(1)
        return response

    def post(
        self, path: str, data: dict[str, Any] | None = None, *, token: bool = True, **kwargs: Any
    ) -> requests.Response:
        body = dict(data or {})
        if token:
            body["csrf_token"] = self.csrf
        response = self.http.post(self.base + path, data=body, timeout=20, **kwargs)
        if match := CSRF.search(response.text):
            self.csrf = match.group(1)
        return response

    def login(self, username: str, password: str = PASSWORD) -> requests.Response:
        self.get("/console/login")
        return self.post("/console/login", {"username": username, "password": password})


def test_root_leads_to_the_login_and_then_to_the_board(service: DispatchService) -> None:
    browser = Browser(service)
    first = browser.get("/")
    assert first.url.endswith("/console/login?next=/console/")
    assert "csrf_token" in first.text
    done = browser.post("/console/login", {"username": "budi", "password": PASSWORD, "next": "/console/"})
    assert done.status_code == 200 and done.url.endswith("/console/")
    assert 'id="board"' in done.text
    cookie = next(c for c in browser.http.cookies if c.name == "dispatch_console")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert "script-src 'self'" in done.headers["Content-Security-Policy"]
    assert done.headers["X-Frame-Options"] == "DENY"


def test_reading_pages_never_rewrites_the_session_cookie(service: DispatchService) -> None:
    # A live fetch that finished after an action used to send back its older session and wipe
    # the action's confirmation; only requests that change the session may set the cookie.
    browser = Browser(service)
    assert "dispatch_console" in browser.login("budi").history[0].headers.get("Set-Cookie", "")
    for path in ("/console/", "/console/board.json", "/console/units", "/console/stats"):
        response = browser.get(path)
        assert response.status_code == 200 and "Set-Cookie" not in response.headers, path


@pytest.mark.parametrize(
    ("username", "password"), [("budi", "wrong-password"), ("nobody", PASSWORD), ("old", PASSWORD)]
)
def test_a_failed_login_says_nothing_about_why(service: DispatchService, username: str, password: str) -> None:
    browser = Browser(service)
    response = browser.login(username, password)
    assert response.status_code == 401
    assert "Nama pengguna atau kata sandi salah." in response.text
    assert browser.get("/console/").url.endswith("/console/login?next=/console/")


def test_repeated_wrong_passwords_block_the_username_at_that_address_even_for_the_right_one(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    guesser = Browser(service)
    statuses = [guesser.login("budi", f"guess-{n}").status_code for n in range(FREE_LOGIN_FAILURES)]
    assert statuses == [401] * FREE_LOGIN_FAILURES

    budi = Browser(service)
    refused = budi.login("budi")
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 30
    assert "Terlalu banyak percobaan yang gagal" in refused.text
    assert Browser(service).login("rina").status_code == 200  # other users are not affected

    with transaction(sessions) as session:  # the block runs out
        throttle = session.execute(select(LoginThrottle).where(LoginThrottle.username == "budi")).scalar_one()
        throttle.blocked_until = utcnow() - timedelta(seconds=1)
    assert budi.login("budi").status_code == 200
    assert count(sessions, LoginThrottle) == 0  # a correct login clears the count


def test_the_block_grows_with_each_failure_and_is_capped() -> None:
    blocks = [login_block(n).total_seconds() for n in range(FREE_LOGIN_FAILURES + 8)]
    assert blocks[:FREE_LOGIN_FAILURES] == [0] * FREE_LOGIN_FAILURES
    assert blocks[FREE_LOGIN_FAILURES : FREE_LOGIN_FAILURES + 3] == [30, 60, 120]
    assert max(blocks) == login_block(10_000).total_seconds() == 15 * 60


def test_a_login_never_redirects_to_another_site(service: DispatchService) -> None:
    browser = Browser(service)
    browser.get("/console/login")
    response = browser.post(
        "/console/login", {"username": "budi", "password": PASSWORD, "next": "//evil.example/"}, allow_redirects=False
    )
    assert response.status_code == 303 and response.headers["Location"] == "/console/"


def test_every_post_needs_the_csrf_token(service: DispatchService, sessions: sessionmaker[Session]) -> None:
    browser = Browser(service)
    browser.get("/console/login")
    assert browser.post("/console/login", {"username": "budi", "password": PASSWORD}, token=False).status_code == 400
    browser.login("budi")
    call = {"call_id": "C-1", "services": "police", "lat": "-7.754", "lon": "113.216"}
    refused = browser.post("/console/calls", call, token=False)
    assert refused.status_code == 400
    assert browser.post("/console/calls", {**call, "csrf_token": "forged"}, token=False).status_code == 400
    with sessions() as session:
        assert session.execute(select(Incident)).first() is None
    assert browser.post("/console/calls", call).status_code == 200  # redirected to the incident page
    # A fetch may send the token in a header instead.
    incident = f"/console/incidents/{_only_incident(sessions)}/escalate"
    assert browser.http.post(browser.base + incident, timeout=20).status_code == 400
    answered = browser.http.post(browser.base + incident, headers={"X-CSRF-Token": browser.csrf}, timeout=20)
    assert answered.status_code in (200, 409)


def _only_incident(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.execute(select(Incident.id)).scalar_one())


def test_roles_are_checked_on_pages_and_actions(service: DispatchService, sessions: sessionmaker[Session]) -> None:
    taker = Browser(service)
    taker.login("rina")
    forbidden = taker.get("/console/admin/users")
    assert forbidden.status_code == 403 and 'id="forbidden"' in forbidden.text
    assert (
        taker.post("/console/admin/users", {"username": "x1", "role": "admin", "password": "12345678"}).status_code
        == 403
    )
    logged = taker.post("/console/calls", {"call_id": "C-2", "services": "police", "lat": "-7.754", "lon": "113.216"})
    assert logged.status_code == 200
    incident_id = _only_incident(sessions)
    page = taker.get(f"/console/incidents/{incident_id}")
    assert 'id="dispatcher-actions"' not in page.text and 'id="no-actions"' in page.text
    assert taker.post(f"/console/incidents/{incident_id}/cancel", {"reason": "test"}).status_code == 403
    assert taker.get("/console/board.json").status_code == 200
    # Logged out: pages redirect to the login, data answers 401.
    anonymous = Browser(service)
    assert anonymous.get("/console/board.json").status_code == 401
    assert anonymous.get("/console/stats").url.endswith("/console/login?next=/console/stats")

    dispatcher = Browser(service)
    dispatcher.login("budi")
    unknown_unit = dispatcher.post(f"/console/incidents/{incident_id}/assign", {"unit_id": "POL-99"})
    assert unknown_unit.status_code == 404 and 'id="dispatcher-actions"' in unknown_unit.text
    assert "tidak ada unit aktif &#39;POL-99&#39;" in unknown_unit.text
    cancelled = dispatcher.post(f"/console/incidents/{incident_id}/cancel", {"reason": "caller called back"})
    assert cancelled.status_code == 200
    with sessions() as session:
        assert session.get_one(Incident, incident_id).state == "cancelled"
    # Refusals are in the user's language (budi reads Indonesian), on the incident's own page.
    again = dispatcher.post(f"/console/incidents/{incident_id}/cancel", {"reason": "twice"})
    assert again.status_code == 409 and f"kejadian {incident_id} sudah dibatalkan" in again.text
    assert dispatcher.post("/console/incidents/999/cancel", {"reason": "x"}).status_code == 404


def test_the_api_accepts_a_console_session_but_unsafe_calls_need_the_csrf_header(service: DispatchService) -> None:
    browser = Browser(service)
    browser.login("rina")
    api = browser.base + "/api"
    assert browser.http.get(api + "/incidents", timeout=20).status_code == 200
    body = {"call_id": "C-api", "services": ["police"], "lat": -7.754, "lon": 113.216}
    assert browser.http.post(api + "/calls", json=body, timeout=20).status_code == 401
    created = browser.http.post(api + "/calls", json=body, headers={"X-CSRF-Token": browser.csrf}, timeout=20)
    assert created.status_code == 201
    # The role still applies: a call-taker's session cannot cancel.
    cancel = browser.http.post(
        f"{api}/incidents/{created.json()['incident_id']}/cancel",
        json={"reason": "x"},
        headers={"X-CSRF-Token": browser.csrf},
        timeout=20,
    )
    assert cancel.status_code == 403


def test_deactivation_and_password_reset_end_sessions(service: DispatchService, users: dict[str, int]) -> None:
    admin, budi = Browser(service), Browser(service)
    admin.login("admin")
    budi.login("budi")
    assert budi.get("/console/").url.endswith("/console/")
    admin.get("/console/admin/users")
    assert admin.post(f"/console/admin/users/{users['budi']}/password", {"password": "short"}).status_code == 200
    assert budi.get("/console/").url.endswith("/console/")  # a refused reset changed nothing
    admin.post(f"/console/admin/users/{users['budi']}/password", {"password": "baru-rahasia-9"})
    assert budi.get("/console/").url.endswith("/console/login?next=/console/")
    assert budi.login("budi", "baru-rahasia-9").url.endswith("/console/")
    admin.post(f"/console/admin/users/{users['budi']}/active", {"active": "0"})
    assert "/console/login" in budi.get("/console/units").url
    assert budi.login("budi", "baru-rahasia-9").status_code == 401
    # An admin cannot lock themselves out.
    page = admin.post(f"/console/admin/users/{users['admin']}/active", {"active": "0"})
    assert admin.get("/console/admin/users").status_code == 200 and page.status_code == 200


def test_an_admin_adds_a_user_who_can_log_in(service: DispatchService, sessions: sessionmaker[Session]) -> None:
    admin = Browser(service)
    admin.login("admin")
    admin.get("/console/admin/users")
    form = {"username": "sari", "name": "Sari (112)", "role": "call_taker", "language": "en", "password": "sari-12345"}
    page = admin.post("/console/admin/users", form)
    assert "sari" in page.text
    with sessions() as session:
        user = session.execute(select(User).where(User.username == "sari")).scalar_one()
        assert user.password_hash and "sari-12345" not in user.password_hash
    sari = Browser(service)
    board = sari.login("sari", "sari-12345")
    assert "Open incidents" in board.text  # her language is English


def test_the_language_switch_is_stored_on_the_user(service: DispatchService, sessions: sessionmaker[Session]) -> None:
    browser = Browser(service)
    assert "Kejadian terbuka" in browser.login("rina").text
    english = browser.post("/console/language", {"lang": "en", "next": "/console/units"})
    assert english.url.endswith("/console/units") and "Units board" in english.text
    with sessions() as session:
        assert session.execute(select(User.language).where(User.username == "rina")).scalar_one() == "en"
    again = Browser(service)
    assert "Open incidents" in again.login("rina").text


def test_a_call_with_a_map_pin_records_the_operators_location(
    service: DispatchService, sessions: sessionmaker[Session]
) -> None:
    browser = Browser(service)
    browser.login("rina")
    browser.get("/console/calls/new")
    form = {
        "call_id": "C-pin",
        "services": "police",
        "address": "Gang Buntu tidak dikenal 99",  # the gazetteer cannot place it; the pin can
        "lat": "-7.7543",
        "lon": "113.2159",
        "pin_source": "operator",
    }
    page = browser.post("/console/calls", form)
    assert page.status_code == 200
    with sessions() as session:
        incident = session.execute(select(Incident)).scalar_one()
        assert (incident.location_source, incident.lat, incident.location_needed) == ("operator", -7.7543, False)
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))
    # Never "location needed", not even for a moment: the pin came with the call.
    events = kinds(sessions, incident.id)
    assert events[:3] == ["call_logged", "geocode_failed", "location_overridden"]
    assert "flagged_for_review" not in events


def test_a_call_form_with_bad_input_is_shown_again_with_the_problem(service: DispatchService) -> None:
    browser = Browser(service)
    browser.login("rina")
    browser.get("/console/calls/new")
    page = browser.post("/console/calls", {"call_id": "C-bad", "classification": "normal", "address": "Jl. Mawar"})
    assert page.status_code == 422
    assert "Jl. Mawar" in page.text and "a normal call needs at least one service" in page.text


def test_geocode_preview(service: DispatchService) -> None:
    browser = Browser(service)
    browser.login("rina")
    found = browser.get("/console/geocode.json", params={"address": "Kel. Jati"}).json()
    assert found["found"] is True and -7.86 < found["lat"] < -7.68
    assert browser.get("/console/geocode.json", params={"address": "Jalan Tidak Ada 999"}).json()["found"] is False


@pytest.mark.parametrize(
    ("language", "warning"),
    [
        ("id", "Bagian alamat tidak cocok: Jl. Soekarno-Hatta ada di Kec. Kademangan, 4,2 km dari Kel. Kedopok"),
        ("en", "The parts of the address disagree: Jl. Soekarno-Hatta is in Kec. Kademangan, 4.2 km from Kel. Kedopok"),
    ],
)
def test_the_preview_of_an_address_whose_parts_disagree_offers_both_places_and_says_why(
    service: DispatchService, language: str, warning: str
) -> None:
    browser = Browser(service)
    browser.login("rina")
    browser.post("/console/language", {"lang": language})
    found = browser.get("/console/geocode.json", params={"address": "Jl. Soekarno-Hatta, Kel. Kedopok"}).json()
    assert found["found"] is True and found["auto_dispatch"] is False and found["confidence"] < 0.6
    # The geocoder's pick first (where the preview's lat/lon are), then the kelurahan the caller named.
    assert found["candidates"] == [
        {"name": "Jl. Soekarno-Hatta", "kind": "road", "lat": -7.749, "lon": 113.196, "area": "Kec. Kademangan",
         "picked": True, "apart_m": 0},
        {"name": "Kel. Kedopok", "kind": "kelurahan", "lat": -7.787, "lon": 113.196, "area": None,
         "picked": False, "apart_m": found["apart_m"]},
    ]  # fmt: skip
    assert (found["lat"], found["lon"]) == (-7.749, 113.196)
    assert 4150 < found["apart_m"] < 4250
    assert found["warning"].startswith(warning) and found["warning"].endswith(("di peta.", "on the map."))


def test_the_preview_of_an_address_whose_parts_agree_has_no_candidates(service: DispatchService) -> None:
    browser = Browser(service)
    browser.login("rina")
    found = browser.get("/console/geocode.json", params={"address": "Jl. Soekarno-Hatta, Kel. Jati"}).json()
    assert (found["lat"], found["lon"], found["auto_dispatch"]) == (-7.7479, 113.2231, True)
    assert "candidates" not in found and "warning" not in found


def test_the_event_stream_announces_new_timeline_events(service: DispatchService) -> None:
    browser = Browser(service)
    browser.login("rina")
    seen: list[str] = []

    def listen() -> None:
        with browser.http.get(browser.base + "/console/events", stream=True, timeout=20) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    seen.append(line)
                    if len(seen) >= 2:
                        return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    eventually(lambda: seen)  # the current id, at once
    started = time.monotonic()
    writer = Browser(service)
    writer.login("budi")
    writer.post("/console/calls", {"call_id": "C-live", "services": "police", "lat": "-7.754", "lon": "113.216"})
    thread.join(5)
    assert len(seen) >= 2 and time.monotonic() - started < 5
    assert int(seen[1].split(":")[1]) > int(seen[0].split(":")[1])


def test_pages_render_for_an_admin_with_the_demo_phone_link(service: DispatchService) -> None:
    browser = Browser(service)
    browser.login("admin")
    for path in [
        "/console/",
        "/console/map",
        "/console/calls/new",
        "/console/units",
        "/console/devices",
        "/console/stats",
    ]:
        page = browser.get(path)
        assert page.status_code == 200, path
        assert "/sandbox/twilio/phones" in page.text
    assert "BTN-0001" in browser.get("/console/devices").text
    assert "POL-01" in browser.get("/console/units").text
    leaflet = browser.http.get(browser.base + "/static/vendor/leaflet/leaflet.js", timeout=20)
    assert leaflet.status_code == 200 and "Leaflet" in leaflet.text[:500]
    assert browser.http.get(browser.base + "/static/vendor/leaflet/LICENSE", timeout=20).status_code == 200
    assert browser.get("/console/incidents/12345").status_code == 404
