"""Applying a responder's answer (accept, decline, on scene, resolved) to an assignment.

The same rules whatever the channel (SMS reply, voice keypad, one-tap link).
Runs in the caller's transaction with the assignment row locked, so it
serialises with the escalation step that may be firing at the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.models import Device
from dispatch import alerts, timeline
from dispatch.escalation import fence_off, schedule
from dispatch.escalation_policy import after_decline
from dispatch.models import AlertCode, Assignment, Incident
from dispatch.outbox import stop_other_pages
from dispatch.status import refresh_incident
from foundation.settings import Settings
from responders.models import Supervisor, Unit
from responders.replies import Reply, Unparsed, parse_reply

OPEN_ASSIGNMENT_STATES = ("active", "exhausted", "accepted", "on_scene")
# The reply a responder gets once the verb is applied (keys of responders.messages.reply_text).
DONE_REPLY = {"accept": "accepted", "decline": "declined", "on_scene": "on_scene", "resolved": "resolved"}


@dataclass(frozen=True)
class Responder:
    kind: str  # unit | supervisor
    id: str
    name: str
    language: str


@dataclass
class AckOutcome:
    """What to answer and what to publish once the transaction commits."""

    reply_key: str
    language: str = "id"
    params: dict[str, Any] = field(default_factory=dict)
    applied: bool = False
    error: bool = False  # counts against the per-number cap on error replies
    publications: list[tuple[str, bytes]] = field(default_factory=list)
    incident_id: int | None = None


def find_responder(session: Session, phone: str) -> Responder | None:
    """The active unit or supervisor registered with this phone number."""
    unit = session.execute(select(Unit).where(Unit.phone == phone, Unit.active.is_(True))).scalars().first()
    if unit is not None:
        return Responder("unit", unit.id, unit.name, unit.language)
    supervisor = (
        session.execute(select(Supervisor).where(Supervisor.phone == phone, Supervisor.active.is_(True)))
        .scalars()
        .first()
    )
    if supervisor is not None:
        return Responder("supervisor", supervisor.id, supervisor.name, supervisor.language)
    return None


def from_sms(
    session: Session,
    settings: Settings,
    phone: str,
    text: str,
    now: datetime,
    *,
    parsed: Reply | Unparsed | None = None,
    channel: str = "sms",
) -> AckOutcome:
    """Interpret a text reply from ``phone`` (or what a tapped button already said: ``parsed``) and apply it."""
    responder = find_responder(session, phone)
    if responder is None:
        return AckOutcome("unknown_number", error=True)
    if parsed is None:
        parsed = parse_reply(text)
    if isinstance(parsed, Unparsed):
        return AckOutcome("not_understood", responder.language, error=True)
    codes = (
        session.execute(
            select(AlertCode)
            .join(Assignment, Assignment.id == AlertCode.assignment_id)
            .where(AlertCode.phone == phone)
            .order_by(AlertCode.code)
        )
        .scalars()
        .all()
    )
    if parsed.code is not None:
        match = [c for c in codes if c.code == parsed.code]
        if not match:
            return AckOutcome("unknown_code", responder.language, {"code": parsed.code}, error=True)
        chosen = match[0]
    else:
        open_codes = [c for c in codes if _assignment_state(session, c.assignment_id) in OPEN_ASSIGNMENT_STATES]
        if not open_codes:
            return AckOutcome("no_open_alert", responder.language, error=True)
        if len(open_codes) > 1:
            return AckOutcome("which_alert", responder.language, {"codes": [c.code for c in open_codes]}, error=True)
        chosen = open_codes[0]
    return apply(session, settings, responder, chosen.assignment_id, parsed, chosen.code, channel, now)


def apply(
    session: Session,
    settings: Settings,
    responder: Responder,
    assignment_id: int,
    reply: Reply,
    code: int,
    channel: str,
    now: datetime,
) -> AckOutcome:
    """Apply one verb from one responder to one assignment."""
    # Incident first, then assignment: the order every action takes (WebContext.locked), so an
    # acknowledgement and a dispatcher's action on the same incident queue up, never deadlock.
    incident_id = session.execute(select(Assignment.incident_id).where(Assignment.id == assignment_id)).scalar_one()
    incident = session.get_one(Incident, incident_id, with_for_update=True)
    assignment = session.get_one(Assignment, assignment_id, with_for_update=True)
    language = responder.language
    base = {"code": code, "incident_id": incident.id}
    actor = f"{responder.kind}:{responder.id}"
    if responder.kind != "unit":
        timeline.record(
            session,
            "supervisor_replied",
            actor=actor,
            incident_id=incident.id,
            at=now,
            verb=reply.verb,
            channel=channel,
        )
        return AckOutcome("not_allowed", language, base, incident_id=incident.id)

    state = assignment.state
    mine = assignment.accepted_unit_id == responder.id
    outcome = AckOutcome(DONE_REPLY[reply.verb], language, base, incident_id=incident.id)
    if state in ("resolved", "cancelled"):
        return AckOutcome("closed", language, {**base, "state": state}, incident_id=incident.id)

    if reply.verb == "accept":
        if state in ("accepted", "on_scene") and not mine:
            by = session.get_one(Unit, assignment.accepted_unit_id)
            at = assignment.accepted_at or now
            local = at.astimezone(settings.local_zone).strftime("%H:%M")
            return AckOutcome(
                "already_accepted",
                language,
                {**base, "by_unit": by.name, "at_local": local},
                incident_id=incident.id,
            )
        if state in ("accepted", "on_scene"):
            outcome.reply_key = "accepted"
        else:
            _accept(session, assignment, incident, responder, channel, now)
            outcome.applied = True
            outcome.reply_key = "accepted"
        outcome.params["where"] = alerts.describe_location(
            incident, _device(session, incident), "en" if language == "en" else "id"
        )
    elif reply.verb == "decline":
        _decline(session, settings, assignment, incident, responder, channel, now)
        outcome.applied = True
    elif reply.verb in ("on_scene", "resolved"):
        if not mine:
            return AckOutcome("not_allowed", language, base, error=True, incident_id=incident.id)
        target = "on_scene" if reply.verb == "on_scene" else "resolved"
        if state != target:
            _progress(session, assignment, incident, responder, target, channel, now)
            outcome.applied = True

    outcome.publications.extend(refresh_incident(session, settings, incident, now))
    return outcome


def _accept(
    session: Session,
    assignment: Assignment,
    incident: Incident,
    responder: Responder,
    channel: str,
    now: datetime,
) -> None:
    cancelled = fence_off(session, assignment, now)
    # The other pages of this assignment are now noise: unsent ones cancelled, ringing calls ended.
    stopped = stop_other_pages(session, assignment.id, now, accepted_by=responder.id)
    assignment.state = "accepted"
    assignment.accepted_unit_id = responder.id
    assignment.accepted_at = now
    unit = session.get_one(Unit, responder.id)
    unit.take(incident.id, now)
    timeline.record(
        session,
        "accepted",
        actor=f"unit:{responder.id}",
        unit_id=responder.id,
        incident_id=incident.id,
        at=now,
        channel=channel,
        cancelled_steps=cancelled,
        cancelled_pages=stopped["cancelled"] or None,
        calls_to_end=stopped["calls_to_end"] or None,
    )


def _decline(
    session: Session,
    settings: Settings,
    assignment: Assignment,
    incident: Incident,
    responder: Responder,
    channel: str,
    now: datetime,
) -> None:
    excluded = dict(assignment.excluded)
    excluded[responder.id] = "declined"
    assignment.excluded = excluded
    was_mine = assignment.accepted_unit_id == responder.id
    timeline.record(
        session,
        "declined",
        actor=f"unit:{responder.id}",
        unit_id=responder.id,
        incident_id=incident.id,
        at=now,
        channel=channel,
        after_accepting=was_mine or None,
    )
    if was_mine:
        unit = session.get_one(Unit, responder.id)
        unit.release(now)
        assignment.accepted_unit_id = None
        assignment.accepted_at = None
    elif assignment.state in ("accepted", "on_scene") or assignment.unit_id != responder.id:
        return  # someone else has it, or this unit was not the one being paged: nothing moves
    # The paged (or accepting) unit said no: page the next-nearest at once.
    fence_off(session, assignment, now)
    assignment.state = "active"
    assignment.unit_id = None
    policy = settings.escalation.policies[assignment.service]  # type: ignore[index]
    ref = after_decline(policy, assignment.round)
    schedule(session, assignment, ref, policy[ref.seq].action, now)


def _progress(
    session: Session,
    assignment: Assignment,
    incident: Incident,
    responder: Responder,
    target: str,
    channel: str,
    now: datetime,
) -> None:
    assignment.state = target
    unit = session.get_one(Unit, responder.id)
    if target == "on_scene":
        assignment.on_scene_at = now
    else:
        assignment.resolved_at = now
        unit.release(now)
        alerts.release_codes(session, assignment.id)
    timeline.record(
        session,
        target,
        actor=f"unit:{responder.id}",
        unit_id=responder.id,
        incident_id=incident.id,
        at=now,
        channel=channel,
    )


def _device(session: Session, incident: Incident) -> Device | None:
    return session.get(Device, incident.device_id) if incident.device_id else None


def _assignment_state(session: Session, assignment_id: int) -> str:
    return session.get_one(Assignment, assignment_id).state
