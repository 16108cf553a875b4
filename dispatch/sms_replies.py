"""A responder's reply, whichever provider carried it: de-duplicated, applied, answered.

Each provider's webhook verifies its signature, then a small pure function parses its
request into an :class:`InboundReply` (phone, text, provider message id, button payload).
The Twilio webhooks (SMS, WhatsApp) answer in their TwiML response; the SMS gateway's webhook
has no such answer channel, so its reply is queued in the outbox as an SMS back through the
gateway. All go through :func:`receive` so the grammar, the alert codes, the cap on error
answers and the timeline are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch import acknowledge, timeline
from dispatch.acknowledge import AckOutcome
from dispatch.models import InboundSms
from foundation.logsafe import mask_phone
from foundation.settings import Settings
from responders import messages
from responders.replies import parse_button


@dataclass(frozen=True)
class InboundReply:
    """A reply as any provider delivers it, once its webhook is verified and parsed."""

    phone: str  # E.164, the number alert codes belong to ("whatsapp:" already removed)
    text: str
    message_id: str  # the provider's id, prefixed by provider: unique across providers
    button_payload: str = ""  # a tapped quick-reply button's payload ("accept:12"), else ""
    channel: str = "sms"  # sms | chat: how it came in, for the timeline


@dataclass(frozen=True)
class Received:
    reply: str  # what to answer ("" for nothing)
    outcome: AckOutcome | None  # None: a repeat of a message already handled
    responder: acknowledge.Responder | None


def receive(session: Session, settings: Settings, inbound: InboundReply, now: datetime) -> Received:
    """Apply one reply in the caller's transaction; a repeated ``message_id`` changes nothing.

    The unique ``message_id`` (a provider's id, prefixed by provider) makes a redelivered
    webhook answer the same as the first time without applying anything again. A tapped
    button's payload says the verb and code itself; its text (the button's title) is kept
    for the timeline only.
    """
    message_id, phone, body = inbound.message_id, inbound.phone, inbound.text
    seen = session.execute(select(InboundSms).where(InboundSms.message_sid == message_id)).scalar_one_or_none()
    if seen is not None:
        return Received(seen.reply, None, acknowledge.find_responder(session, phone))
    parsed = parse_button(inbound.button_payload) if inbound.button_payload else None
    outcome = acknowledge.from_sms(session, settings, phone, body, now, parsed=parsed, channel=inbound.channel)
    reply = messages.reply_text(outcome.language, outcome.reply_key, **outcome.params)  # type: ignore[arg-type]
    if outcome.error and _error_replies_last_hour(session, phone, now) >= settings.twilio.error_replies_per_hour:
        reply = ""  # answer nothing rather than feed a loop with a misconfigured sender
    session.add(
        InboundSms(
            message_sid=message_id,
            from_number=phone,
            body=body,
            received_at=now,
            outcome="error" if outcome.error else ("applied" if outcome.applied else "ignored"),
            reply=reply,
        )
    )
    if outcome.incident_id is not None:
        timeline.record(
            session,
            "chat_reply" if inbound.channel == "chat" else "sms_reply",
            actor=f"phone:{mask_phone(phone)}",
            incident_id=outcome.incident_id,
            at=now,
            body=body[:160],
            result=outcome.reply_key,
            message_sid=message_id,
            channel=inbound.channel,
            button=inbound.button_payload or None,
        )
    return Received(reply, outcome, acknowledge.find_responder(session, phone))


def _error_replies_last_hour(session: Session, phone: str, now: datetime) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(InboundSms)
            .where(
                InboundSms.from_number == phone,
                InboundSms.outcome == "error",
                InboundSms.received_at > now - timedelta(hours=1),
            )
        ).scalar_one()
    )
