"""Writing notifications into the outbox: alert codes, texts, links, idempotency keys.

Runs inside the caller's transaction. The outbox sender (dispatch/outbox.py)
sends what is written here; nothing in this module talks to Twilio.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from geopy.distance import geodesic
from sqlalchemy import ScalarSelect, delete, exists, func, literal, select, true, union_all
from sqlalchemy.orm import Session

from devices.models import Device
from dispatch import links
from dispatch.models import AlertCode, Assignment, Incident, Notification
from foundation.clock import utcnow
from foundation.db import insert_for
from responders import messages
from responders.models import Unit
from responders.replies import SLANG_UNDERSTOOD

# A press whose GPS fix is this close to the button's registered place is described by its address.
ADDRESS_RADIUS_M = 150.0


@dataclass(frozen=True)
class Recipient:
    kind: str  # unit | supervisor | resident
    id: str
    phone: str
    language: str
    name: str


@dataclass(frozen=True)
class AlertContext:
    """What every alert about one incident says, computed once per step."""

    incident: Incident
    assignment: Assignment | None
    device: Device | None  # the panic button that raised it, if one did
    public_base: str
    secret: bytes


def pin_key(lat: float, lon: float) -> list[float]:
    """Which pin a stored place name was found for (``incident.geocode["near_of"]``)."""
    return [round(lat, 6), round(lon, 6)]


def describe_location(incident: Incident, device: Device | None, language: messages.Language = "id") -> str:
    """Where, in the words a responder can use: the caller's address or the button's, then coordinates.

    A bare pin gets the nearest named place the engine found for it ("dekat Kel. Jati").
    """
    if incident.lat is None or incident.lon is None:
        known = incident.address_text or (device.address if device else None)
        return known or messages.unknown_location(language)
    coordinates = f"{incident.lat:.5f},{incident.lon:.5f}"
    if incident.address_text:
        return f"{incident.address_text} ({coordinates})"
    if device is not None and device.address:
        if incident.location_source == "device_registered":
            return device.address
        if geodesic((incident.lat, incident.lon), (device.lat, device.lon)).meters <= ADDRESS_RADIUS_M:
            return f"{device.address} ({coordinates})"
    found = incident.geocode or {}
    near = found.get("near") if found.get("near_of") == pin_key(incident.lat, incident.lon) else None
    return messages.pin_location(language, coordinates, near)


def what_happened(incident: Incident, device: Device | None) -> dict[str, str | None]:
    """The alert's "what": a 112 call's description, or the panic button's owner."""
    return {
        "call_nature": incident.description if incident.source == "call" else None,
        "button_owner": device.owner_name if device is not None and incident.source == "press" else None,
    }


def alert_code(session: Session, phone: str, assignment: Assignment) -> int:
    """The recipient's short code for this assignment: reused if given before, else the smallest free.

    Usually one statement: ``INSERT … SELECT <smallest free code> … ON CONFLICT DO NOTHING
    RETURNING code``. The smallest free code is found by the database (on the (phone, code)
    index), not by reading every code the phone holds (hundreds after a burst). Nothing returned
    means a unique constraint said no: this assignment holds a code for the phone already (a
    later round: read it), or another worker took this code a moment ago (pick again). The
    conflict clause absorbs that without a savepoint and without rolling the step back.
    """
    columns = AlertCode.__table__.c
    for _ in range(_CODE_ATTEMPTS):
        given = session.execute(
            insert_for(session, AlertCode)
            .from_select(
                ["phone", "code", "assignment_id", "incident_id", "created_at"],
                select(
                    literal(phone, columns.phone.type),
                    _smallest_free_code(phone),
                    literal(assignment.id, columns.assignment_id.type),
                    literal(assignment.incident_id, columns.incident_id.type),
                    literal(utcnow(), columns.created_at.type),
                ).where(true()),  # SQLite parses INSERT … SELECT … ON CONFLICT only with a WHERE
            )
            .on_conflict_do_nothing()
            .returning(AlertCode.code)
        ).scalar_one_or_none()
        if given is not None:
            return int(given)
        existing = session.execute(
            select(AlertCode.code).where(AlertCode.phone == phone, AlertCode.assignment_id == assignment.id)
        ).scalar_one_or_none()
        if existing is not None:
            return existing
    raise RuntimeError(f"no free alert code after {_CODE_ATTEMPTS} attempts")


# Concurrent pickers for one phone each lose at most a few times; more means something is wrong.
_CODE_ATTEMPTS = 8


def _smallest_free_code(phone: str) -> ScalarSelect[Any]:
    # 86 is never a code: "SIAP 86" is police slang for "understood" (responders.replies), so it
    # counts as taken; so does 0, which is never a code, so that a free 1 is a gap like any other.
    taken = union_all(
        select(AlertCode.code.label("code")).where(AlertCode.phone == phone),
        select(literal(0).label("code")),
        select(literal(int(SLANG_UNDERSTOOD)).label("code")),
    ).cte("taken")
    after, next_one = taken.alias("after"), taken.alias("next_one")
    return (
        select(func.min(after.c.code + 1)).where(~exists().where(next_one.c.code == after.c.code + 1)).scalar_subquery()
    )


def release_codes(session: Session, assignment_id: int) -> None:
    """Free the codes of a closed assignment so they can name the next alert."""
    session.execute(delete(AlertCode).where(AlertCode.assignment_id == assignment_id))


