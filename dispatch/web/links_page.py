"""One-tap links: ``/a/<token>`` shows the alert with Accept and Decline buttons.

Two-way SMS is not available on Twilio for Indonesian (+62) numbers, so for
most responders there this page and the voice keypad are the way to answer.
The view token is per recipient; each button carries its own per-action token;
one action per link (single use), and links expire (escalation.link_ttl_s).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, render_template, request
from sqlalchemy.exc import IntegrityError

from devices.models import Device
from dispatch import acknowledge, alerts, links
from dispatch.models import Incident, LinkUse, Notification
from dispatch.web import i18n as web_i18n
from dispatch.web.context import WebContext
from foundation.db import transaction
from responders import messages
from responders.replies import Reply

bp = Blueprint("links", __name__, template_folder="templates")


def _page(language: str | None, status: int, **values: Any) -> tuple[str, int]:
    """The link page in the recipient's language (its words: ``link.*`` in dispatch/translations).

    ``None`` when no recipient is known (a broken or forged link): the browser's preference.
    """
    web_i18n.use(language or request.accept_languages.best_match(web_i18n.LANGUAGES) or web_i18n.DEFAULT)
    return render_template("link.html", lang=web_i18n.language(), **values), status


def _context() -> WebContext:
    context: WebContext = current_app.extensions["dispatch"]
    return context


def _valid(notification: Notification | None, context: WebContext) -> bool:
    if notification is None or notification.recipient_kind not in ("unit", "supervisor"):
        return False
    if notification.assignment_id is None:
        return False
    ttl = timedelta(seconds=context.settings.escalation.link_ttl_s)
    return context.clock() <= notification.created_at + ttl


@bp.get("/a/<token>")
def show(token: str) -> tuple[str, int]:
    """The alert summary with the two action buttons."""
    context = _context()
    parsed = links.read_token(context.signing_key, token)
    with context.sessions() as session:
        notification = session.get(Notification, parsed[0]) if parsed and parsed[1] == "view" else None
        if not _valid(notification, context):
            return _page(None, 404, notice="invalid")
        assert notification is not None
        language: messages.Language = "en" if notification.language == "en" else "id"
        incident = session.get_one(Incident, notification.incident_id)
        device = session.get(Device, incident.device_id) if incident.device_id else None
        used = session.query(LinkUse).filter_by(notification_id=notification.id).first()
        return _page(
            notification.language,
            200,
            incident=incident,
            # The same words as the SMS and the call this link came with.
            where=alerts.describe_location(incident, device, language),
            **alerts.what_happened(incident, device),
            code=notification.alert_code,
            accept_token=links.make_token(context.signing_key, notification.id, "accept"),
            decline_token=links.make_token(context.signing_key, notification.id, "decline"),
            notice="used" if used else None,
            # Supervisors see the alert; only the paged units answer it.
            can_act=notification.recipient_kind == "unit",
        )


@bp.post("/a/<token>")
def act(token: str) -> tuple[str, int]:
    """Apply the button's action once; a second use of the link changes nothing."""
    context = _context()
    parsed = links.read_token(context.signing_key, token)
    if parsed is None or parsed[1] not in ("accept", "decline"):
        return _page(None, 404, notice="invalid")
    notification_id, action = parsed
    now = context.clock()
    try:
        with transaction(context.sessions) as session:
            notification = session.get(Notification, notification_id)
            if not _valid(notification, context):
                return _page(None, 404, notice="invalid")
            assert notification is not None and notification.assignment_id is not None
            language = "en" if notification.language == "en" else "id"
            session.add(LinkUse(notification_id=notification.id, action=action, used_at=now))
            session.flush()
            responder = acknowledge.find_responder(session, notification.to_number)
            if responder is None or notification.alert_code is None:
                return _page(language, 404, notice="invalid")
            outcome = acknowledge.apply(
                session,
                context.settings,
                responder,
                notification.assignment_id,
                Reply(action, notification.alert_code),  # type: ignore[arg-type]
                notification.alert_code,
                "link",
                now,
            )
            message = messages.reply_text(language, outcome.reply_key, **outcome.params)  # type: ignore[arg-type]
    except IntegrityError:
        return _page(None, 409, notice="used")
    context.after_commit(outcome.publications)
    return _page(language, 200, message=message, done=True)
