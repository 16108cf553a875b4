"""Bad input gets a 4xx, never a 500: the whole HTTP surface, fuzzed against the running service.

The API is fuzzed by schemathesis from its own OpenAPI document (every answer must be a documented
status with a documented body); the webhooks, the link page and the console forms by hypothesis
strategies. Bounded (max_examples, no deadline) so the suite stays within CI's time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from sqlalchemy.orm import Session, sessionmaker
from twilio.request_validator import RequestValidator

from devices.simulator import SimulatedDevice
from dispatch.auth import hash_password, issue_token
from dispatch.models import Incident, User
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from tests.conftest import count, eventually
from tests.responder_helpers import UNIT_PHONES, fast_escalation, notifications, sandbox, texts_to

Start = Callable[..., DispatchService]
PASSWORD = "rahasia-123"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HUGE = 2**64 + 7
FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any text a client could send: non-ASCII, control characters, surrogates excluded (not encodable).
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
ids = st.one_of(st.integers(min_value=-5, max_value=HUGE * HUGE), st.just(HUGE))


@pytest.fixture
def running(start_service: Start, roster: None, sessions: sessionmaker[Session], broker_url: str) -> DispatchService:
    """A service with an incident paged to POL-01 (so ids, links and call SIDs exist) and one user per role."""
    service = start_service(escalation=fast_escalation([{"after_s": 0, "action": "notify_unit"}]))
    with transaction(sessions) as session:
        for username, role in (("rina", "call_taker"), ("budi", "dispatcher"), ("admin", "admin")):
            session.add(User(username=username, name=username, role=role, password_hash=hash_password(PASSWORD)))
    with SimulatedDevice(broker_url, "BTN-0001") as button:
        button.wait_status(button.press())
    eventually(lambda: texts_to(sandbox(service), UNIT_PHONES["POL-01"]))
    return service


def token_of(sessions: sessionmaker[Session], username: str) -> str:
    with transaction(sessions) as session:
        user = session.query(User).filter_by(username=username).one()
        return issue_token(session, user, "fuzz", utcnow())


# -- the API, from its OpenAPI document ---------------------------------------------------------------


def test_every_api_operation_answers_only_documented_statuses(
    running: DispatchService, sessions: sessionmaker[Session]
) -> None:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{running.web_port}/api/openapi.json")
    # An admin may do everything, so the generated requests reach past the role checks into the views.
    headers = {"Authorization": f"Bearer {token_of(sessions, 'admin')}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        # One bounded hypothesis run per operation; a failure names the operation and the request.
        @FUZZ
        @given(case=operation.as_strategy())
        def answers_as_documented(case: Case) -> None:
            # Not positive_data_acceptance: a schema-valid body may still be refused by a rule across
            # fields ("a normal call needs a service") or by the state (404, 409), which the document
            # lists as answers but cannot predict.
            case.call_and_validate(headers=headers, excluded_checks=[schemathesis.checks.positive_data_acceptance])

        answers_as_documented()


def test_the_document_lists_400_401_and_403_on_every_operation(
    running: DispatchService, sessions: sessionmaker[Session]
) -> None:
    document = requests.get(f"http://127.0.0.1:{running.web_port}/api/openapi.json", timeout=10).json()
    operations = [op for ops in document["paths"].values() for op in ops.values()]
    assert len(operations) >= 10
    for op in operations:
        assert {"400", "401", "403"} <= set(op["responses"]), op.get("operationId")
    # Schemathesis found this one: a NUL in a query is refused at the edge, before the operation.
    refused = requests.get(
        f"http://127.0.0.1:{running.web_port}/api/incidents",
        params={"state": "f\x00V"},
        headers={"Authorization": f"Bearer {token_of(sessions, 'rina')}"},
        timeout=10,
    )
    assert refused.status_code == 400 and "NUL" in refused.json()["error"]


@pytest.mark.parametrize(
    ("token", "expected"), [(None, 401), ("dsp_not-a-token", 401), ("rina", 403)], ids=["none", "bad", "role"]
)
def test_every_dispatcher_operation_refuses_without_the_role_as_documented(
    running: DispatchService, sessions: sessionmaker[Session], token: str | None, expected: int
) -> None:
    bearer = token_of(sessions, token) if token == "rina" else token
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    base = f"http://127.0.0.1:{running.web_port}/api/incidents/1"
    for action in ("assign", "escalate", "cancel", "close"):
        assert requests.post(f"{base}/{action}", json={}, headers=headers, timeout=10).status_code == expected


# -- the regressions that were 500s ------------------------------------------------------------------


def test_the_inputs_that_gave_500s_now_get_4xx(running: DispatchService, sessions: sessionmaker[Session]) -> None:
    base = f"http://127.0.0.1:{running.web_port}"
    bearer = {"Authorization": f"Bearer {token_of(sessions, 'admin')}"}
    assert requests.get(f"{base}/a/1v.ñé", timeout=10).status_code == 404  # non-ASCII link token
    assert requests.post(f"{base}/a/1a.ñé", timeout=10).status_code == 404
    assert requests.get(f"{base}/api/incidents/{HUGE}", headers=bearer, timeout=10).status_code == 404
    assert requests.post(f"{base}/api/incidents/{HUGE}/close", headers=bearer, json={}, timeout=10).status_code == 404
    assert requests.get(f"{base}/api/incidents?before_id={HUGE}", headers=bearer, timeout=10).status_code == 422
    # NUL characters: PostgreSQL refuses them deep in a transaction.
    assert requests.get(f"{base}/api/incidents?state=a%00b", headers=bearer, timeout=10).status_code == 400
    nul_reason = requests.post(
        f"{base}/api/incidents/1/cancel", headers=bearer, json={"reason": "x\u0000y"}, timeout=10
    )
    assert nul_reason.status_code == 422 and "NUL" in nul_reason.text

    browser = requests.Session()
    login = browser.get(f"{base}/console/login", timeout=10)
    csrf = CSRF.search(login.text)
    assert csrf is not None
    forged = browser.post(f"{base}/console/login", data={"csrf_token": "ñé", "username": "budi"}, timeout=10)
    assert forged.status_code == 400  # non-ASCII CSRF token
    done = browser.post(
        f"{base}/console/login",
        data={"csrf_token": csrf.group(1), "username": "budi", "password": PASSWORD, "next": "/console/\r\nX: y"},
        timeout=10,
        allow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["Location"].endswith("/console/")  # newline in next
    assert "X" not in done.headers
    assert browser.get(f"{base}/console/incidents/{HUGE}", timeout=10).status_code == 404
    nul_login = browser.post(
        f"{base}/console/login", data={"csrf_token": csrf.group(1), "username": "bu\x00di"}, timeout=10
    )
    assert nul_login.status_code == 400 and "NUL" in nul_login.text


# -- webhooks -------------------------------------------------------------------------------------------


def post_signed(service: DispatchService, path: str, form: dict[str, str], *, sign: bool) -> requests.Response:
    url = f"{service.public_base}{path}"
    headers = {}
    if sign:
        headers["X-Twilio-Signature"] = RequestValidator(service.twilio_auth_token).compute_signature(url, form)
    return requests.post(url, data=form, headers=headers, timeout=20)


forms = st.dictionaries(
    st.sampled_from(
        [
            *("MessageSid", "CallSid", "From", "To", "Body", "Digits", "MessageStatus", "CallStatus", "ErrorCode"),
            *("ButtonPayload", "ButtonText"),
        ]
    ),
    any_text,
    max_size=6,
)


@FUZZ
@given(form=forms, sign=st.booleans(), digits=st.sampled_from(["1", "2", "*", "", "9", "\u0661"]))
def test_the_sms_whatsapp_and_keypad_webhooks_never_answer_500(
    running: DispatchService, form: dict[str, str], sign: bool, digits: str
) -> None:
    # Unsigned: refused, 403, or 400 when the input is malformed anyway (a NUL character is
    # refused for every route before any view runs); never served.
    refused = (400, 403)
    sms = post_signed(running, "/twilio/sms", {"MessageSid": "SM" + "1" * 32, **form}, sign=sign)
    assert sms.status_code < 500 and (sign or sms.status_code in refused)
    [voice_id] = [n.id for n in notifications(running.sessions)][:1] or [1]
    gather = post_signed(running, f"/twilio/voice/gather/{voice_id}", {**form, "Digits": digits}, sign=sign)
    assert gather.status_code < 500 and (sign or gather.status_code in refused)
    chat = {"MessageSid": "SM" + "2" * 32, "From": "whatsapp:+628110000101", "ButtonPayload": "accept:1", **form}
    whatsapp = post_signed(running, "/twilio/whatsapp", chat, sign=sign)
    assert whatsapp.status_code < 500 and (sign or whatsapp.status_code in refused)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=any_text, error=any_text, known=st.booleans())
def test_the_status_webhooks_never_answer_500(running: DispatchService, status: str, error: str, known: bool) -> None:
    # An unknown SID is waited for (up to 3 s), so most examples use the real one.
    sid = notifications(running.sessions)[0].provider_sid if known else "SM" + "e" * 32
    assert sid is not None
    form = {"MessageSid": sid, "MessageStatus": status, "ErrorCode": error}
    assert post_signed(running, "/twilio/sms/status", form, sign=True).status_code < 500
    assert post_signed(running, "/twilio/whatsapp/status", form, sign=True).status_code < 500
    assert (
        post_signed(running, "/twilio/voice/status", {"CallSid": sid, "CallStatus": status}, sign=True).status_code
        < 500
    )


@FUZZ
@given(path_id=ids)
def test_a_gather_for_any_id_never_answers_500(running: DispatchService, path_id: int) -> None:
    answer = post_signed(
        running, f"/twilio/voice/gather/{path_id}", {"CallSid": "CA" + "1" * 32, "Digits": "1"}, sign=True
    )
    assert answer.status_code in (200, 404)


# -- the link page ------------------------------------------------------------------------------------


@FUZZ
@given(token=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/?#%"), min_size=1, max_size=60))
def test_any_link_token_is_a_404_never_a_500(running: DispatchService, token: str) -> None:
    url = f"http://127.0.0.1:{running.web_port}/a/{requests.utils.quote(token, safe='')}"
    assert requests.get(url, timeout=10).status_code in (404, 405)
    assert requests.post(url, timeout=10).status_code in (404, 405)


# -- console forms --------------------------------------------------------------------------------------


class Console:
    """A logged-in dispatcher's browser session (form posts carry the page's CSRF token)."""

    def __init__(self, service: DispatchService, username: str) -> None:
        self.base = f"http://127.0.0.1:{service.web_port}"
        self.http = requests.Session()
        self.csrf = self._csrf("/console/login")
        self.post("/console/login", {"username": username, "password": PASSWORD})

    def _csrf(self, path: str) -> str:
        match = CSRF.search(self.http.get(self.base + path, timeout=20).text)
        assert match is not None, path
        return match.group(1)

    def post(self, path: str, form: dict[str, str]) -> requests.Response:
        return self.http.post(self.base + path, data={"csrf_token": self.csrf, **form}, timeout=20)


@pytest.fixture
def admin_console(running: DispatchService) -> Iterator[Console]:
    console = Console(running, "admin")
    yield console
    console.http.close()


CONSOLE_FORMS = [
    "/console/login",
    "/console/language",
    "/console/calls",
    "/console/incidents/{incident}/assign",
    "/console/incidents/{incident}/escalate",
    "/console/incidents/{incident}/cancel",
    "/console/incidents/{incident}/close",
    "/console/incidents/{incident}/location",
    "/console/admin/users",
    "/console/admin/users/{user}/password",
    "/console/admin/users/{user}/active",
]
console_fields = st.dictionaries(
    st.sampled_from(
        [
            "username",
            "password",
            "next",
            "lang",
            "unit_id",
            "reason",
            "disposition",
            "lat",
            "lon",
            "address",
            "services",
            "classification",
            "priority",
            "caller_number",
            "description",
            "name",
            "role",
            "language",
            "active",
            "call_id",
        ]
    ),
    any_text,
    max_size=8,
)


@FUZZ
@given(path=st.sampled_from(CONSOLE_FORMS), form=console_fields, target=ids)
def test_no_console_form_answers_500(
    running: DispatchService,
    admin_console: Console,
    sessions: sessionmaker[Session],
    path: str,
    form: dict[str, str],
    target: int,
) -> None:
    with sessions() as session:
        incident = session.query(Incident.id).scalar()
    if path == "/console/admin/users/{user}/active":
        form = {**form, "active": "1"}  # never lock the fuzzing admin out
    filled = path.format(incident=incident if target % 2 else target, user=target)
    assert admin_console.post(filled, form).status_code < 500, (filled, form)
    assert count(sessions, Incident) >= 1


CONSOLE_PAGES = ["/console/login", "/console/geocode.json", "/console/units", "/console/devices", "/console/map.json"]


@FUZZ
@given(
    path=st.sampled_from(CONSOLE_PAGES),
    query=st.dictionaries(st.sampled_from(["next", "lang", "address", "fragment"]), any_text, max_size=3),
)
def test_no_console_page_answers_500_whatever_its_query(
    running: DispatchService, admin_console: Console, path: str, query: dict[str, str]
) -> None:
    assert admin_console.http.get(admin_console.base + path, params=query, timeout=20).status_code < 500, (path, query)


# -- the SMS gateway's webhook --------------------------------------------------------------------------

GATEWAY_KEY = "fuzz-gateway-signing-key"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-HUGE, max_value=HUGE) | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)
gateway_events = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["sms:received", "sms:sent", "sms:delivered", "sms:failed", "system:ping"]) | any_text,
        "id": any_text | st.integers(),
        "payload": st.fixed_dictionaries(
            {},
            optional={
                "phoneNumber": st.sampled_from([UNIT_PHONES["POL-01"], "+62" + "8" * 40, "+62811\x00"]) | any_text,
                "message": st.sampled_from(["YA 1", "TIDAK 1", "86", "YA\x00 1"]) | any_text,
                "messageId": st.sampled_from(["m" * 300, "n\x00"]) | any_text | st.integers(min_value=-HUGE),
                "reason": any_text,
            },
        )
        | json_values,
    }
)


@pytest.fixture
def gateway_hooks(start_service: Start, roster: None) -> DispatchService:
    """A service whose gateway webhook is open (signing key set), the gateway itself not needed here."""
    return start_service(sms_gateway={"signing_key": GATEWAY_KEY})


@FUZZ
@given(event=gateway_events | json_values, sign=st.booleans(), stale=st.booleans())
def test_the_sms_gateway_webhook_never_answers_500(
    gateway_hooks: DispatchService, event: object, sign: bool, stale: bool
) -> None:
    import json
    import time

    from dispatch.web.sms_gateway_hooks import signature

    body = json.dumps(event).encode()
    stamp = str(int(time.time()) - (3600 if stale else 0))
    given_signature = signature(GATEWAY_KEY.encode(), body, stamp) if sign else "0" * 64
    answer = requests.post(
        f"{gateway_hooks.public_base}/sms-gateway/events",
        data=body,
        headers={"Content-Type": "application/json", "X-Timestamp": stamp, "X-Signature": given_signature},
        timeout=20,
    )
    assert answer.status_code < 500, answer.text
    if not sign or stale:
        assert answer.status_code in (400, 403)


GATEWAY_400S = {
    "number-too-long": {"phoneNumber": "+62" + "8" * 40, "message": "YA 1", "messageId": "long-number"},
    "id-too-long": {"phoneNumber": UNIT_PHONES["POL-01"], "message": "YA 1", "messageId": "m" * 300},
    "nul-in-id": {"phoneNumber": UNIT_PHONES["POL-01"], "message": "YA 1", "messageId": "nul\x00"},
    "wrong-types": {"phoneNumber": ["+62"], "message": {"YA": 1}, "messageId": None},
}


@pytest.mark.parametrize(
    ("kind", "case"),
    [("sms:received", case) for case in GATEWAY_400S]
    # A delivery report reads only the message id: its phone number is not looked at.
    + [("sms:failed", case) for case in GATEWAY_400S if case != "number-too-long"],
)
def test_gateway_payloads_that_gave_500s_now_get_400(gateway_hooks: DispatchService, kind: str, case: str) -> None:
    payload = GATEWAY_400S[case]
    import json
    import time

    from dispatch.web.sms_gateway_hooks import signature

    body = json.dumps({"event": kind, "id": f"{kind}-{time.monotonic_ns()}", "payload": payload}).encode()
    stamp = str(int(time.time()))
    answer = requests.post(
        f"{gateway_hooks.public_base}/sms-gateway/events",
        data=body,
        headers={"X-Timestamp": stamp, "X-Signature": signature(GATEWAY_KEY.encode(), body, stamp)},
        timeout=20,
    )
    assert answer.status_code == 400 and "error" in answer.json()