def insert_notification(session: Session, **values: Any) -> Notification | None:
    """Insert an outbox row unless its idempotency key exists; the row, or None if it did."""
    # RETURNING the whole row: loaded by its INSERT, not by a second SELECT.
    return session.scalars(
        insert_for(session, Notification)
        .values(state="pending", attempts=0, **values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Notification)
    ).one_or_none()


def write_alert(
    session: Session,
    context: AlertContext,
    recipient: Recipient,
    channel: str,
    *,
    key: str,
    step_id: int | None,
    distance_m: float | None,
    now: datetime,
    reason: str = "",
) -> Notification | None:
    """Queue one alert (SMS or call) unless one with the same idempotency key exists."""
    assignment = context.assignment
    incident = context.incident
    code = alert_code(session, recipient.phone, assignment) if assignment is not None else None
    notification = insert_notification(
        session,
        idempotency_key=key,
        incident_id=incident.id,
        assignment_id=assignment.id if assignment else None,
        step_id=step_id,
        recipient_kind=recipient.kind,
        recipient_id=recipient.id,
        to_number=recipient.phone,
        channel=channel,
        language=recipient.language,
        alert_code=code,
        body="",
        next_attempt_at=now,
    )
    if notification is None:
        return None
    # The body holds a link signed with the row's own id, so it is written after the insert.
    notification.body = _compose(context, recipient, channel, notification, code, distance_m, reason)
    if channel != "voice" and code is not None:
        notification.chat_variables = _chat_variables(context, recipient, notification, code, distance_m, reason)
    return notification


def _link(context: AlertContext, notification: Notification) -> str:
    return f"{context.public_base}/a/{links.make_token(context.secret, notification.id, 'view')}"


def _service(context: AlertContext) -> messages.Service:
    # A multi-agency incident pages each service for its own assignment: name that service.
    incident = context.incident
    return cast("messages.Service", (context.assignment.service if context.assignment else None) or incident.service)


def _chat_variables(
    context: AlertContext,
    recipient: Recipient,
    notification: Notification,
    code: int,
    distance_m: float | None,
    reason: str,
) -> dict[str, str]:
    """The alert as the approved WhatsApp template's variables (used when WhatsApp carries it)."""
    language: messages.Language = "en" if recipient.language == "en" else "id"
    what = what_happened(context.incident, context.device)
    told = messages.supervisor_reason(language, reason) if recipient.kind == "supervisor" else None
    return messages.chat_alert_variables(
        language,
        recipient=recipient.name,
        service=_service(context),
        code=code,
        where=describe_location(context.incident, context.device, language),
        distance_m=distance_m,
        link=_link(context, notification),
        what=told or what["call_nature"] or what["button_owner"],
    )


def _compose(
    context: AlertContext,
    recipient: Recipient,
    channel: str,
    notification: Notification,
    code: int | None,
    distance_m: float | None,
    reason: str,
) -> str:
    incident = context.incident
    language: messages.Language = "en" if recipient.language == "en" else "id"
    service = _service(context)
    link = _link(context, notification)
    assert code is not None, "alerts to responders always belong to an assignment"
    where = describe_location(incident, context.device, language)
    what = what_happened(incident, context.device)
    if channel == "voice":
        prompt = messages.alert_voice_prompt(
            language,
            service=service,
            code=code,
            where=where,
            distance_m=distance_m,
            **what,
        )
        action = f"{context.public_base}/twilio/voice/gather/{notification.id}"
        return messages.voice_twiml(language, prompt=prompt, action_url=action)
    if recipient.kind == "supervisor":
        return messages.supervisor_sms(
            language,
            service=service,
            code=code,
            where=where,
            incident_id=incident.id,
            reason=messages.supervisor_reason(language, reason),
            link=link,
        )
    return messages.alert_sms(
        language,
        service=service,
        code=code,
        where=where,
        distance_m=distance_m,
        link=link,
        incident_id=incident.id,
        **what,
    )


def write_resident_update(
    session: Session,
    incident: Incident,
    device: Device,
    state: str,
    *,
    unit_name: str | None,
    distance_m: float | None,
    now: datetime,
) -> Notification | None:
    """One SMS per incident state to the resident's registered phone (idempotent by state)."""
    if not device.phone:
        return None
    return insert_notification(
        session,
        idempotency_key=f"resident:{incident.id}:{state}",
        incident_id=incident.id,
        recipient_kind="resident",
        recipient_id=device.id,
        to_number=device.phone,
        channel="sms",
        language="id",
        body=messages.resident_sms(
            "id",
            state=state,  # type: ignore[arg-type]
            unit_name=unit_name,
            distance_m=distance_m,
            incident_id=incident.id,
        ),
        next_attempt_at=now,
    )


def write_stand_down(
    session: Session, incident: Incident, assignment: Assignment, phone: str, code: int, *, now: datetime
) -> int:
    """Tell a paged responder the incident was cancelled (one SMS per responder, idempotent)."""
    responder = session.execute(select(Unit).where(Unit.phone == phone)).scalars().first()
    language: messages.Language = "en" if responder is not None and responder.language == "en" else "id"
    written = insert_notification(
        session,
        idempotency_key=f"standdown:{assignment.id}:{phone}",
        incident_id=incident.id,
        assignment_id=assignment.id,
        recipient_kind="unit" if responder is not None else "supervisor",
        recipient_id=responder.id if responder is not None else phone,
        to_number=phone,
        channel="sms",
        language=language,
        alert_code=code,
        body=messages.reply_text(language, "closed", code=code, state="cancelled"),
        next_attempt_at=now,
    )
    return 0 if written is None else 1
