"""Webhooks of SMS Gateway for Android: replies from responders and delivery reports.

Every request must carry ``X-Signature``: the hex HMAC-SHA256, under
``sms_gateway.signing_key``, of the raw body followed by ``X-Timestamp`` (the app's own
scheme). A wrong signature, a timestamp further than ``sms_gateway.max_clock_skew_s``
from our clock, or an event id seen before (a replay) gets 403 and changes nothing.
A reply is de-duplicated on the gateway's message id as well.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from typing import Any

from flask import Blueprint, abort, current_app, request
from sqlalchemy.exc import IntegrityError

from dispatch import routing, sms_replies
from dispatch.alerts import insert_notification
from dispatch.delivery import apply_report
from dispatch.models import Notification, ProviderEvent
from dispatch.web.context import WebContext
from foundation.db import transaction
from foundation.logsafe import mask_phone

log = logging.getLogger(__name__)
bp = Blueprint("sms_gateway_hooks", __name__, url_prefix="/sms-gateway")

# Delivery events -> the status words of dispatch/delivery.py (forward only, as for every provider).
_STATES = {"sms:sent": "sent", "sms:delivered": "delivered", "sms:failed": "failed"}
EVENTS = ("sms:received", *_STATES)


def _context() -> WebContext:
    context: WebContext = current_app.extensions["dispatch"]
    return context


def signature(key: bytes, body: bytes, timestamp: str) -> str:
    """What the gateway puts in ``X-Signature`` for ``body`` sent at ``timestamp``."""
    return hmac.new(key, body + timestamp.encode(), hashlib.sha256).hexdigest()


@bp.post("/events")
def events() -> tuple[dict[str, Any], int]:
    context = _context()
    settings = context.settings.sms_gateway
    if settings.signing_key is None:
        abort(404)  # no gateway configured: nothing here
    body = request.get_data(cache=False)
    stamp = request.headers.get("X-Timestamp", "")
    given = request.headers.get("X-Signature", "")
    expected = signature(settings.signing_key.get_secret_value().encode(), body, stamp)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("rejected unsigned or forged SMS gateway webhook")
        abort(403)
    now = context.clock()
    try:
        skew = abs(now.timestamp() - int(stamp))
    except ValueError:
        abort(403)
    if skew > settings.max_clock_skew_s:
        log.warning("rejected SMS gateway webhook signed %.0fs away from our clock (replay?)", skew)
        abort(403)
    try:
        event = json.loads(body)
        kind, event_id, payload = str(event["event"]), str(event["id"]), dict(event["payload"])
        if not (kind.isprintable() and event_id.isprintable()):
            raise ValueError("control characters in the event's kind or id")
    except (ValueError, KeyError, TypeError):
        return {"error": "not a gateway event"}, 400
    publications: list[tuple[str, bytes]] = []
    wake = kind == "sms:received"  # a reply queues an answer; a delivery report only if it moved a step
    try:
        with transaction(context.sessions) as session:
            seen = ProviderEvent(provider=routing.GATEWAY, event_id=event_id[:128], kind=kind[:32], received_at=now)
            session.add(seen)
            session.flush()  # a replayed event id fails here, before anything else changes
            if kind == "sms:received":
                answer = _reply(session, context, payload, publications)
            elif kind in _STATES:
                answer, wake = _delivery(session, context, kind, payload)
            else:
                answer = {"ignored": kind}
    except IntegrityError:
        log.warning("rejected a replayed SMS gateway event %s", event_id[:40])
        abort(403)
    except (KeyError, TypeError, ValueError):
        return {"error": "incomplete event payload"}, 400
    context.after_commit(publications, wake=wake)  # device statuses once the acceptance is committed
    return answer, 200


def parse_received(payload: dict[str, Any]) -> sms_replies.InboundReply:
    """An ``sms:received`` payload as a provider-neutral reply (KeyError, ValueError: 400)."""
    phone = payload["phoneNumber"]
    if not isinstance(phone, str) or not _PHONE.fullmatch(phone):
        raise ValueError("phoneNumber is not a phone number")
    text = payload["message"]
    if not isinstance(text, str):
        raise ValueError("message is not text")
    # A NUL cannot be stored (PostgreSQL) and no handset types one.
    return sms_replies.InboundReply(phone, text.replace("\x00", "")[:1600], f"sms_gateway:{_message_id(payload)}")


# The number as the phone reports it: E.164 or a local number, at most 20 characters (our columns').
_PHONE = re.compile(r"\+?[0-9]{3,19}")
# Our own ids are "dispatch-n<row>"; the app's are short too. Prefixed, it must fit 64 characters.
_MAX_MESSAGE_ID = 50


def _message_id(payload: dict[str, Any]) -> str:
    """The gateway's message id: short, printable, no spaces (ValueError otherwise: 400)."""
    value = payload["messageId"]
    message_id = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not message_id or len(message_id) > _MAX_MESSAGE_ID or not message_id.isprintable() or " " in message_id:
        raise ValueError("messageId is not a gateway message id")
    return message_id


def _reply(
    session: Any, context: WebContext, payload: dict[str, Any], publications: list[tuple[str, bytes]]
) -> dict[str, Any]:
    inbound = parse_received(payload)
    phone, message_id = inbound.phone, inbound.message_id
    received = sms_replies.receive(session, context.settings, inbound, context.clock())
    if received.outcome is None:
        return {"duplicate": True}
    outcome = received.outcome
    if received.reply:
        responder = received.responder
        insert_notification(
            session,
            idempotency_key=f"reply:{message_id}"[:200],
            incident_id=outcome.incident_id,
            recipient_kind=responder.kind if responder else "unknown",
            recipient_id=responder.id if responder else phone,
            to_number=phone,
            channel="sms",
            provider=routing.GATEWAY,  # answer on the channel the reply came in on
            language=outcome.language,
            body=received.reply,
            next_attempt_at=context.clock(),
        )
    log.info("sms reply via the gateway from %s: %s", mask_phone(phone), outcome.reply_key)
    publications.extend(outcome.publications)
    return {"result": outcome.reply_key}


def _delivery(session: Any, context: WebContext, kind: str, payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Apply one delivery report; the answer, and whether it brought a step forward (wake the engine)."""
    status = _STATES[kind]
    # The phone could not send it: for good (a retry would not find a better SIM or signal in time).
    error = str(payload.get("reason") or "") if status == "failed" else None
    reported = apply_report(
        session,
        (Notification.provider == routing.GATEWAY) & (Notification.provider_sid == _message_id(payload)),
        status,
        context.clock(),
        actor="sms_gateway",
        permanent=True,
        error=error,
    )
    if reported.state is None:
        return {"unknown": True}, False
    return {"state": reported.state}, reported.steps_moved > 0  # a late or repeated report: the state stands
