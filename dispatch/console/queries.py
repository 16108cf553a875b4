"""What the console shows, read from the database in a few set-based queries per page.

Only reads: every change goes through dispatch.actions / CallDesk, as the API's does.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from geopy.distance import geodesic
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devices.models import Device
from dispatch import calls
from dispatch.console import board
from dispatch.console.stats import AssignmentTimes, IncidentTimes
from dispatch.device_health import HealthPolicy, is_low_battery, is_silent
from dispatch.models import (
    OPEN_STATES,
    Assignment,
    EscalationStep,
    Incident,
    Notification,
    ProviderOutage,
    TimelineEvent,
)
from foundation.settings import Settings
from responders.models import Supervisor, Unit


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _age(now: datetime, moment: datetime | None) -> float | None:
    return max(0.0, (now - moment).total_seconds()) if moment else None


def board_rows(session: Session, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Open incidents in board order (see dispatch.console.board), with each assignment in words."""
    incidents = session.execute(select(Incident).where(Incident.state.in_(OPEN_STATES))).scalars().all()
    ids = [i.id for i in incidents]
    if not ids:
        return []
    assignments: dict[int, list[Assignment]] = defaultdict(list)
    for a in session.execute(
        select(Assignment).where(Assignment.incident_id.in_(ids)).order_by(Assignment.id)
    ).scalars():
        assignments[a.incident_id].append(a)
    last_step: dict[int, EscalationStep] = {}  # per assignment
    next_step: dict[int, EscalationStep] = {}
    for step in session.execute(
        select(EscalationStep)
        .where(EscalationStep.incident_id.in_(ids), EscalationStep.state.in_(("done", "pending")))
        .order_by(EscalationStep.id)
    ).scalars():
        if step.state == "done":
            last_step[step.assignment_id] = step  # ordered by id: the last one wins
        elif step.assignment_id not in next_step or step.due_at < next_step[step.assignment_id].due_at:
            next_step[step.assignment_id] = step
    last_event = dict(
        session.execute(
            select(TimelineEvent.incident_id, func.max(TimelineEvent.id))
            .where(TimelineEvent.incident_id.in_(ids))
            .group_by(TimelineEvent.incident_id)
        ).all()
    )
    numbers = {i.caller_number for i in incidents if i.caller_number}
    pranks = dict(
        session.execute(
            select(Incident.caller_number, func.count())
            .where(Incident.caller_number.in_(numbers), Incident.classification == "prank")
            .group_by(Incident.caller_number)
        ).all()
    )
    devices = {
        d.id: d
        for d in session.execute(
            select(Device).where(Device.id.in_({i.device_id for i in incidents if i.device_id}))
        ).scalars()
    }
    units = unit_rows(session, settings, now)
    rows: dict[int, dict[str, Any]] = {}
    urgencies = []
    for incident in incidents:
        mine = assignments.get(incident.id, [])
        dispatched = [a.dispatched_at for a in mine if a.dispatched_at]
        device = devices.get(incident.device_id or "")
        urgency = board.Urgency(
            incident.state,
            incident.needs_review,
            incident.location_needed,
            tuple(a.state for a in mine),
            _age(now, incident.opened_at) or 0.0,
            incident.owned_by is not None,
        )
        urgencies.append((incident.id, urgency))
        services = list(incident.services or ([incident.service] if incident.service else []))
        shown = [_board_assignment(settings, a, last_step.get(a.id), next_step.get(a.id), now) for a in mine]
        rows[incident.id] = {
            "id": incident.id,
            "source": incident.source,
            "origin": incident.device_id or incident.call_id,
            "owner": device.owner_name if device else None,
            "services": services,
            "state": incident.state,
            "bucket": board.bucket(urgency),
            "alarm": board.alarm(urgency),
            "priority": incident.priority,
            "classification": incident.classification,
            "description": incident.description,
            "opened_at": _iso(incident.opened_at),
            "opened_local": incident.opened_at.astimezone(settings.local_zone).strftime("%H:%M:%S"),
            "age_s": urgency.age_s,
            "age_level": board.age_level(urgency.age_s),
            "since_dispatch_s": _age(now, min(dispatched)) if dispatched else None,
            "where": incident.address_text or (device.address if device else None),
            "lat": incident.lat,
            "lon": incident.lon,
            "location_source": incident.location_source,
            "assignments": shown,
            # Only while nobody has accepted: after an acceptance the badge would be history, not state.
            "supervisor": any(a["supervisor"] for a in shown),
            "needs_review": incident.needs_review,
            "review_reason": incident.review_reason,
            "location_needed": incident.location_needed,
            "owned_by": incident.owned_by.removeprefix("user:") if incident.owned_by else None,
            "owned_at": _iso(incident.owned_at),
            "repeat_prank": pranks.get(incident.caller_number, 0) >= calls.REPEAT_PRANK_THRESHOLD,
            "last_event_id": last_event.get(incident.id),
            "can_own": incident.owned_by is None and (incident.state == "unanswered" or incident.needs_review),
            "can_escalate": any(a.id in next_step for a in mine if a.state == "active"),
            "assignable": assign_choices(units, services, incident.lat, incident.lon),
        }
    return [rows[incident_id] for _, incident_ids in board.order(urgencies) for incident_id in incident_ids]


