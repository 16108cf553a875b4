"""Twilio webhooks: inbound SMS, delivery status, call status and keypad answers.

Every request must carry a valid ``X-Twilio-Signature`` for
``DISPATCH_PUBLIC_URL`` + path; anything else gets 403 and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from dispatch import acknowledge, sms_replies, timeline
from dispatch.escalation import bring_forward
from dispatch.models import InboundSms, KeypadAnswer, Notification
from dispatch.web.context import WebContext
from foundation.db import transaction
from foundation.logsafe import mask_phone
from responders import messages
from responders.replies import Reply
from responders.twilio_client import PERMANENT_TWILIO_CODES

log = logging.getLogger(__name__)
bp = Blueprint("twilio_hooks", __name__, url_prefix="/twilio")

# Status callbacks may arrive out of order: a state only ever moves to a higher rank.
RANK = {
    "pending": 0,
    "sending": 0,
    "unknown": 0,
    "accepted": 1,
    "queued": 1,
    "initiated": 1,
    "scheduled": 1,
    "sending_provider": 2,
    "ringing": 2,
    "sent": 3,
    "in-progress": 3,
    "answered": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "completed": 5,
    "busy": 5,
    "no-answer": 5,
    "canceled": 5,
    "read": 6,
}


def _context() -> WebContext:
    context: WebContext = current_app.extensions["dispatch"]
    return context


def signed(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse (403) any request whose Twilio signature does not match our public URL."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        context = _context()
        url = context.public_base() + request.path
        if request.query_string:
            url += "?" + request.query_string.decode()
        signature = request.headers.get("X-Twilio-Signature", "")
        validator = RequestValidator(context.twilio_auth_token)
        if not validator.validate(url, request.form.to_dict(), signature):
            log.warning("rejected unsigned or forged Twilio webhook on %s", request.path)
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def _twiml(response: MessagingResponse | VoiceResponse) -> Response:
    return Response(str(response), mimetype="application/xml")


@bp.post("/sms")
@signed
def inbound_sms() -> Response:
    """A responder's SMS reply. De-duplicated on MessageSid; always answered with TwiML."""
    context = _context()
    sid = request.form.get("MessageSid", "")
    phone = request.form.get("From", "")
    body = request.form.get("Body", "")[:1600]
    if not sid or len(sid) > 64 or len(phone) > 20:  # Twilio's SIDs are 34 characters, numbers E.164
        abort(400)
    now = context.clock()
    try:
        with transaction(context.sessions) as session:
            # The same grammar, codes, cap on error answers and timeline as the SMS gateway's replies.
            received = sms_replies.receive(session, context.settings, sid, phone, body, now)
    except IntegrityError:
        # The same MessageSid raced us in another request: answer what that one answered.
        with context.sessions() as session:
            seen = session.execute(select(InboundSms).where(InboundSms.message_sid == sid)).scalar_one()
            return _sms_reply(seen.reply)
    if received.outcome is not None:
        log.info("sms reply from %s: %s", mask_phone(phone), received.outcome.reply_key)
        context.after_commit(received.outcome.publications)
    return _sms_reply(received.reply)


def _sms_reply(text: str) -> Response:
    response = MessagingResponse()
    if text:
        response.message(text)
    return _twiml(response)


@bp.post("/sms/status")
@signed
def sms_status() -> Response:
    """Delivery progress of an SMS we sent; a permanent failure brings the next step forward."""
    return _status(request.form.get("MessageSid", ""), request.form.get("MessageStatus", ""))


@bp.post("/voice/status")
@signed
def voice_status() -> Response:
    """Progress of a call we placed; no-answer, busy or failed brings the next step forward.

    A completed call without a key press is NOT an acknowledgement.
    """
    return _status(request.form.get("CallSid", ""), request.form.get("CallStatus", ""))


def _status(sid: str, status: str) -> Response:
    context = _context()
    now = context.clock()
    error_code = request.form.get("ErrorCode")
    if not _wait_for_sid(context, sid):
        log.warning("status %s for unknown sid %s", status, sid)
        return Response(status=204)
    with transaction(context.sessions) as session:
        row = session.execute(select(Notification).where(Notification.provider_sid == sid)).scalar_one()
        if RANK.get(status, -1) <= RANK.get(row.state, 0):
            return Response(status=204)  # late or repeated callback: never move backwards
        previous, row.state, row.updated_at = row.state, status, now
        if error_code and error_code.isdigit():
            row.error_code = int(error_code)
        timeline.record(
            session,
            f"{row.channel}_{status.replace('-', '_')}",
            actor="twilio",
            incident_id=row.incident_id,
            at=now,
            notification_id=row.id,
            recipient=row.recipient_id,
            previous=previous,
            error_code=row.error_code,
        )
        reason = _definite_failure(row.channel, status, row.error_code)
        if reason is not None and row.assignment_id is not None:
            bring_forward(session, row.assignment_id, now, reason, step_id=row.step_id)
    context.wake()
    return Response(status=204)


