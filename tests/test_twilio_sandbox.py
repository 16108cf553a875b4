"""The Twilio sandbox, exercised only through the real twilio SDK and real HTTP.

Each test starts a sandbox on a free port and, where webhooks matter, a tiny Flask
"application" that records what Twilio (here: the sandbox) sent it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests
from flask import Flask, request
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from werkzeug.serving import BaseWSGIServer, make_server

from responders.sandbox import (
    SandboxStore,
    run_sandbox_server,
    sandbox_api_base,
    stop_sandbox_server,
)
from responders.twilio_client import (
    RebasingTwilioHttpClient,
    classify_twilio_error,
    make_twilio_client,
    request_may_have_arrived,
)
from tests.conftest import free_port

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "sandbox-auth-token"
TWILIO_NUMBER = "+15005550006"
RESPONDER = "+6281234561234"


# -- a tiny application that receives webhooks ------------------------------------------


@dataclass
class Hit:
    """One webhook request as the application saw it."""

    path: str
    url: str
    form: dict[str, str]
    signature: str


@dataclass
class Receiver:
    """Records every request; answers with canned TwiML per path."""

    base: str = ""
    hits: list[Hit] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    fail_paths: set[str] = field(default_factory=set)

    def record(self, hit: Hit) -> None:
        with self.changed:
            self.hits.append(hit)
            self.changed.notify_all()

    def wait_for(self, path: str, count: int = 1, timeout_s: float = 5.0) -> list[Hit]:
        """Wait until ``count`` requests reached ``path``; return them in arrival order."""

        def matching() -> list[Hit]:
            return [hit for hit in self.hits if hit.path == path]

        with self.changed:
            self.changed.wait_for(lambda: len(matching()) >= count, timeout_s)
            found = matching()
        assert len(found) >= count, f"expected {count} request(s) to {path}, got {len(found)}"
        return found

    def of(self, path: str) -> list[Hit]:
        with self.changed:
            return [hit for hit in self.hits if hit.path == path]


def _receiver_app(receiver: Receiver) -> Flask:
    app = Flask("receiver")

    @app.post("/<path:path>")
    def hook(path: str) -> tuple[str, int, dict[str, str]]:
        receiver.record(
            Hit(
                path="/" + path,
                url=request.url,
                form=request.form.to_dict(),
                signature=request.headers.get("X-Twilio-Signature", ""),
            )
        )
        if "/" + path in receiver.fail_paths:
            return "boom", 500, {}
        twiml = {
            "/twilio/sms": "<Response><Message>Terima kasih, diterima.</Message></Response>",
            "/twilio/voice/alert": (
                '<Response><Gather action="gather?incident=7" numDigits="1">'
                "<Say>Darurat. Tekan 1 untuk menerima, 2 untuk menolak.</Say></Gather></Response>"
            ),
            "/twilio/voice/gather": "<Response><Say>Terima kasih.</Say><Hangup/></Response>",
        }.get("/" + path, "")
        return twiml, 200, {"Content-Type": "text/xml"}

    return app


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = make_server("127.0.0.1", 0, _receiver_app(state), threaded=True)
    state.base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass
class Sandbox:
    store: SandboxStore
    server: BaseWSGIServer
    client: Client

    @property
    def base(self) -> str:
        return sandbox_api_base(self.server)

    def phone_url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def sandbox(receiver: Receiver) -> Iterator[Sandbox]:
    store = SandboxStore()
    thread, server = run_sandbox_server(
        "127.0.0.1",
        0,
        store,
        ACCOUNT_SID,
        AUTH_TOKEN,
        lambda: receiver.base,
        callback_delay_s=0.05,
        retry_backoff_s=0.05,
    )
    client = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, sandbox_api_base(server), timeout_s=5)
    yield Sandbox(store, server, client)
    stop_sandbox_server(thread, server)


def _is_genuine(hit: Hit) -> bool:
    return bool(RequestValidator(AUTH_TOKEN).validate(hit.url, hit.form, hit.signature))


def _send_alert(sandbox: Sandbox, receiver: Receiver, to: str = RESPONDER) -> str:
    message = sandbox.client.messages.create(
        to=to,
        from_=TWILIO_NUMBER,
        body="DARURAT: panic button Kel. Mayangan",
        validity_period=600,
        status_callback=receiver.base + "/twilio/status",
    )
    return str(message.sid)


def _raises(action: Callable[[], object]) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as caught:
        action()
    return caught.value


# -- REST API through the SDK -----------------------------------------------------------


def test_sdk_message_create_returns_sid_and_sandbox_keeps_validity_period_and_callback(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    message = sandbox.client.messages.create(
        to=RESPONDER,
        from_=TWILIO_NUMBER,
        body="DARURAT: panic button Kel. Mayangan",
        validity_period=600,
        status_callback=receiver.base + "/twilio/status",
    )

    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert message.status == "queued"
    assert message.to == RESPONDER and message.from_ == TWILIO_NUMBER
    assert message.date_created is not None and message.date_created.tzinfo is not None
    stored = sandbox.store.message(message.sid)
    assert stored is not None
    assert stored.validity_period == 600
    assert stored.status_callback == receiver.base + "/twilio/status"
    assert stored.body == "DARURAT: panic button Kel. Mayangan"
    raw = sandbox.store.requests[-1]
    assert raw.form["ValidityPeriod"] == ["600"] and raw.auth_username == ACCOUNT_SID


def test_sdk_fetch_sees_message_progress_to_delivered(sandbox: Sandbox, receiver: Receiver) -> None:
    sid = _send_alert(sandbox, receiver)

    receiver.wait_for("/twilio/status", count=2)

    fetched = sandbox.client.messages(sid).fetch()
    assert fetched.status == "delivered"
    assert fetched.date_sent is not None


def test_sdk_call_create_with_inline_twiml_gather_is_stored(sandbox: Sandbox, receiver: Receiver) -> None:
    twiml = (
        f'<Response><Gather action="{receiver.base}/twilio/voice/gather" numDigits="1">'
        "<Say>Tekan 1 untuk menerima.</Say></Gather></Response>"
    )

    call = sandbox.client.calls.create(
        to=RESPONDER, from_=TWILIO_NUMBER, twiml=twiml, status_callback=receiver.base + "/twilio/call-status"
    )

    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert call.status == "queued"
    stored = sandbox.store.call(call.sid)
    assert stored is not None and stored.twiml == twiml and stored.url is None
    assert sandbox.client.calls(call.sid).fetch().to == RESPONDER


def test_wrong_auth_token_is_rejected_with_401_and_classified_permanent(sandbox: Sandbox) -> None:
    intruder = make_twilio_client(ACCOUNT_SID, "not-the-token", sandbox.base)

    error = _raises(lambda: intruder.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="x"))

    assert error.status == 401 and error.code == 20003
    assert classify_twilio_error(error) == ("permanent", 20003)
    assert sandbox.store.messages == []


def test_injected_500s_fail_exactly_the_next_three_requests_and_the_sdk_does_not_retry(
    sandbox: Sandbox,
) -> None:
    sandbox.store.fail_next(3, 500)

    for _ in range(3):
        error = _raises(lambda: sandbox.client.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="x"))
        assert error.status == 500
        assert classify_twilio_error(error) == ("transient", 20500)
    message = sandbox.client.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="x")

    assert message.status == "queued"
    # One HTTP request per SDK call: neither the SDK nor requests retried behind our back.
    assert [raw.response_status for raw in sandbox.store.requests] == [500, 500, 500, 201]


def test_injected_429_is_transient(sandbox: Sandbox) -> None:
    sandbox.store.fail_next(1, 429)

    error = _raises(lambda: sandbox.client.calls.create(to=RESPONDER, from_=TWILIO_NUMBER, twiml="<Response/>"))

    assert error.status == 429
    assert classify_twilio_error(error) == ("transient", 20429)


def test_rejected_number_returns_21211_and_is_classified_permanent(sandbox: Sandbox) -> None:
    sandbox.store.reject_numbers["+6281200000000"] = 21211

    error = _raises(lambda: sandbox.client.messages.create(to="+6281200000000", from_=TWILIO_NUMBER, body="x"))

    assert error.status == 400 and error.code == 21211
    assert "+6281200000000" in error.msg  # Twilio's own wording names the number
    assert classify_twilio_error(error) == ("permanent", 21211)


@pytest.mark.parametrize("code", [21610, 21614])
def test_unsubscribed_and_landline_rejections_are_permanent(sandbox: Sandbox, code: int) -> None:
    sandbox.store.reject_numbers[RESPONDER] = code

    error = _raises(lambda: sandbox.client.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="x"))

    assert classify_twilio_error(error) == ("permanent", code)


def test_message_without_body_is_rejected_like_twilio(sandbox: Sandbox) -> None:
    error = _raises(lambda: sandbox.client.messages.create(to=RESPONDER, from_=TWILIO_NUMBER))

    assert error.status == 400 and error.code == 21602
    assert classify_twilio_error(error) == ("permanent", 21602)


def test_unknown_message_sid_is_a_404(sandbox: Sandbox) -> None:
    error = _raises(lambda: sandbox.client.messages("SM" + "f" * 32).fetch())

    assert error.status == 404 and classify_twilio_error(error)[0] == "permanent"


# -- signed webhooks --------------------------------------------------------------------


def test_status_callbacks_arrive_sent_then_delivered_with_a_valid_twilio_signature(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    sid = _send_alert(sandbox, receiver)

    hits = receiver.wait_for("/twilio/status", count=2)

    assert [hit.form["MessageStatus"] for hit in hits] == ["sent", "delivered"]
    for hit in hits:
        assert hit.form["MessageSid"] == sid
        assert hit.form["AccountSid"] == ACCOUNT_SID
        assert hit.form["To"] == RESPONDER and hit.form["From"] == TWILIO_NUMBER
        assert "ErrorCode" not in hit.form
        assert _is_genuine(hit)


def test_forged_or_tampered_status_callback_fails_signature_validation(sandbox: Sandbox, receiver: Receiver) -> None:
    _send_alert(sandbox, receiver)
    genuine = receiver.wait_for("/twilio/status")[0]
    validator = RequestValidator(AUTH_TOKEN)

    assert validator.validate(genuine.url, genuine.form, genuine.signature)
    assert not validator.validate(genuine.url, genuine.form, "Zm9yZ2VkLXNpZ25hdHVyZQ==")
    assert not validator.validate(genuine.url, {**genuine.form, "MessageStatus": "read"}, genuine.signature)
    assert not RequestValidator("another-token").validate(genuine.url, genuine.form, genuine.signature)


def test_undeliverable_number_ends_undelivered_with_error_code_in_callback(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    sandbox.store.undeliverable_numbers[RESPONDER] = 30003

    _send_alert(sandbox, receiver)
    hits = receiver.wait_for("/twilio/status", count=2)

    assert [hit.form["MessageStatus"] for hit in hits] == ["sent", "undelivered"]
    assert hits[1].form["ErrorCode"] == "30003"


def test_message_queued_longer_than_its_validity_period_fails_with_30036(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.store.queue_delay_s = 1.2
    message = sandbox.client.messages.create(
        to=RESPONDER,
        from_=TWILIO_NUMBER,
        body="stale alert",
        validity_period=1,
        status_callback=receiver.base + "/twilio/status",
    )

    hit = receiver.wait_for("/twilio/status")[0]

    assert hit.form["MessageStatus"] == "failed" and hit.form["ErrorCode"] == "30036"
    assert sandbox.client.messages(message.sid).fetch().error_code == 30036


def test_unreachable_status_callback_is_retried_three_times_then_given_up(sandbox: Sandbox, receiver: Receiver) -> None:
    receiver.fail_paths.add("/twilio/status")
    sid = _send_alert(sandbox, receiver)

    assert sandbox.store.wait_for(lambda s: len(s.webhooks) >= 6)
    assert sandbox.store.wait_for(lambda s: (m := s.message(sid)) is not None and m.status == "delivered")

    attempts = [(w.params["MessageStatus"], w.attempt, w.status_code) for w in sandbox.store.webhooks]
    assert attempts == [("sent", n, 500) for n in (1, 2, 3)] + [("delivered", n, 500) for n in (1, 2, 3)]


# -- the phone simulator ----------------------------------------------------------------


def test_sms_typed_on_the_phone_page_reaches_the_app_signed_and_addressed_to_the_sending_number(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    _send_alert(sandbox, receiver)  # the phone now "knows" the Twilio number that texted it

    page = requests.post(sandbox.phone_url("/phones/sms"), data={"From": RESPONDER, "Body": "YA"}, timeout=5)

    hit = receiver.wait_for("/twilio/sms")[0]
    assert hit.url == receiver.base + "/twilio/sms"
    assert hit.form["From"] == RESPONDER and hit.form["To"] == TWILIO_NUMBER
    assert hit.form["Body"] == "YA" and hit.form["NumMedia"] == "0"
    assert hit.form["AccountSid"] == ACCOUNT_SID
    assert hit.form["MessageSid"].startswith("SM") and len(hit.form["MessageSid"]) == 34
    assert _is_genuine(hit)
    result = page.json()
    assert page.status_code == 200 and result["ok"]
    assert "Terima kasih" in result["response"]["body"]  # the app's TwiML, shown on the page
    assert result["replies"] == ["Terima kasih, diterima."]
    replies = [m for m in sandbox.store.messages if m.direction == "outbound-reply"]
    assert [(m.to, m.body) for m in replies] == [(RESPONDER, "Terima kasih, diterima.")]


def test_sms_from_a_phone_never_texted_goes_to_the_default_twilio_number(sandbox: Sandbox, receiver: Receiver) -> None:
    requests.post(sandbox.phone_url("/phones/sms"), data={"From": "+6285299998888", "Body": "halo"}, timeout=5)

    assert receiver.wait_for("/twilio/sms")[0].form["To"] == TWILIO_NUMBER


def test_keypad_digit_is_posted_signed_to_the_inline_gather_action(sandbox: Sandbox, receiver: Receiver) -> None:
    call = sandbox.client.calls.create(
        to=RESPONDER,
        from_=TWILIO_NUMBER,
        twiml=(
            f'<Response><Gather action="{receiver.base}/twilio/voice/gather" numDigits="1">'
            "<Say>Tekan 1 untuk menerima.</Say></Gather></Response>"
        ),
    )

    page = requests.post(sandbox.phone_url(f"/phones/calls/{call.sid}/digits"), data={"Digits": "1"}, timeout=5)

    hit = receiver.wait_for("/twilio/voice/gather")[0]
    assert hit.form["CallSid"] == call.sid
    assert hit.form["Digits"] == "1"
    assert hit.form["CallStatus"] == "in-progress"
    assert hit.form["From"] == TWILIO_NUMBER and hit.form["To"] == RESPONDER
    assert _is_genuine(hit)
    result = page.json()
    assert "<Say>Terima kasih.</Say>" in result["response"]["body"]
    # The app's answer has no further <Gather>: Twilio plays it and hangs up.
    assert result["call"]["status"] == "completed"
    assert sandbox.client.calls(call.sid).fetch().status == "completed"


def test_call_with_url_fetches_twiml_signed_and_resolves_a_relative_gather_action(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    call = sandbox.client.calls.create(
        to=RESPONDER,
        from_=TWILIO_NUMBER,
        url=receiver.base + "/twilio/voice/alert",
        status_callback=receiver.base + "/twilio/call-status",
        status_callback_event=["answered", "completed"],
    )

    requests.post(sandbox.phone_url(f"/phones/calls/{call.sid}/digits"), data={"Digits": "2"}, timeout=5)

    fetch = receiver.wait_for("/twilio/voice/alert")[0]
    assert fetch.form["CallSid"] == call.sid and _is_genuine(fetch)
    gather = receiver.wait_for("/twilio/voice/gather")[0]
    assert gather.url == receiver.base + "/twilio/voice/gather?incident=7"
    assert gather.form["Digits"] == "2" and _is_genuine(gather)
    statuses = receiver.wait_for("/twilio/call-status", count=2)
    assert [hit.form["CallStatus"] for hit in statuses] == ["in-progress", "completed"]
    assert all(_is_genuine(hit) for hit in statuses)


def test_letting_the_call_ring_out_posts_no_answer_to_the_status_callback(sandbox: Sandbox, receiver: Receiver) -> None:
    call = sandbox.client.calls.create(
        to=RESPONDER,
        from_=TWILIO_NUMBER,
        twiml="<Response><Gather><Say>Halo</Say></Gather></Response>",
        status_callback=receiver.base + "/twilio/call-status",
    )

    page = requests.post(sandbox.phone_url(f"/phones/calls/{call.sid}/no-answer"), timeout=5)

    hit = receiver.wait_for("/twilio/call-status")[0]
    assert hit.form["CallStatus"] == "no-answer" and hit.form["CallSid"] == call.sid
    assert _is_genuine(hit)
    assert page.json()["call"]["status"] == "no-answer"
    again = requests.post(sandbox.phone_url(f"/phones/calls/{call.sid}/digits"), data={"Digits": "1"}, timeout=5)
    assert again.status_code == 409  # a finished call has no keypad


def test_hanging_up_without_pressing_posts_completed(sandbox: Sandbox, receiver: Receiver) -> None:
    call = sandbox.client.calls.create(
        to=RESPONDER,
        from_=TWILIO_NUMBER,
        twiml="<Response><Gather><Say>Halo</Say></Gather></Response>",
        status_callback=receiver.base + "/twilio/call-status",
    )

    requests.post(sandbox.phone_url(f"/phones/calls/{call.sid}/hangup"), timeout=5)

    hit = receiver.wait_for("/twilio/call-status")[0]
    assert hit.form["CallStatus"] == "completed" and _is_genuine(hit)
    assert receiver.of("/twilio/voice/gather") == []


def test_unanswered_call_rings_out_by_itself_after_its_timeout(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.client.calls.create(
        to=RESPONDER,
        from_=TWILIO_NUMBER,
        twiml="<Response><Say>Halo</Say></Response>",
        timeout=1,
        status_callback=receiver.base + "/twilio/call-status",
        status_callback_event=["ringing", "completed"],
    )

    hits = receiver.wait_for("/twilio/call-status", count=2)

    assert [hit.form["CallStatus"] for hit in hits] == ["ringing", "no-answer"]
    assert [hit.form["SequenceNumber"] for hit in hits] == ["0", "1"]


def test_sdk_call_update_cancels_a_ringing_call(sandbox: Sandbox, receiver: Receiver) -> None:
    call = sandbox.client.calls.create(
        to=RESPONDER,
        from_=TWILIO_NUMBER,
        twiml="<Response><Gather><Say>Halo</Say></Gather></Response>",
        status_callback=receiver.base + "/twilio/call-status",
    )

    updated = sandbox.client.calls(call.sid).update(status="canceled")

    assert updated.status == "canceled"
    assert receiver.wait_for("/twilio/call-status")[0].form["CallStatus"] == "canceled"


def test_phone_page_is_self_contained_and_its_json_groups_activity_per_phone(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    _send_alert(sandbox, receiver)
    sandbox.client.calls.create(
        to=RESPONDER, from_=TWILIO_NUMBER, twiml="<Response><Gather><Say>Tekan 1</Say></Gather></Response>"
    )
    _send_alert(sandbox, receiver, to="+6285211112222")

    page = requests.get(sandbox.phone_url("/phones"), timeout=5)
    data = requests.get(sandbox.phone_url("/phones.json"), timeout=5).json()

    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "<script src" not in page.text and "<link" not in page.text  # no CDN, no external assets
    assert "setInterval(refresh, 2000)" in page.text
    assert [phone["number"] for phone in data["phones"]] == [RESPONDER, "+6285211112222"]
    first = data["phones"][0]
    assert first["twilio_number"] == TWILIO_NUMBER
    assert first["calls"][0]["prompt"] == ["Tekan 1"] and first["calls"][0]["has_gather"]
    assert first["messages"][0]["body"].startswith("DARURAT")


# -- the adapter itself -----------------------------------------------------------------


def test_adapter_rewrites_twilio_urls_onto_the_base_without_sdk_retries() -> None:
    http = RebasingTwilioHttpClient("http://127.0.0.1:9/sandbox/twilio/", timeout_s=3)

    assert (
        http.rebase("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json?PageSize=5")
        == "http://127.0.0.1:9/sandbox/twilio/2010-04-01/Accounts/AC1/Messages.json?PageSize=5"
    )
    assert http.rebase("https://api.sydney.au1.twilio.com/2010-04-01/x.json").startswith("http://127.0.0.1:9/")
    assert http.rebase("https://example.org/x") == "https://example.org/x"
    assert RebasingTwilioHttpClient(None, timeout_s=3).rebase("https://api.twilio.com/a") == (
        "https://api.twilio.com/a"
    )
    assert http.timeout == 3
    # The SDK's own transport retry is off for both schemes: the outbox owns retrying.
    assert all(adapter.max_retries.total == 0 for adapter in http.session.adapters.values())


def test_adapter_refuses_empty_credentials_instead_of_reading_the_environment() -> None:
    with pytest.raises(ValueError):
        make_twilio_client("", AUTH_TOKEN, None)


def test_unreachable_api_is_a_transient_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    client = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, f"http://127.0.0.1:{free_port}", timeout_s=2)

    with pytest.raises(requests.ConnectionError) as caught:
        client.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="x")

    assert classify_twilio_error(caught.value) == ("transient", None)


def test_api_that_never_answers_hits_the_client_timeout_and_is_transient() -> None:
    with socket.socket() as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        client = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, f"http://127.0.0.1:{port}", timeout_s=0.3)

        with pytest.raises(requests.Timeout) as caught:
            client.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="x")

    assert classify_twilio_error(caught.value) == ("transient", None)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, 21211, ("permanent", 21211)),
        (400, 21610, ("permanent", 21610)),
        (400, 21614, ("permanent", 21614)),
        (404, 20404, ("permanent", 20404)),
        (403, None, ("permanent", None)),
        (429, 20429, ("transient", 20429)),
        (500, 20500, ("transient", 20500)),
        (503, 503, ("transient", None)),  # SDK copies the status when the body has no code
        (502, None, ("transient", None)),
    ],
)
def test_classification_of_twilio_rest_errors(status: int, code: int | None, expected: tuple[str, int]) -> None:
    error = TwilioRestException(status, "https://api.twilio.com/x", "msg", code, "POST")

    assert classify_twilio_error(error) == expected


def test_unexpected_exceptions_are_permanent_so_bugs_are_not_retried() -> None:
    assert classify_twilio_error(ValueError("bad config")) == ("permanent", None)
    assert classify_twilio_error(requests.exceptions.InvalidURL("nope")) == ("permanent", None)
    assert classify_twilio_error(requests.exceptions.ReadTimeout()) == ("transient", None)


# -- when is a failed request's outcome unknown ------------------------------------------


def _exception_of(action: Callable[[], object]) -> Exception:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("the request did not fail")


def test_a_read_timeout_leaves_the_outcome_unknown_and_the_message_is_listed(sandbox: Sandbox) -> None:
    impatient = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, sandbox.base, timeout_s=0.3)
    sandbox.store.stall_next(1, 1.0)

    error = _exception_of(lambda: impatient.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="DARURAT 1"))

    assert isinstance(error, requests.Timeout)
    assert request_may_have_arrived(error)
    [listed] = sandbox.client.messages.list(to=RESPONDER, from_=TWILIO_NUMBER, limit=20)
    assert listed.body == "DARURAT 1" and listed.sid == sandbox.store.messages[0].sid


def test_a_refused_connection_or_an_error_answer_means_nothing_was_created(sandbox: Sandbox) -> None:
    nobody_listening = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, f"http://127.0.0.1:{free_port()}", timeout_s=2)
    refused = _exception_of(lambda: nobody_listening.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="x"))
    sandbox.store.fail_next(1, 503)
    answered = _exception_of(lambda: sandbox.client.messages.create(to=RESPONDER, from_=TWILIO_NUMBER, body="x"))

    assert isinstance(refused, requests.ConnectionError) and not request_may_have_arrived(refused)
    assert isinstance(answered, TwilioRestException) and not request_may_have_arrived(answered)


def test_listing_filters_by_number_newest_first(sandbox: Sandbox, receiver: Receiver) -> None:
    first = _send_alert(sandbox, receiver)
    _send_alert(sandbox, receiver, to="+628110000999")
    second = _send_alert(sandbox, receiver)
    call = sandbox.client.calls.create(to=RESPONDER, from_=TWILIO_NUMBER, twiml="<Response><Say>x</Say></Response>")

    listed = sandbox.client.messages.list(to=RESPONDER, limit=20)

    assert [m.sid for m in listed] == [second, first]
    assert [c.sid for c in sandbox.client.calls.list(to=RESPONDER, from_=TWILIO_NUMBER)] == [call.sid]
    assert sandbox.client.calls.list(to="+628110000999") == []


def test_the_lookup_of_a_page_in_doubt_pages_back_past_hundreds_of_newer_messages(sandbox: Sandbox) -> None:
    """A unit paged 250 times in a burst: the one in doubt is on the second page of Twilio's list."""
    from datetime import UTC, datetime, timedelta

    from responders.channels import TwilioChannels

    channels = TwilioChannels(lambda: sandbox.client, "+15005550006", lambda: "http://127.0.0.1:9")
    started = datetime.now(UTC)
    first = channels.send_sms("+628110000101", "the page in doubt", validity_s=120)
    for n in range(250):
        sandbox.client.messages.create(to="+628110000101", from_="+15005550006", body=f"later page {n}")
    assert channels.find_sms("+628110000101", "the page in doubt", since=started) == first
    # Pages from before the attempt are never taken for it.
    assert channels.find_sms("+628110000101", "later page 3", since=datetime.now(UTC) + timedelta(minutes=5)) is None
