"""Twilio webhooks: inbound SMS and WhatsApp, delivery status, call status and keypad answers.

Every request must carry a valid ``X-Twilio-Signature`` for
``DISPATCH_PUBLIC_URL`` + path; anything else gets 403 and changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from dispatch import acknowledge, sms_replies
from dispatch.delivery import RANK, apply_report
from dispatch.models import InboundSms, KeypadAnswer, Notification
from dispatch.web.context import WebContext
from foundation.db import reading, transaction
from foundation.logsafe import mask_phone
from responders import messages, whatsapp
from responders.replies import Reply
from responders.twilio_client import PERMANENT_TWILIO_CODES

log = logging.getLogger(__name__)
bp = Blueprint("twilio_hooks", __name__, url_prefix="/twilio")


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


# Twilio's SIDs are 34 characters, numbers E.164.
_MAX_SID, _MAX_PHONE = 64, 20


def parse_sms(form: Mapping[str, str]) -> sms_replies.InboundReply | None:
    """An incoming SMS webhook as a provider-neutral reply; None when it is not one (400)."""
    sid, phone = form.get("MessageSid", ""), form.get("From", "")
    if not sid or len(sid) > _MAX_SID or len(phone) > _MAX_PHONE:
        return None
    return sms_replies.InboundReply(phone, form.get("Body", "")[:1600], sid)


def parse_whatsapp(form: Mapping[str, str]) -> sms_replies.InboundReply | None:
    """An incoming WhatsApp webhook (``From=whatsapp:+62...``; a tapped button adds ``ButtonPayload``).

    The phone is the number after the prefix: alert codes are per phone, whatever carried them.
    """
    sid, sender = form.get("MessageSid", ""), form.get("From", "")
    phone = whatsapp.phone_of(sender)
    if not sid or len(sid) > _MAX_SID or phone == sender or len(phone) > _MAX_PHONE:
        return None
    payload = form.get("ButtonPayload", "")[:64]
    text = form.get("ButtonText", "") if payload else form.get("Body", "")
    return sms_replies.InboundReply(phone, text[:1600], sid, payload, channel="chat")


@bp.post("/sms")
@signed
def inbound_sms() -> Response:
    """A responder's SMS reply. De-duplicated on MessageSid; always answered with TwiML."""
    return _inbound(parse_sms(request.form))


@bp.post("/whatsapp")
@signed
def inbound_whatsapp() -> Response:
    """A responder's WhatsApp message or button tap: the same grammar and codes as an SMS reply.

    The answer goes back in the TwiML response, inside the 24-hour window the message opened.
    """
    return _inbound(parse_whatsapp(request.form))


def _inbound(inbound: sms_replies.InboundReply | None) -> Response:
    if inbound is None:
        abort(400)
    context = _context()
    now = context.clock()
    try:
        with transaction(context.sessions) as session:
            # The same grammar, codes, cap on error answers and timeline as the SMS gateway's replies.
            received = sms_replies.receive(session, context.settings, inbound, now)
    except IntegrityError:
        # The same MessageSid raced us in another request: answer what that one answered.
        with context.sessions() as session:
            query = select(InboundSms).where(InboundSms.message_sid == inbound.message_id)
            return _sms_reply(session.execute(query).scalar_one().reply)
    if received.outcome is not None:
        log.info("%s reply from %s: %s", inbound.channel, mask_phone(inbound.phone), received.outcome.reply_key)
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


@bp.post("/whatsapp/status")
@signed
def whatsapp_status() -> Response:
    """Delivery progress of a WhatsApp message we sent; ``read`` is a receipt, never an acknowledgement."""
    return _status(request.form.get("MessageSid", ""), request.form.get("MessageStatus", ""))


def _status(sid: str, status: str) -> Response:
    """One status callback, by the rules every provider shares (dispatch/delivery.py)."""
    context = _context()
    now = context.clock()
    given = request.form.get("ErrorCode", "")
    error_code = int(given) if given.isdigit() else None
    permanent = error_code in PERMANENT_TWILIO_CODES

    def apply() -> bool:
        with transaction(context.sessions) as session:
            reported = apply_report(
                session,
                Notification.provider_sid == sid,
                status,
                now,
                actor="twilio",
                permanent=permanent,
                error_code=error_code,
            )
        if reported.steps_moved:
            context.wake()  # a step is due now; every other report leaves the timers as they are
        return reported.state is not None

    # Almost always the SID is committed already: look for the row in the writing transaction
    # itself, and wait (reading only) in the rare case the callback overtook our sender.
    if not (apply() or (_wait_for_sid(context, sid) and apply())):
        log.warning("status %s for unknown sid %s", status, sid)
    return Response(status=204)


def _wait_for_sid(context: WebContext, sid: str, timeout_s: float = 3.0) -> bool:
    """Twilio can call back before our sender has committed the SID it was just given: wait briefly."""
    deadline = time.monotonic() + timeout_s
    while True:
        with reading(context.sessions) as session:
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
        with reading(context.sessions) as session:
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
