"""Flask blueprint that behaves like Twilio's REST API for Messages and Calls, plus phones.

What it imitates, and why it matters for the application under test:

* ``POST /2010-04-01/Accounts/<sid>/Messages.json`` and ``.../Calls.json`` take the same
  form fields, HTTP Basic auth and error bodies as Twilio, so the real SDK parses them
  and raises the same ``TwilioRestException`` s.  ``GET`` on the same two lists filters
  by ``To`` and ``From``, newest first, one page.
* Status callbacks, incoming SMS and ``<Gather>`` results reach the application as
  form POSTs signed with ``X-Twilio-Signature`` over the exact URL posted, so the
  application's signature check runs unchanged in the demo.
* ``/phones`` is a phone simulator for people: it shows what each responder's phone
  received and lets them reply, press keys or let a call ring out.
* WhatsApp: ``whatsapp:+62...`` To/From; ``ContentSid`` + ``ContentVariables`` render the
  configured template text (``content_templates``) and its quick-reply buttons; status
  callbacks go on to ``read``; a phone's button tap or text reaches ``/twilio/whatsapp``
  signed like every webhook, with ``ButtonPayload``/``ButtonText``.

Known simplifications: no ``<Redirect>``, ``<Dial>`` or recordings; call status
callbacks triggered from the phone page are sent before the page gets its answer.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import requests
from flask import Blueprint, Response, jsonify, render_template_string, request, url_for
from twilio.request_validator import RequestValidator

from responders.sandbox import words
from responders.sandbox.store import (
    FINAL_CALL_STATUSES,
    RawRequest,
    SandboxCall,
    SandboxMessage,
    SandboxStore,
    WebhookDelivery,
    new_sid,
    utcnow,
)

_log = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
WHATSAPP = "whatsapp:"  # the address prefix of WhatsApp senders and recipients
# Twilio's documented "magic" test number: obviously not a real sender in screenshots.
DEFAULT_TWILIO_NUMBER = "+15005550006"

_TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MAX_BODY_CHARS = 1600
_MAX_VALIDITY_PERIOD_S = 36000
_MAX_RESPONSE_CHARS = 65536
_CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})

# Twilio's own code for a bare HTTP failure, used when a test injects one without a code.
_DEFAULT_CODES: dict[int, int] = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
_DEFAULT_MESSAGES: dict[int, str] = {
    401: "Authenticate",
    404: "The requested resource was not found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
# Wording Twilio uses for the rejections tests configure through reject_numbers.
_REJECTION_MESSAGES: dict[int, str] = {
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: ("Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."),
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS.",
    21614: "'To' number is not a valid mobile number",
    21215: "Account not authorized to call {to}. Perhaps you need to enable some international permissions.",
}

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def _mask(number: str | None) -> str:
    """Mask a phone number for logs, keeping the country prefix and last 4 digits."""
    if not number:
        return "-"
    if len(number) <= 4:
        return "*" * len(number)
    head = number[:3] if number.startswith("+") and len(number) > 8 else ""
    return head + "*" * (len(number) - len(head) - 4) + number[-4:]


def _rfc2822(moment: datetime | None) -> str | None:
    # Twilio's REST API dates look like "Thu, 24 Aug 2023 05:01:45 +0000".
    return format_datetime(moment) if moment else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def count_segments(body: str) -> int:
    """Number of SMS segments Twilio would bill for ``body`` (GSM-7 or UCS-2 encoding)."""
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in body):
        units = sum(2 if ch in _GSM7_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


def _twilio_error(status: int, code: int | None, message: str, **extra: Any) -> Response:
    payload: dict[str, Any] = {"message": message, "status": status}
    if code is not None:
        payload["code"] = code
        payload["more_info"] = f"https://www.twilio.com/docs/errors/{code}"
    payload.update(extra)
    response = jsonify(payload)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return response


def parse_twiml(text: str | None) -> ET.Element | None:
    """Parse a TwiML document; None when it is missing or not XML."""
    if not text or not text.strip():
        return None
    try:
        return ET.fromstring(text.strip())
    except ET.ParseError:
        return None


def _spoken_text(root: ET.Element | None) -> list[str]:
    if root is None:
        return []
    return [" ".join(el.text.split()) for el in root.iter("Say") if el.text and el.text.strip()]


def _gather(root: ET.Element | None) -> ET.Element | None:
    return None if root is None else next(root.iter("Gather"), None)


def _reply_messages(root: ET.Element | None) -> list[ET.Element]:
    return [] if root is None else list(root.iter("Message"))


class _Sandbox:
    """The sandbox's behaviour; the blueprint's view functions are thin wrappers around it."""

    def __init__(
        self,
        store: SandboxStore,
        *,
        account_sid: str,
        auth_token: str,
        webhook_base: Callable[[], str] | str,
        twilio_number: str,
        callback_delay_s: float,
        status_callback_attempts: int,
        status_callback_timeout_s: float,
        webhook_timeout_s: float,
        retry_backoff_s: float,
        stop_event: threading.Event,
        content_templates: Mapping[str, tuple[str, Sequence[tuple[str, str]]]],
    ) -> None:
        self.store = store
        self.content_templates = dict(content_templates)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.webhook_base = webhook_base
        self.twilio_number = twilio_number
        self.callback_delay_s = callback_delay_s
        self.status_callback_attempts = status_callback_attempts
        self.status_callback_timeout_s = status_callback_timeout_s
        self.webhook_timeout_s = webhook_timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.stop_event = stop_event
        self.validator = RequestValidator(auth_token)

    # -- REST API plumbing -----------------------------------------------------------

    def base_url(self) -> str:
        base = self.webhook_base() if callable(self.webhook_base) else self.webhook_base
        return base.rstrip("/")

    def api(self, path_account_sid: str, handler: Callable[[], Response]) -> Response:
        """Record the request, apply injected failures and auth, then run ``handler``."""
        auth = request.authorization
        raw = self.store.record_request(
            RawRequest(
                method=request.method,
                path=request.path,
                form={key: request.form.getlist(key) for key in request.form},
                auth_username=auth.username if auth else None,
                received_at=utcnow(),
            )
        )
        to = request.form.get("To", "") or request.args.get("To", "")
        outage = self.store.current_outage(request.path, whatsapp=to.startswith(WHATSAPP))
        if outage is not None and outage.mode == "error":
            response = _twilio_error(
                outage.status,
                _DEFAULT_CODES.get(outage.status),
                _DEFAULT_MESSAGES.get(outage.status, "Sandbox outage"),
            )
            if outage.retry_after_s is not None:
                response.headers["Retry-After"] = str(int(outage.retry_after_s))
        elif outage is not None and outage.mode == "hang":
            self.stop_event.wait(outage.hang_s)
            response = _twilio_error(503, 20503, "Service Unavailable")
        else:
            response = self._api_response(path_account_sid, handler)
        self.store.set_response_status(raw, response.status_code)
        stall = self.store.take_stall() + (outage.hang_s if outage is not None and outage.mode == "slow" else 0.0)
        if stall:
            self.stop_event.wait(stall)
        return response

    def _api_response(self, path_account_sid: str, handler: Callable[[], Response]) -> Response:
        injected = self.store.take_injected_failure()
        if injected is not None:
            status, code = injected
            code = code if code is not None else _DEFAULT_CODES.get(status)
            return _twilio_error(status, code, _DEFAULT_MESSAGES.get(status, "Sandbox injected failure"))
        auth = request.authorization
        authenticated = (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest((auth.username or "").encode(), self.account_sid.encode())
            and hmac.compare_digest((auth.password or "").encode(), self.auth_token.encode())
        )
        if not authenticated or path_account_sid != self.account_sid:
            return _twilio_error(401, 20003, "Authenticate", detail="Your AccountSid or AuthToken was incorrect.")
        return handler()

    def _not_found(self) -> Response:
        return _twilio_error(404, 20404, f"The requested resource {request.path} was not found")

    # -- messages --------------------------------------------------------------------

    def message_json(self, message: SandboxMessage) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{message.account_sid}/Messages/{message.sid}.json"
        return {
            "account_sid": message.account_sid,
            "api_version": API_VERSION,
            "body": message.body,
            "date_created": _rfc2822(message.created_at),
            "date_sent": _rfc2822(message.date_sent),
            "date_updated": _rfc2822(message.updated_at),
            "direction": message.direction,
            "error_code": message.error_code,
            "error_message": message.error_message,
            "from": message.from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(message.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            "status": message.status,
            "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
            "to": message.to,
            "uri": uri,
        }

    def create_message(self) -> Response:
        form = request.form
        to = form.get("To", "").strip()
        from_ = form.get("From", "").strip() or (self.twilio_number if form.get("MessagingServiceSid") else "")
        body = form.get("Body", "")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not from_:
            return _twilio_error(400, 21603, "A 'From' phone number is required.")
        if to.startswith(WHATSAPP) != from_.startswith(WHATSAPP):
            return _twilio_error(400, 63007, "Twilio could not find a Channel with the specified From address")
        buttons: list[list[str]] = []
        if form.get("ContentSid"):
            rendered = self._render_content(form["ContentSid"], form.get("ContentVariables", ""))
            if isinstance(rendered, Response):
                return rendered
            body, buttons = rendered
        if not body and not form.get("MediaUrl"):
            return _twilio_error(400, 21602, "Message body is required.")
        if len(body) > _MAX_BODY_CHARS:
            return _twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        validity_period: int | None = None
        if form.get("ValidityPeriod"):
            try:
                validity_period = int(form["ValidityPeriod"])
            except ValueError:
                return _twilio_error(400, 90014, "Validity Period should be positive integer")
            if not 1 <= validity_period <= _MAX_VALIDITY_PERIOD_S:
                return _twilio_error(400, 90007, "Invalid validity period value")
        rejection = self._rejection(to.removeprefix(WHATSAPP))
        if rejection is not None:
            return rejection
        now = utcnow()
        message = self.store.add_message(
            SandboxMessage(
                sid=new_sid("SM"),
                account_sid=self.account_sid,
                to=to,
                from_=from_,
                body=body,
                direction="outbound-api",
                status="queued",
                created_at=now,
                updated_at=now,
                validity_period=validity_period,
                status_callback=form.get("StatusCallback") or None,
                num_segments=count_segments(body),
                content_sid=form.get("ContentSid") or None,
                buttons=buttons,
            )
        )
        _log.info("sandbox accepted sms %s to %s", message.sid, _mask(to))
        self._start(self._deliver_message, message.sid, f"sandbox-sms-{message.sid[-8:]}")
        response = jsonify(self.message_json(message))
        response.status_code = 201
        return response

    def _render_content(self, content_sid: str, given: str) -> tuple[str, list[list[str]]] | Response:
        """A Content API template's text and buttons with ``ContentVariables`` filled in, as WhatsApp shows them."""
        template = self.content_templates.get(content_sid)
        if template is None:
            return _twilio_error(400, 21655, "The ContentSid is Invalid")
        try:
            variables = json.loads(given) if given else {}
            if not isinstance(variables, dict):
                raise ValueError
        except ValueError:
            return _twilio_error(400, 21656, "The ContentVariables Parameter is invalid")
        text, buttons = template

        def fill(value: str) -> str:
            for name, replacement in variables.items():
                value = value.replace("{{" + str(name) + "}}", str(replacement))
            return value

        return fill(text), [[fill(title), fill(payload)] for title, payload in buttons]

    def list_messages(self) -> Response:
        """``messages.list(to=, from_=)``: newest first, one page (enough for a sandbox)."""
        matching = [m for m in self.store.messages if m.account_sid == self.account_sid and self._listed(m.to, m.from_)]
        return self._page("messages", [self.message_json(m) for m in reversed(matching)])

    def _listed(self, to: str, from_: str) -> bool:
        wanted_to, wanted_from = request.args.get("To"), request.args.get("From")
        return (not wanted_to or to == wanted_to) and (not wanted_from or from_ == wanted_from)

    def _page(self, key: str, items: list[dict[str, Any]]) -> Response:
        """One page of a list, with Twilio's paging links (``Page``/``PageSize``; the SDK follows ``next_page_uri``)."""
        try:
            size = max(1, min(int(request.args.get("PageSize", "50")), 1000))
            page = max(0, int(request.args.get("Page", "0")))
        except ValueError:
            return _twilio_error(400, 20001, "PageSize and Page must be integers")
        start = page * size
        shown = items[start : start + size]
        # Twilio's URIs start at the API version; the SDK puts its own host (rebased to us) in front.
        path = request.path[request.path.index(f"/{API_VERSION}/") :]
        kept = [(k, v) for k, v in request.args.items(multi=True) if k not in ("Page", "PageSize", "PageToken")]

        def link(number: int) -> str:
            return f"{path}?{urlencode([*kept, ('PageSize', size), ('Page', number)])}"

        return jsonify(
            {
                key: shown,
                "uri": link(page),
                "first_page_uri": link(0),
                "next_page_uri": link(page + 1) if start + size < len(items) else None,
                "previous_page_uri": link(page - 1) if page > 0 else None,
                "page": page,
                "page_size": size,
                "start": start,
                "end": start + max(len(shown) - 1, 0),
            }
        )

    def fetch_message(self, sid: str) -> Response:
        message = self.store.message(sid)
        if message is None or message.account_sid != self.account_sid:
            return self._not_found()
        return jsonify(self.message_json(message))

    def _rejection(self, to: str) -> Response | None:
        code = self.store.rejection_for(to)
        if code is None and not _E164.match(to):
            code = 21211
        if code is None:
            return None
        template = _REJECTION_MESSAGES.get(code, "Twilio error {code}")
        return _twilio_error(400, code, template.format(to=to, code=code))

    def _deliver_message(self, sid: str) -> None:
        # Twilio moves a message queued -> sent -> delivered and calls StatusCallback for
        # each step after the first; ValidityPeriod expiry happens while still queued.
        # Callbacks go through their own thread, in order, so a slow or unreachable
        # application delays its notifications but never the message's own progress.
        callbacks: queue.SimpleQueue[SandboxMessage | None] = queue.SimpleQueue()
        self._start(lambda _: self._drain_status_callbacks(callbacks), sid, f"sandbox-smscb-{sid[-8:]}")
        try:
            self._advance_message(sid, callbacks.put)
        finally:
            callbacks.put(None)

    def _advance_message(self, sid: str, notify: Callable[[SandboxMessage], None]) -> None:
        if self.stop_event.wait(self.callback_delay_s + self.store.queue_delay_s):
            return
        message = self.store.message(sid)
        if message is None:
            return
        age_s = (utcnow() - message.created_at).total_seconds()
        if message.validity_period is not None and age_s > message.validity_period:
            failed = self.store.update_message(
                sid, status="failed", error_code=30036, error_message="Validity Period Expired"
            )
            if failed:
                notify(failed)
            return
        sent = self.store.update_message(sid, status="sent", date_sent=utcnow())
        if sent:
            notify(sent)
        if self.stop_event.wait(self.callback_delay_s):
            return
        code = self.store.undeliverable_code_for(message.to)
        if code is not None:
            final = self.store.update_message(
                sid, status="undelivered", error_code=code, error_message="Unreachable destination handset"
            )
        else:
            final = self.store.update_message(sid, status="delivered")
        if final:
            notify(final)
        if final and final.status == "delivered" and final.to.startswith(WHATSAPP):
            self._read_receipt(sid, notify)

    def _read_receipt(self, sid: str, notify: Callable[[SandboxMessage], None]) -> None:
        # WhatsApp tells the sender when the message was opened (read receipts on): "read".
        if self.stop_event.wait(self.callback_delay_s):
            return
        read = self.store.update_message(sid, status="read")
        if read:
            notify(read)

    def _drain_status_callbacks(self, callbacks: queue.SimpleQueue[SandboxMessage | None]) -> None:
        while (message := callbacks.get()) is not None:
            if not self.stop_event.is_set():
                self._message_status_callback(message)

    def _message_status_callback(self, message: SandboxMessage) -> None:
        if not message.status_callback:
            return
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "MessageSid": message.sid,
            "MessageStatus": message.status,
            "SmsSid": message.sid,
            "SmsStatus": message.status,
            "To": message.to,
        }
        if message.error_code is not None:
            params["ErrorCode"] = str(message.error_code)
        self.send(
            "message-status",
            message.status_callback,
            params,
            attempts=self.status_callback_attempts,
            timeout_s=self.status_callback_timeout_s,
        )

    # -- calls -----------------------------------------------------------------------

    def call_json(self, call: SandboxCall) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{call.account_sid}/Calls/{call.sid}.json"
        base = uri.removesuffix(".json")
        duration = None
        if call.answered_at and call.ended_at:
            duration = str(int((call.ended_at - call.answered_at).total_seconds()))
        elif call.ended_at:
            duration = "0"
        return {
            "account_sid": call.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": _rfc2822(call.created_at),
            "date_updated": _rfc2822(call.updated_at),
            "direction": "outbound-api",
            "duration": duration,
            "end_time": _rfc2822(call.ended_at),
            "forwarded_from": None,
            "from": call.from_,
            "from_formatted": call.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": call.sid,
            "start_time": _rfc2822(call.answered_at),
            "status": call.status,
            "subresource_uris": {
                "notifications": base + "/Notifications.json",
                "recordings": base + "/Recordings.json",
                "events": base + "/Events.json",
            },
            "to": call.to,
            "to_formatted": call.to,
            "trunk_sid": None,
            "uri": uri,
        }

    def create_call(self) -> Response:
        form = request.form
        to = form.get("To", "").strip()
        from_ = form.get("From", "").strip()
        url = form.get("Url", "").strip() or None
        twiml = form.get("Twiml") or None
        if not to:
            return _twilio_error(400, 21201, "No 'To' number is specified")
        if not from_:
            return _twilio_error(400, 21213, "No 'From' number is specified")
        if url is None and twiml is None and not form.get("ApplicationSid"):
            return _twilio_error(400, 21205, "Url parameter is required.")
        rejection = self._rejection(to)
        if rejection is not None:
            return rejection
        try:
            timeout_s = int(form.get("Timeout") or 60)
        except ValueError:
            timeout_s = 60
        events = [e.strip().lower() for value in form.getlist("StatusCallbackEvent") for e in value.split()]
        now = utcnow()
        call = self.store.add_call(
            SandboxCall(
                sid=new_sid("CA"),
                account_sid=self.account_sid,
                to=to,
                from_=from_,
                url=url,
                method=(form.get("Method") or "POST").upper(),
                twiml=twiml,
                status_callback=form.get("StatusCallback") or None,
                status_callback_method=(form.get("StatusCallbackMethod") or "POST").upper(),
                status_callback_events=[e for e in events if e in _CALL_EVENTS],
                timeout_s=max(1, min(timeout_s, 600)),
                status="queued",
                created_at=now,
                updated_at=now,
            )
        )
        _log.info("sandbox accepted call %s to %s", call.sid, _mask(to))
        self._start(self._run_call, call.sid, f"sandbox-call-{call.sid[-8:]}")
        response = jsonify(self.call_json(call))
        response.status_code = 201
        return response

    def list_calls(self) -> Response:
        """``calls.list(to=, from_=)``: newest first, one page."""
        matching = [c for c in self.store.calls if c.account_sid == self.account_sid and self._listed(c.to, c.from_)]
        return self._page("calls", [self.call_json(c) for c in reversed(matching)])

    def fetch_call(self, sid: str) -> Response:
        call = self.store.call(sid)
        if call is None or call.account_sid != self.account_sid:
            return self._not_found()
        return jsonify(self.call_json(call))

    def modify_call(self, sid: str) -> Response:
        """``calls(sid).update(...)``: hang up / cancel, or replace the running TwiML."""
        call = self.store.call(sid)
        if call is None or call.account_sid != self.account_sid:
            return self._not_found()
        form = request.form
        status = (form.get("Status") or "").lower()
        if status in {"canceled", "completed"}:
            # Twilio cancels a call that has not been answered and completes one that has.
            if self.end_call(sid, "canceled", {"queued", "ringing"}) is None:
                self.end_call(sid, "completed", {"in-progress"})
        elif form.get("Twiml") or form.get("Url"):
            if call.status in FINAL_CALL_STATUSES:
                return _twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
            if form.get("Twiml"):
                self.store.update_call(sid, twiml=form["Twiml"], document=form["Twiml"], document_url=None)
            else:
                self.store.update_call(sid, url=form["Url"], twiml=None, document=None, document_url=None)
        updated = self.store.call(sid)
        assert updated is not None  # calls are never deleted
        return jsonify(self.call_json(updated))

    def call_params(self, call: SandboxCall, status: str) -> dict[str, str]:
        """The parameters Twilio sends with every webhook about an outbound-api call."""
        return {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": "outbound-api",
            "From": call.from_,
            "To": call.to,
        }

    def _run_call(self, sid: str) -> None:
        # The callee's phone rings until a person acts on /phones or Timeout passes,
        # after which Twilio reports no-answer.
        if self.stop_event.wait(self.callback_delay_s):
            return
        ringing = self.store.transition_call(sid, {"queued"}, status="ringing")
        if ringing is None:
            return
        deadline = time.monotonic() + ringing.timeout_s
        self._call_event(ringing, "initiated")
        self._call_event(ringing, "ringing")
        while not self.stop_event.wait(0.1):
            current = self.store.call(sid)
            if current is None or current.status != "ringing":
                return
            if time.monotonic() >= deadline:
                self.end_call(sid, "no-answer", {"ringing"})
                return

    def _call_event(self, call: SandboxCall, event: str) -> None:
        # Only "completed" is sent unasked; other progress events must be requested
        # with StatusCallbackEvent, as on Twilio.
        if not call.status_callback or (event != "completed" and event not in call.status_callback_events):
            return
        status = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}.get(event, call.status)
        params = self.call_params(call, status)
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(self.store.next_call_sequence(call.sid))
        params["Timestamp"] = _rfc2822(utcnow()) or ""
        if event == "completed":
            duration = 0
            if call.answered_at and call.ended_at:
                duration = int((call.ended_at - call.answered_at).total_seconds())
            params["CallDuration"] = str(duration)
            if call.error_code is not None:
                params["ErrorCode"] = str(call.error_code)
        self.send(
            "call-status",
            call.status_callback,
            params,
            method=call.status_callback_method,
            attempts=self.status_callback_attempts,
            timeout_s=self.status_callback_timeout_s,
        )

    def end_call(
        self, sid: str, status: str, from_statuses: Iterable[str], error_code: int | None = None
    ) -> SandboxCall | None:
        """End the call if it is in one of ``from_statuses``; send the final status callback."""
        ended = self.store.transition_call(sid, from_statuses, status=status, ended_at=utcnow(), error_code=error_code)
        if ended is not None:
            _log.info("sandbox call %s to %s ended: %s", sid, _mask(ended.to), status)
            self._call_event(ended, "completed")
        return ended

    def answer(self, sid: str) -> dict[str, Any]:
        """The callee picks up: Twilio fetches the call's TwiML and starts executing it."""
        call = self.store.transition_call(sid, {"queued", "ringing"}, status="in-progress", answered_at=utcnow())
        if call is None:
            current = self.store.call(sid)
            return self._phone_result(current, None, error=None if current else "unknown call")
        self._call_event(call, "answered")
        delivery: WebhookDelivery | None = None
        if call.twiml is not None or call.url is None:
            call = self.store.update_call(sid, document=call.twiml, document_url=None) or call
        else:
            delivery = self.send(
                "call-twiml",
                call.url,
                self.call_params(call, "in-progress"),
                method=call.method,
                timeout_s=self.webhook_timeout_s,
            )
            call = (
                self.store.update_call(
                    sid, document=delivery.response_text, document_url=call.url, last_response=delivery
                )
                or call
            )
            if not delivery.ok:
                # No FallbackUrl support: Twilio says "an application error has occurred" and hangs up.
                self.end_call(sid, "completed", {"in-progress"}, error_code=11200)
                return self._phone_result(self.store.call(sid), delivery, error="fetching the call's Url failed")
        return self._after_document(sid, delivery)

    def _after_document(self, sid: str, delivery: WebhookDelivery | None) -> dict[str, Any]:
        # A document without <Gather> is played to the end and the call hangs up.
        call = self.store.call(sid)
        assert call is not None
        root = parse_twiml(call.document)
        if root is None:
            self.end_call(sid, "completed", {"in-progress"}, error_code=12100)
            return self._phone_result(self.store.call(sid), delivery, error="TwiML could not be parsed")
        if _gather(root) is None:
            self.end_call(sid, "completed", {"in-progress"})
        return self._phone_result(self.store.call(sid), delivery)

    def press(self, sid: str, digits: str) -> tuple[dict[str, Any], int]:
        """The callee types ``digits``: POST them to the current ``<Gather action>``."""
        call = self.store.call(sid)
        if call is None:
            return self._phone_result(None, None, error="unknown call"), 404
        if call.status in FINAL_CALL_STATUSES:
            return self._phone_result(call, None, error=f"call already {call.status}"), 409
        if call.status != "in-progress":
            answered = self.answer(sid)
            if answered["error"] or answered["call"]["status"] != "in-progress":
                return answered, 200
            call = self.store.call(sid)
            assert call is not None
        gather = _gather(parse_twiml(call.document))
        if gather is None:
            return self._phone_result(call, None, error="the call's TwiML has no <Gather>"), 409
        action = gather.get("action")
        if action:
            target = urljoin(call.document_url or self.base_url() + "/", action)
        elif call.document_url:
            # Without an action Twilio posts the digits back to the current document's URL.
            target = call.document_url
        else:
            return self._phone_result(call, None, error="<Gather> has no action and the TwiML no URL"), 409
        self.store.update_call(sid, digits=[*call.digits, digits])
        params = self.call_params(call, "in-progress")
        params["Digits"] = digits
        delivery = self.send(
            "gather", target, params, method=gather.get("method", "POST"), timeout_s=self.webhook_timeout_s
        )
        self.store.update_call(sid, last_response=delivery)
        if not delivery.ok:
            self.end_call(sid, "completed", {"in-progress"}, error_code=11200)
            return self._phone_result(self.store.call(sid), delivery, error="the Gather action failed"), 200
        self.store.update_call(sid, document=delivery.response_text, document_url=target)
        return self._after_document(sid, delivery), 200

    def hang_up(self, sid: str) -> tuple[dict[str, Any], int]:
        """The callee answers (if ringing) and hangs up without pressing anything."""
        call = self.store.call(sid)
        if call is None:
            return self._phone_result(None, None, error="unknown call"), 404
        if call.status in FINAL_CALL_STATUSES:
            return self._phone_result(call, None, error=f"call already {call.status}"), 409
        delivery = None
        if call.status in {"queued", "ringing"}:
            # Picking up makes Twilio fetch the call's TwiML, exactly as for a real answer.
            self.answer(sid)
            answered = self.store.call(sid)
            delivery = answered.last_response if answered else None
        self.end_call(sid, "completed", {"in-progress"})
        return self._phone_result(self.store.call(sid), delivery), 200

    def ring_out(self, sid: str) -> tuple[dict[str, Any], int]:
        """Nobody picks up (no-answer); an answered call just ends (completed)."""
        call = self.store.call(sid)
        if call is None:
            return self._phone_result(None, None, error="unknown call"), 404
        ended = self.end_call(sid, "no-answer", {"queued", "ringing"}) or self.end_call(
            sid, "completed", {"in-progress"}
        )
        if ended is None:
            return self._phone_result(call, None, error=f"call already {call.status}"), 409
        return self._phone_result(ended, None), 200

    # -- inbound SMS -----------------------------------------------------------------

    def inbound_whatsapp(self, phone: str, body: str, button: tuple[str, str] | None = None) -> dict[str, Any]:
        """A phone writes on WhatsApp or taps a quick-reply button: the signed webhook to ``/twilio/whatsapp``.

        Answered to the WhatsApp sender that last wrote to this phone (the alert's sender).
        """
        sender = self.store.twilio_number_for(WHATSAPP + phone) or WHATSAPP + self.twilio_number
        extra = {"ProfileName": phone, "WaId": phone.lstrip("+")}
        if button is not None:
            body = button[0]
            extra |= {"ButtonText": button[0], "ButtonPayload": button[1]}
        return self.inbound_sms(WHATSAPP + phone, body, sender, path="/twilio/whatsapp", extra=extra)

    def tap_button(self, sid: str, index: int) -> tuple[dict[str, Any], int]:
        """The phone taps button ``index`` under WhatsApp message ``sid``."""
        message = self.store.message(sid)
        if message is None or not 0 <= index < len(message.buttons):
            return {"ok": False, "error": "no such message or button"}, 404
        title, payload = message.buttons[index]
        return self.inbound_whatsapp(message.to.removeprefix(WHATSAPP), title, (title, payload)), 200

    def inbound_sms(
        self,
        phone: str,
        body: str,
        to: str | None,
        *,
        path: str = "/twilio/sms",
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """A phone texts the Twilio number: deliver the incoming-SMS webhook to the app."""
        twilio_number = to or self.store.twilio_number_for(phone) or self.twilio_number
        now = utcnow()
        message = self.store.add_message(
            SandboxMessage(
                sid=new_sid("SM"),
                account_sid=self.account_sid,
                to=twilio_number,
                from_=phone,
                body=body,
                direction="inbound",
                status="received",
                created_at=now,
                updated_at=now,
                num_segments=count_segments(body),
            )
        )
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": phone,
            "MessageSid": message.sid,
            "NumMedia": "0",
            "NumSegments": str(message.num_segments),
            "SmsMessageSid": message.sid,
            "SmsSid": message.sid,
            "SmsStatus": "received",
            "To": twilio_number,
            **(extra or {}),
        }
        _log.info("sandbox inbound sms %s from %s", message.sid, _mask(phone))
        delivery = self.send("incoming-sms", self.base_url() + path, params, timeout_s=self.webhook_timeout_s)
        self.store.update_message(message.sid, app_response=delivery)
        replies: list[str] = []
        if delivery.ok:
            for element in _reply_messages(parse_twiml(delivery.response_text)):
                reply = self._record_reply(element, phone, twilio_number)
                if reply is not None:
                    replies.append(reply.body)
        return {
            "ok": delivery.ok,
            "message_sid": message.sid,
            "to": twilio_number,
            "response": _delivery_json(delivery),
            "replies": replies,
            "error": None if delivery.ok else "the application did not accept the SMS",
        }

    def _record_reply(self, element: ET.Element, phone: str, twilio_number: str) -> SandboxMessage | None:
        # TwiML <Message> in the webhook response is an SMS Twilio sends back at once.
        body_element = element.find("Body")
        text = body_element.text if body_element is not None else element.text
        body = (text or "").strip()
        if not body:
            return None
        now = utcnow()
        return self.store.add_message(
            SandboxMessage(
                sid=new_sid("SM"),
                account_sid=self.account_sid,
                to=element.get("to") or phone,
                from_=element.get("from") or twilio_number,
                body=body,
                direction="outbound-reply",
                status="delivered",
                created_at=now,
                updated_at=now,
                date_sent=now,
                num_segments=count_segments(body),
            )
        )

    # -- outgoing HTTP ---------------------------------------------------------------

    def send(
        self,
        kind: str,
        url: str,
        params: dict[str, str],
        *,
        method: str = "POST",
        attempts: int = 1,
        timeout_s: float,
    ) -> WebhookDelivery:
        """Make a request to the application signed with ``X-Twilio-Signature``.

        POST signs the URL plus the sorted form parameters; GET puts the parameters in
        the query string and signs the full URL alone, both as Twilio does.  Connection
        errors and 5xx answers are retried up to ``attempts`` times in total.
        """
        method = method.upper() if method.upper() in {"GET", "POST"} else "POST"
        target = url
        data: dict[str, str] | None = params
        if method == "GET":
            target = url + ("&" if "?" in url else "?") + urlencode(params)
            data = None
            signature = self.validator.compute_signature(target, {})
        else:
            signature = self.validator.compute_signature(url, params)
        headers = {
            "X-Twilio-Signature": signature,
            "User-Agent": "TwilioProxy/1.1",
            # Same token on every retry, so the application can deduplicate.
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        delivery = WebhookDelivery(kind, method, target, dict(params), signature, 0, utcnow())
        for attempt in range(1, max(1, attempts) + 1):
            delivery = WebhookDelivery(kind, method, target, dict(params), signature, attempt, utcnow())
            try:
                response = requests.request(
                    method, target, data=data, headers=headers, timeout=timeout_s, allow_redirects=False
                )
                delivery.status_code = response.status_code
                delivery.response_text = response.text[:_MAX_RESPONSE_CHARS]
            except requests.RequestException as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"
            self.store.record_webhook(delivery)
            if delivery.ok:
                return delivery
            _log.warning(
                "sandbox %s webhook to %s failed (attempt %d/%d): %s",
                kind,
                target.split("?")[0],
                attempt,
                attempts,
                delivery.error or f"HTTP {delivery.status_code}",
            )
            if delivery.status_code is not None and delivery.status_code < 500:
                return delivery  # the application said no; asking again will not change that
            if attempt < attempts and self.stop_event.wait(self.retry_backoff_s * attempt):
                break
        return delivery

    def _start(self, target: Callable[[str], None], sid: str, name: str) -> None:
        def run() -> None:
            try:
                target(sid)
            except Exception:
                _log.exception("sandbox background task %s failed", name)

        threading.Thread(target=run, name=name, daemon=True).start()

    # -- phone page ------------------------------------------------------------------

    def _phone_result(
        self, call: SandboxCall | None, delivery: WebhookDelivery | None, error: str | None = None
    ) -> dict[str, Any]:
        return {
            "ok": error is None and (delivery is None or delivery.ok),
            "call": self.call_view(call) if call else None,
            "response": _delivery_json(delivery),
            "error": error,
        }

    def call_view(self, call: SandboxCall) -> dict[str, Any]:
        root = parse_twiml(call.document or call.twiml)
        return {
            "sid": call.sid,
            "from": call.from_,
            "to": call.to,
            "status": call.status,
            "created_at": _iso(call.created_at),
            "answered_at": _iso(call.answered_at),
            "ended_at": _iso(call.ended_at),
            "prompt": _spoken_text(root),
            "has_gather": _gather(root) is not None,
            "twiml_source": "inline" if call.twiml else (call.url or ""),
            "digits": call.digits,
            "error_code": call.error_code,
            "last_response": _delivery_json(call.last_response),
        }

    def phones_view(self) -> dict[str, Any]:
        """Everything the phone page shows, grouped by the responder's phone number."""
        messages = self.store.messages
        calls = self.store.calls
        entries: list[tuple[datetime, str, str, dict[str, Any]]] = []
        for message in messages:
            remote = (message.from_ if message.direction == "inbound" else message.to).removeprefix(WHATSAPP)
            entries.append((message.created_at, remote, "messages", _message_view(message)))
        for call in calls:
            entries.append((call.created_at, call.to, "calls", self.call_view(call)))
        entries.sort(key=lambda entry: entry[0])
        phones: dict[str, dict[str, Any]] = {}
        for _, number, kind, view in entries:
            phone = phones.setdefault(
                number,
                {
                    "number": number,
                    "twilio_number": self.store.twilio_number_for(number) or self.twilio_number,
                    "messages": [],
                    "calls": [],
                },
            )
            phone[kind].insert(0, view)  # most recent first
        return {
            "twilio_number": self.twilio_number,
            "webhook_base": self.base_url(),
            "phones": list(phones.values()),
            "generated_at": _iso(utcnow()),
        }


def _message_view(message: SandboxMessage) -> dict[str, Any]:
    return {
        "sid": message.sid,
        "direction": message.direction,
        "from": message.from_,
        "to": message.to,
        "body": message.body,
        "status": message.status,
        "created_at": _iso(message.created_at),
        "error_code": message.error_code,
        "validity_period": message.validity_period,
        "app_response": _delivery_json(message.app_response),
        "whatsapp": message.to.startswith(WHATSAPP) or message.from_.startswith(WHATSAPP),
        "buttons": [title for title, _ in message.buttons],
    }


def _delivery_json(delivery: WebhookDelivery | None) -> dict[str, Any] | None:
    if delivery is None:
        return None
    return {
        "kind": delivery.kind,
        "url": delivery.url,
        "status_code": delivery.status_code,
        "body": delivery.response_text,
        "error": delivery.error,
    }


def create_sandbox_blueprint(
    store: SandboxStore,
    *,
    account_sid: str,
    auth_token: str,
    webhook_base: Callable[[], str] | str,
    twilio_number: str = DEFAULT_TWILIO_NUMBER,
    callback_delay_s: float = 0.2,
    status_callback_attempts: int = 3,
    status_callback_timeout_s: float = 5.0,
    webhook_timeout_s: float = 15.0,
    retry_backoff_s: float = 0.5,
    stop_event: threading.Event | None = None,
    name: str = "twilio_sandbox",
    sms_gateway_path: str | None = None,
    send_only_prefixes: tuple[str, ...] = (),
    content_templates: Mapping[str, tuple[str, Sequence[tuple[str, str]]]] | None = None,
) -> Blueprint:
    """Build the sandbox blueprint; the caller picks the prefix, e.g. ``url_prefix="/sandbox/twilio"``.

    ``webhook_base`` is the dispatch app's public base URL (or a callable returning it,
    read at each delivery); incoming SMS go to ``{webhook_base}/twilio/sms``.
    ``twilio_number`` is the number phones text when no message was sent to them yet.
    ``callback_delay_s`` spaces the queued -> sent -> delivered steps.  Status callbacks
    get ``status_callback_attempts`` tries of ``status_callback_timeout_s`` each; the
    TwiML-returning webhooks (incoming SMS, call Url, Gather action) one try of
    ``webhook_timeout_s`` (Twilio's own limit is 15 s).  Setting ``stop_event`` stops
    background deliveries and ringing calls.
    ``sms_gateway_path`` is where the SMS Gateway for Android stand-in is mounted (its phones
    are shown on the same cards, with a reply box through it); ``send_only_prefixes`` are the
    countries whose numbers Twilio sends to but carries no reply from (marked on each SMS).
    ``content_templates``: Content SID -> (text, quick-reply buttons as (title, payload)),
    ``{{n}}`` filled from ``ContentVariables``.
    """
    sandbox = _Sandbox(
        store,
        account_sid=account_sid,
        auth_token=auth_token,
        webhook_base=webhook_base,
        twilio_number=twilio_number,
        callback_delay_s=callback_delay_s,
        status_callback_attempts=status_callback_attempts,
        status_callback_timeout_s=status_callback_timeout_s,
        webhook_timeout_s=webhook_timeout_s,
        retry_backoff_s=retry_backoff_s,
        stop_event=stop_event or threading.Event(),
        content_templates=content_templates or {},
    )
    # Read the page here rather than through Flask's template loader, so the dispatch
    # app's own templates (which take precedence over a blueprint's) can't shadow it.
    page_source = (_TEMPLATE_DIR / "phones.html").read_text(encoding="utf-8")
    bp = Blueprint(name, __name__)
    accounts = f"/{API_VERSION}/Accounts/<account>"

    @bp.post(f"{accounts}/Messages.json")
    def create_message(account: str) -> Response:
        return sandbox.api(account, sandbox.create_message)

    @bp.get(f"{accounts}/Messages.json")
    def list_messages(account: str) -> Response:
        return sandbox.api(account, sandbox.list_messages)

    @bp.get(f"{accounts}/Messages/<sid>.json")
    def fetch_message(account: str, sid: str) -> Response:
        return sandbox.api(account, lambda: sandbox.fetch_message(sid))

    @bp.post(f"{accounts}/Calls.json")
    def create_call(account: str) -> Response:
        return sandbox.api(account, sandbox.create_call)

    @bp.get(f"{accounts}/Calls.json")
    def list_calls(account: str) -> Response:
        return sandbox.api(account, sandbox.list_calls)

    @bp.get(f"{accounts}/Calls/<sid>.json")
    def fetch_call(account: str, sid: str) -> Response:
        return sandbox.api(account, lambda: sandbox.fetch_call(sid))

    @bp.post(f"{accounts}/Calls/<sid>.json")
    def update_call(account: str, sid: str) -> Response:
        return sandbox.api(account, lambda: sandbox.modify_call(sid))

    @bp.get("/phones")
    def phones_page() -> str:
        lang = words.choose(request.args.get("lang"), request.accept_languages.best_match(words.LANGUAGES))
        return render_template_string(
            page_source,
            lang=lang,
            t=words.WORDS[lang],
            phones_json_url=url_for(".phones_json"),
            sms_url=url_for(".phone_sms"),
            whatsapp_url=url_for(".phone_whatsapp"),
            button_url_template=url_for(".phone_button", sid="MSGSID", index=0).removesuffix("/0"),
            call_url_template=url_for(".phone_digits", sid="CALLSID").removesuffix("/digits"),
            twilio_number=twilio_number,
            webhook_base=sandbox.base_url(),
            sms_gateway_path=sms_gateway_path,
            send_only_prefixes=list(send_only_prefixes),
        )

    @bp.get("/phones.json")
    def phones_json() -> Response:
        return jsonify(sandbox.phones_view())

    @bp.post("/phones/sms")
    def phone_sms() -> tuple[Response, int]:
        phone = request.form.get("From", "").strip()
        body = request.form.get("Body", "")
        if not _E164.match(phone) or not body.strip():
            return jsonify({"ok": False, "error": "From (E.164) and Body are required"}), 400
        return jsonify(sandbox.inbound_sms(phone, body, request.form.get("To") or None)), 200

    @bp.post("/phones/whatsapp")
    def phone_whatsapp() -> tuple[Response, int]:
        phone = request.form.get("From", "").strip().removeprefix(WHATSAPP)
        body = request.form.get("Body", "")
        if not _E164.match(phone) or not body.strip():
            return jsonify({"ok": False, "error": "From (E.164) and Body are required"}), 400
        return jsonify(sandbox.inbound_whatsapp(phone, body)), 200

    @bp.post("/phones/whatsapp/<sid>/buttons/<int:index>")
    def phone_button(sid: str, index: int) -> tuple[Response, int]:
        result, status = sandbox.tap_button(sid, index)
        return jsonify(result), status

    @bp.post("/phones/calls/<sid>/answer")
    def phone_answer(sid: str) -> tuple[Response, int]:
        if store.call(sid) is None:
            return jsonify({"ok": False, "error": "unknown call"}), 404
        return jsonify(sandbox.answer(sid)), 200

    @bp.post("/phones/calls/<sid>/digits")
    def phone_digits(sid: str) -> tuple[Response, int]:
        digits = request.form.get("Digits", "").strip()
        if not digits or not re.fullmatch(r"[0-9*#]{1,32}", digits):
            return jsonify({"ok": False, "error": "Digits must be 0-9, * or #"}), 400
        result, status = sandbox.press(sid, digits)
        return jsonify(result), status

    @bp.post("/phones/calls/<sid>/no-answer")
    def phone_no_answer(sid: str) -> tuple[Response, int]:
        result, status = sandbox.ring_out(sid)
        return jsonify(result), status

    @bp.post("/phones/calls/<sid>/hangup")
    def phone_hangup(sid: str) -> tuple[Response, int]:
        result, status = sandbox.hang_up(sid)
        return jsonify(result), status

    return bp
