"""What dispatchers do to an incident by hand: assign a unit, escalate now, take ownership, cancel, close.

Each runs in the caller's transaction, records who did it on the timeline, and
returns the status publications to make after commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import acknowledge, status, timeline
from dispatch.escalation import fence_off, schedule
from dispatch.escalation_policy import StepRef
from dispatch.intake import stand_down
from dispatch.models import Assignment, Incident
from dispatch.outbox import advance_now
from foundation.settings import Settings
from responders.models import Unit

# Why an action was refused, in English (the API's language); the console shows the same
# reasons in the user's language from its own catalogue (``action.error.<reason>``).
REFUSALS: dict[str, str] = {
    "no_incident": "no incident {incident}",
    "closed": "incident {incident} is already {state}",
    "no_unit": "no active unit {unit!r}",
    "wrong_service": "{unit} is a {unit_service} unit, not {service}",
    "already_accepted": "{unit} already accepted the {service} assignment",
    "nothing_to_escalate": "nothing to escalate: no pending step on an active assignment",
    "nothing_to_own": "incident {incident} is {state} and not flagged: there is nothing to take ownership of",
    "already_owned": "{owner} already took ownership of incident {incident}",
}


class ActionError(ValueError):
    """The action does not apply to this incident (HTTP 409) or names something unknown (404).

    ``reason`` is a key of :data:`REFUSALS`; ``params`` fill in its text.
    """

    def __init__(self, reason: str, status: int = 409, **params: object) -> None:
        super().__init__(REFUSALS[reason].format(**params))
        self.reason = reason
        self.params = params
        self.status = status


def _open(incident: Incident) -> None:
    if incident.state in ("resolved", "cancelled"):
        raise ActionError("closed", incident=incident.id, state=incident.state)


def assign_unit(
    session: Session,
    settings: Settings,
    incident: Incident,
    unit_id: str,
    service: str | None,
    *,
    actor: str,
    now: datetime,
) -> list[tuple[str, bytes]]:
    """Page a named unit now for one service of the incident (replacing whoever is being paged)."""
    _open(incident)
    unit = session.get(Unit, unit_id)
    if unit is None or not unit.active:
        raise ActionError("no_unit", 404, unit=unit_id)
    service = service or unit.service
    if unit.service != service:
        raise ActionError("wrong_service", unit=unit_id, unit_service=unit.service, service=service)
    assignment = session.execute(
        select(Assignment).where(Assignment.incident_id == incident.id, Assignment.service == service)
    ).scalar_one_or_none()
    if assignment is None:
        assignment = Assignment(incident_id=incident.id, service=service, state="active", excluded={})
        session.add(assignment)
        session.flush()
        if service not in incident.services:
            incident.services = [*incident.services, service]
        incident.service = incident.service or service
    elif assignment.state in ("accepted", "on_scene"):
        raise ActionError("already_accepted", unit=assignment.accepted_unit_id, service=service)
    fence_off(session, assignment, now)
    excluded = dict(assignment.excluded)
    excluded.pop(unit_id, None)
    assignment.excluded, assignment.state, assignment.unit_id = excluded, "active", unit_id
    assignment.explanation = {"unit_id": unit_id, "assigned_by": actor, "distance_m": None}
    policy = settings.escalation.policies[service]  # type: ignore[index]
    schedule(session, assignment, StepRef(assignment.round, 0), policy[0].action, now)
    incident.needs_review, incident.review_reason = False, None  # a person has looked at it
    timeline.record(
        session, "unit_assigned", actor=actor, incident_id=incident.id, unit_id=unit_id, at=now, service=service
    )
    return acknowledge.refresh_incident(session, settings, incident, now)


def escalate_now(session: Session, incident: Incident, service: str | None, *, actor: str, now: datetime) -> int:
    """Bring the next pending step of the incident's assignments forward to now."""
    _open(incident)
    query = select(Assignment).where(Assignment.incident_id == incident.id, Assignment.state == "active")
    if service:
        query = query.where(Assignment.service == service)
    moved = sum(advance_now(session, a.id, now) for a in session.execute(query).scalars())
    if moved == 0:
        raise ActionError("nothing_to_escalate")
    timeline.record(
        session, "escalated_by_hand", actor=actor, incident_id=incident.id, at=now, service=service, steps=moved
    )
    return moved


def take_ownership(session: Session, incident: Incident, *, actor: str, now: datetime) -> None:
    """A dispatcher takes an unanswered (or flagged) incident in hand: the board's alarm for it stops.

    The incident keeps its state (nobody accepted it is still true); who and when are recorded on
    the incident and the timeline. A second dispatcher is refused with the owner's name, so two
    people never both think the other one has it.
    """
    _open(incident)
    if incident.owned_by is not None:
        raise ActionError("already_owned", owner=incident.owned_by.removeprefix("user:"), incident=incident.id)
    if incident.state != "unanswered" and not incident.needs_review:
        raise ActionError("nothing_to_own", incident=incident.id, state=incident.state)
    incident.owned_by, incident.owned_at = actor, now
    timeline.record(
        session,
        "ownership_taken",
        actor=actor,
        incident_id=incident.id,
        at=now,
        state=incident.state,
        review_reason=incident.review_reason,
    )


def cancel(
    session: Session, settings: Settings, incident: Incident, reason: str, *, actor: str, now: datetime
) -> list[tuple[str, bytes]]:
    """Cancel the incident: paging stops, paged units are stood down, accepted units freed."""
    _open(incident)
    stand_down(session, incident, now)
    incident.state, incident.closed_at, incident.disposition = "cancelled", now, "cancelled"
    timeline.record(session, "cancelled_by_dispatcher", actor=actor, incident_id=incident.id, at=now, reason=reason)
    return acknowledge.refresh_incident(session, settings, incident, now) or _status(incident, now)


def close(
    session: Session,
    settings: Settings,
    incident: Incident,
    disposition: str,
    note: str | None,
    *,
    actor: str,
    now: datetime,
) -> list[tuple[str, bytes]]:
    """Close with a disposition code; every assignment ends, units are freed."""
    _open(incident)
    for assignment in session.execute(select(Assignment).where(Assignment.incident_id == incident.id)).scalars():
        if assignment.state in ("accepted", "on_scene"):
            fence_off(session, assignment, now)
            assignment.state, assignment.resolved_at = "resolved", now
            if assignment.accepted_unit_id:
                session.get_one(Unit, assignment.accepted_unit_id).release(now)
    stand_down(session, incident, now)  # whatever is still being paged
    incident.state, incident.closed_at, incident.disposition = "resolved", now, disposition
    timeline.record(session, "closed", actor=actor, incident_id=incident.id, at=now, disposition=disposition, note=note)
    return _status(incident, now)


def _status(incident: Incident, now: datetime) -> list[tuple[str, bytes]]:
    return [(p.topic, p.payload) for p in status.publications(incident, now)]