def _definite_failure(channel: str, status: str, error_code: int | None) -> str | None:
    """Why this status means the page will not reach anyone, or None when it still may (or did).

    A call nobody picked up, that was busy or failed; an SMS refused for good (a landline,
    an unsubscribed or invalid number). An SMS that failed for a passing reason, or a call
    we cancelled ourselves, moves nothing: the policy's own timing stands.
    """
    if channel == "voice" and status in ("no-answer", "busy", "failed"):
        return status
    if channel == "sms" and status in ("failed", "undelivered") and error_code in PERMANENT_TWILIO_CODES:
        return "permanent_sms_failure"
    return None


def _wait_for_sid(context: WebContext, sid: str, timeout_s: float = 3.0) -> bool:
    """Twilio can call back before our sender has committed the SID it was just given: wait briefly."""
    deadline = time.monotonic() + timeout_s
    while True:
        with context.sessions() as session:
            if session.execute(select(Notification.id).where(Notification.provider_sid == sid)).first():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# A call in one of these states is over: a keypad answer for it can only be a replay.
CALL_OVER = frozenset({"completed", "busy", "no-answer", "canceled", "failed"})


def _wait_for_call_sid(context: WebContext, notification_id: int, timeout_s: float = 3.0) -> None:
    """Wait briefly until an existing voice notification has its call's SID committed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with context.sessions() as session:
            row = session.get(Notification, notification_id)
            if row is None or row.channel != "voice" or row.provider_sid is not None:
                return
        time.sleep(0.05)


@bp.post("/voice/gather/<int:notification_id>")
@signed
def voice_gather(notification_id: int) -> Response:
    """The keypad answer in an alert call: 1 accept, 2 decline, * repeat.

    A signature proves the request came from Twilio once, not that it is new: an answer is applied
    once per (CallSid, alert) and only while that call is the alert's live call, so a captured
    request replayed later (a decline after an acceptance) changes nothing.
    """
    context = _context()
    digits = request.form.get("Digits", "")
    call_sid = request.form.get("CallSid", "")
    if not call_sid or len(call_sid) > 64:
        abort(400)
    now = context.clock()
    if digits in ("1", "2"):
        _wait_for_call_sid(context, notification_id)  # the sender may not have committed it yet
    try:
        with transaction(context.sessions) as session:
            row = session.get(Notification, notification_id)
            if row is None or row.channel != "voice":
                abort(404)
            language: messages.Language = "en" if row.language == "en" else "id"
            if digits not in ("1", "2"):
                # "*" or anything else: say the alert again (the call's own TwiML)
                return Response(row.body, mimetype="application/xml")
            seen = session.execute(
                select(KeypadAnswer).where(
                    KeypadAnswer.call_sid == call_sid, KeypadAnswer.notification_id == notification_id
                )
            ).scalar_one_or_none()
            if seen is not None:
                log.warning("repeated keypad answer for notification %s ignored", notification_id)
                return Response(seen.twiml, mimetype="application/xml")
            if row.provider_sid != call_sid or row.state in CALL_OVER:
                log.warning(
                    "keypad answer for notification %s from a call that is not its live call (state %s) ignored",
                    notification_id,
                    row.state,
                )
                return _twiml(VoiceResponse().hangup())
            responder = acknowledge.find_responder(session, row.to_number)
            if responder is None or row.assignment_id is None or row.alert_code is None:
                abort(404)
            verb = "accept" if digits == "1" else "decline"
            if RANK.get(row.state, 0) < RANK["answered"]:
                row.state = "answered"
            outcome = acknowledge.apply(
                session,
                context.settings,
                responder,
                row.assignment_id,
                Reply(verb, row.alert_code),  # type: ignore[arg-type]
                row.alert_code,
                "voice",
                now,
            )
            text = messages.reply_text(language, outcome.reply_key, **outcome.params)
            voice = messages.VOICES[language]
            response = VoiceResponse()
            response.say(text, language=voice[0], voice=voice[1])
            response.hangup()
            twiml = str(response)
            session.add(
                KeypadAnswer(
                    call_sid=call_sid, notification_id=notification_id, digits=digits, twiml=twiml, received_at=now
                )
            )
    except IntegrityError:
        # The same answer raced us in another request: that one was applied; answer what it answered.
        with context.sessions() as session:
            twiml = session.execute(
                select(KeypadAnswer.twiml).where(
                    KeypadAnswer.call_sid == call_sid, KeypadAnswer.notification_id == notification_id
                )
            ).scalar_one()
        return Response(twiml, mimetype="application/xml")
    context.after_commit(outcome.publications)
    return Response(twiml, mimetype="application/xml")
