"""What the console shows, read from the database in a few set-based queries per page.

Only reads: every change goes through dispatch.actions / CallDesk, as the API's does.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from devices.models import Device
from dispatch import calls
from dispatch.console.stats import AssignmentTimes, IncidentTimes
from dispatch.device_health import HealthPolicy, is_low_battery, is_silent
from dispatch.models import OPEN_STATES, Assignment, EscalationStep, Incident, Notification, TimelineEvent
from foundation.settings import Settings
from responders.models import Supervisor, Unit


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _age(now: datetime, moment: datetime | None) -> float | None:
    return max(0.0, (now - moment).total_seconds()) if moment else None


def board_rows(session: Session, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Open incidents, newest first, with their assignments and escalation progress."""
    incidents = (
        session.execute(select(Incident).where(Incident.state.in_(OPEN_STATES)).order_by(Incident.id.desc()))
        .scalars()
        .all()
    )
    ids = [i.id for i in incidents]
    if not ids:
        return []
    assignments: dict[int, list[Assignment]] = defaultdict(list)
    for a in session.execute(
        select(Assignment).where(Assignment.incident_id.in_(ids)).order_by(Assignment.id)
    ).scalars():
        assignments[a.incident_id].append(a)
    last_step: dict[int, EscalationStep] = {}
    next_step: dict[int, EscalationStep] = {}
    for step in session.execute(
        select(EscalationStep)
        .where(EscalationStep.incident_id.in_(ids), EscalationStep.state.in_(("done", "pending")))
        .order_by(EscalationStep.id)
    ).scalars():
        if step.state == "done":
            last_step[step.incident_id] = step  # ordered by id: the last one wins
        elif step.incident_id not in next_step or step.due_at < next_step[step.incident_id].due_at:
            next_step[step.incident_id] = step
    supervised = set(
        session.execute(
            select(TimelineEvent.incident_id).where(
                TimelineEvent.incident_id.in_(ids), TimelineEvent.kind == "step_supervisor"
            )
        ).scalars()
    )
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
    rows = []
    for incident in incidents:
        mine = assignments.get(incident.id, [])
        dispatched = [a.dispatched_at for a in mine if a.dispatched_at]
        done = last_step.get(incident.id)
        upcoming = next_step.get(incident.id)
        device = devices.get(incident.device_id or "")
        rows.append(
            {
                "id": incident.id,
                "source": incident.source,
                "origin": incident.device_id or incident.call_id,
                "owner": device.owner_name if device else None,
                "services": list(incident.services or ([incident.service] if incident.service else [])),
                "state": incident.state,
                "priority": incident.priority,
                "opened_at": _iso(incident.opened_at),
                "opened_local": incident.opened_at.astimezone(settings.local_zone).strftime("%H:%M:%S"),
                "age_s": _age(now, incident.opened_at),
                "since_dispatch_s": _age(now, min(dispatched)) if dispatched else None,
                "where": incident.address_text or (device.address if device else None),
                "lat": incident.lat,
                "lon": incident.lon,
                "assignments": [
                    {
                        "service": a.service,
                        "state": a.state,
                        "unit_id": a.unit_id,
                        "accepted_unit_id": a.accepted_unit_id,
                        "dispatched_at": _iso(a.dispatched_at),
                    }
                    for a in mine
                ],
                "step": (
                    {"action": done.action, "round": done.round, "seq": done.seq, "at": _iso(done.done_at)}
                    if done
                    else None
                ),
                "next_step": (
                    {"action": upcoming.action, "due_in_s": (upcoming.due_at - now).total_seconds()}
                    if upcoming
                    else None
                ),
                "supervisor": incident.id in supervised,
                "needs_review": incident.needs_review,
                "review_reason": incident.review_reason,
                "location_needed": incident.location_needed,
                "repeat_prank": pranks.get(incident.caller_number, 0) >= calls.REPEAT_PRANK_THRESHOLD,
                "last_event_id": last_event.get(incident.id),
            }
        )
    return rows


def unit_rows(session: Session, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Every unit with status, where it is, how old that position is, and its current incident."""
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
        "supervisor": any(e.kind == "step_supervisor" for e in events),
    }


def assignable_units(session: Session, services: list[str]) -> list[Unit]:
    """Active units, the incident's own services first, for the "assign another unit" list."""
    units = list(session.execute(select(Unit).where(Unit.active.is_(True)).order_by(Unit.service, Unit.id)).scalars())
    return sorted(units, key=lambda u: (u.service not in services, u.service, u.id))


def map_incidents(session: Session) -> list[dict[str, Any]]:
    """Open incidents that have a position."""
    return [
        {"id": i.id, "lat": i.lat, "lon": i.lon, "state": i.state, "service": i.service, "source": i.source}
        for i in session.execute(
            select(Incident).where(Incident.state.in_(OPEN_STATES), Incident.lat.is_not(None))
        ).scalars()
    ]


def response_samples(session: Session, start: datetime, end: datetime) -> list[IncidentTimes]:
    """Incidents opened in [start, end) with their assignments' milestones (input of stats.response_times)."""
    incidents = (
        session.execute(select(Incident).where(Incident.opened_at >= start, Incident.opened_at < end)).scalars().all()
    )
    times: dict[int, list[AssignmentTimes]] = defaultdict(list)
    if incidents:
        for a in session.execute(
            select(Assignment).where(Assignment.incident_id.in_([i.id for i in incidents]))
        ).scalars():
            times[a.incident_id].append(AssignmentTimes(a.service, a.dispatched_at, a.accepted_at, a.on_scene_at))
    return [IncidentTimes(i.id, i.source, i.opened_at, tuple(times.get(i.id, ()))) for i in incidents]