def _board_assignment(
    settings: Settings, a: Assignment, done: EscalationStep | None, upcoming: EscalationStep | None, now: datetime
) -> dict[str, Any]:
    """One service's line on the board: who, in which state, and (only while paging) which step."""
    policy = settings.escalation.policies.get(a.service, ())  # type: ignore[call-overload]
    paging = a.state == "active"
    step = None
    if paging and done is not None:
        channels = done.result.get("channels") or (policy[done.seq].channels if done.seq < len(policy) else ())
        step = {
            "round": done.round + 1,
            "seq": done.seq + 1,
            "of": len(policy),
            "what": board.step_what(done.action, channels),
            "unit_id": done.result.get("unit_id"),
        }
    following = None
    if paging and upcoming is not None:
        channels = policy[upcoming.seq].channels if upcoming.seq < len(policy) else ()
        following = {
            "what": board.step_what(upcoming.action, channels),
            "due_in_s": max(0.0, (upcoming.due_at - now).total_seconds()),
        }
    return {
        "service": a.service,
        "state": a.state,
        "unit_id": a.accepted_unit_id or a.unit_id,
        "accepted_unit_id": a.accepted_unit_id,
        "dispatched_at": _iso(a.dispatched_at),
        "accepted_age_s": _age(now, a.accepted_at) if a.state == "accepted" else None,
        "on_scene_age_s": _age(now, a.on_scene_at) if a.state == "on_scene" else None,
        "step": step,
        "next_step": following,
        "supervisor": a.state in ("active", "exhausted") and done is not None and done.action == "supervisor",
    }


def assign_choices(
    units: list[dict[str, Any]], services: list[str], lat: float | None, lon: float | None
) -> list[dict[str, Any]]:
    """Units a dispatcher may assign: active ones of the incident's services, nearest first."""
    choices = []
    for unit in units:
        if not unit["active"] or (services and unit["service"] not in services):
            continue
        distance = None
        if lat is not None and lon is not None and unit["lat"] is not None and unit["lon"] is not None:
            distance = geodesic((lat, lon), (unit["lat"], unit["lon"])).meters
        choices.append({**unit, "distance_m": distance})
    return sorted(choices, key=lambda u: (u["distance_m"] is None, u["distance_m"] or 0.0, u["id"]))


def unit_rows(session: Session, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Every unit with status, where it is, how old that position is, its current incident, and
    the incidents paging it right now (assignments still waiting for its answer)."""
    paging: dict[str, list[dict[str, Any]]] = defaultdict(list)
    active = session.execute(
        select(Assignment.id, Assignment.incident_id, Assignment.service, Assignment.unit_id)
        .where(Assignment.state == "active", Assignment.unit_id.is_not(None))
        .order_by(Assignment.incident_id)
    ).all()
    first_page: dict[tuple[Any, Any], datetime] = {
        (assignment_id, unit_id): at
        for assignment_id, unit_id, at in session.execute(
            select(Notification.assignment_id, Notification.recipient_id, func.min(Notification.created_at))
            .where(Notification.assignment_id.in_([a[0] for a in active]))
            .group_by(Notification.assignment_id, Notification.recipient_id)
        ).all()
    }
    for assignment_id, incident_id, service, unit_id in active:
        since = _age(now, first_page.get((assignment_id, unit_id)))
        paging[str(unit_id)].append({"incident_id": incident_id, "service": service, "since_s": since})
    rows = []
    for unit in session.execute(select(Unit).order_by(Unit.service, Unit.id)).scalars():
        fresh = unit.fix_at is not None and _age(now, unit.fix_at) <= settings.escalation.max_fix_age_s  # type: ignore[operator]
        rows.append(
            {
                "id": unit.id,
                "name": unit.name,
                "service": unit.service,
                "status": unit.status,
                "active": unit.active,
                "lat": unit.fix_lat if unit.fix_lat is not None else unit.station_lat,
                "lon": unit.fix_lon if unit.fix_lon is not None else unit.station_lon,
                "position": "fix" if fresh else "station",
                "fix_age_s": _age(now, unit.fix_at),
                "fix_stale": unit.fix_at is not None and not fresh,
                "current_incident_id": unit.current_incident_id,
                "paging": paging.get(unit.id, []),
                "status_age_s": _age(now, unit.status_at),
            }
        )
    return rows


def device_rows(session: Session, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Every panic button with its health: silent, low battery, last seen."""
    policy = HealthPolicy(settings.devices.supervision_interval_s, settings.devices.low_battery_pct)
    return [
        {
            "id": d.id,
            "service": d.service,
            "owner_name": d.owner_name,
            "address": d.address,
            "lat": d.lat,
            "lon": d.lon,
            "last_seen_age_s": _age(now, d.last_seen_at),
            "never_seen": d.last_seen_at is None,
            "battery": d.battery,
            "rssi": d.rssi,
            "silent": is_silent(d, now, policy),
            "low_battery": is_low_battery(d, policy),
            "active": d.active,
        }
        for d in session.execute(select(Device).order_by(Device.id)).scalars()
    ]


def incident_detail(session: Session, incident_id: int) -> dict[str, Any] | None:
    """One incident with assignments, timeline and notifications, for the incident page."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        return None
    device = session.get(Device, incident.device_id) if incident.device_id else None
    assignments = list(
        session.execute(
            select(Assignment).where(Assignment.incident_id == incident_id).order_by(Assignment.id)
        ).scalars()
    )
    events = list(
        session.execute(
            select(TimelineEvent).where(TimelineEvent.incident_id == incident_id).order_by(TimelineEvent.id)
        ).scalars()
    )
    notifications = list(
        session.execute(
            select(Notification).where(Notification.incident_id == incident_id).order_by(Notification.id)
        ).scalars()
    )
    names = {u.id: u.name for u in session.execute(select(Unit)).scalars()}
    names.update({s.id: s.name for s in session.execute(select(Supervisor)).scalars()})
    return {
        "incident": incident,
        "device": device,
        "assignments": assignments,
        "events": events,
        "notifications": notifications,
        "names": names,
        "prank_count": calls.prank_count(session, incident.caller_number),
        # The badge says what is happening now: a supervisor step is the last one of a still-paging assignment.
        "supervisor": any(
            a.state in ("active", "exhausted") and _last_action(session, a.id) == "supervisor" for a in assignments
        ),
    }


def _last_action(session: Session, assignment_id: int) -> str | None:
    return session.execute(
        select(EscalationStep.action)
        .where(EscalationStep.assignment_id == assignment_id, EscalationStep.state == "done")
        .order_by(EscalationStep.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def map_incidents(session: Session) -> list[dict[str, Any]]:
    """Open incidents that have a position, with who is paged for or has accepted each service."""
    incidents = list(
        session.execute(select(Incident).where(Incident.state.in_(OPEN_STATES), Incident.lat.is_not(None))).scalars()
    )
    responding: dict[int, list[dict[str, Any]]] = defaultdict(list)
    exhausted: set[int] = set()
    if incidents:
        for a in session.execute(
            select(Assignment).where(
                Assignment.incident_id.in_([i.id for i in incidents]),
                Assignment.state.in_(("active", "accepted", "on_scene", "exhausted")),
            )
        ).scalars():
            unit = a.accepted_unit_id or a.unit_id
            if a.state == "exhausted":
                exhausted.add(a.incident_id)
            elif unit:
                responding[a.incident_id].append({"service": a.service, "unit_id": unit, "state": a.state})
    return [
        {
            "id": i.id,
            "lat": i.lat,
            "lon": i.lon,
            "state": i.state,
            "service": i.service,
            "services": list(i.services or ([i.service] if i.service else [])),
            "source": i.source,
            "unanswered": i.state == "unanswered" or i.id in exhausted,
            "units": responding[i.id],
        }
        for i in incidents
    ]


# Timeline kinds that say a page reached a unit: a text its provider reports delivered, a call picked up.
REACHED = ("sms_delivered", "chat_delivered", "voice_in_progress", "voice_answered", "voice_completed")


def response_samples(session: Session, start: datetime, end: datetime) -> list[IncidentTimes]:
    """Incidents opened in [start, end) with their assignments' milestones (input of stats.response_times).

    An assignment's page counts as delivered at the first receipt in REACHED for a notification
    to a unit of that assignment (a page to a supervisor dispatches nobody).
    """
    incidents = (
        session.execute(select(Incident).where(Incident.opened_at >= start, Incident.opened_at < end)).scalars().all()
    )
    ids = [i.id for i in incidents]
    times: dict[int, list[AssignmentTimes]] = defaultdict(list)
    if ids:
        to_assignment: dict[Any, int | None] = dict(
            session.execute(
                select(Notification.id, Notification.assignment_id).where(
                    Notification.incident_id.in_(ids), Notification.recipient_kind == "unit"
                )
            ).all()
        )
        delivered: dict[int, datetime] = {}
        for event in session.execute(
            select(TimelineEvent).where(TimelineEvent.incident_id.in_(ids), TimelineEvent.kind.in_(REACHED))
        ).scalars():
            assignment_id = to_assignment.get((event.data or {}).get("notification_id"))
            if assignment_id is not None and (assignment_id not in delivered or event.at < delivered[assignment_id]):
                delivered[assignment_id] = event.at
        for a in session.execute(select(Assignment).where(Assignment.incident_id.in_(ids))).scalars():
            times[a.incident_id].append(
                AssignmentTimes(a.service, delivered.get(a.id), a.accepted_at, a.on_scene_at, a.state)
            )
    return [IncidentTimes(i.id, i.source, i.opened_at, tuple(times.get(i.id, ())), i.disposition) for i in incidents]


def open_outages(session: Session, settings: Settings) -> list[dict[str, Any]]:
    """Provider channels failing right now (dispatch/provider_health.py), for the board's banner."""
    rows = session.execute(
        select(ProviderOutage).where(ProviderOutage.ended_at.is_(None)).order_by(ProviderOutage.started_at)
    ).scalars()
    return [
        {
            "provider": outage.provider,
            "channel": outage.channel,
            "since_local": outage.started_at.astimezone(settings.local_zone).strftime("%H:%M:%S"),
            "failures": outage.failures,
        }
        for outage in rows
    ]
