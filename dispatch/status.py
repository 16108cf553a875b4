"""Telling whoever raised an incident what is happening: the button, or the 112 call center.

``refresh_incident`` derives the incident's state from its assignments (accept, decline,
exhaustion, a dispatcher's action) and says what changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from geopy.distance import geodesic
from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.models import Device
from devices.protocol import status_payload
from devices.protocol import status_topic as device_status_topic
from dispatch import alerts, timeline
from dispatch.escalation_policy import incident_state
from dispatch.models import Assignment, Incident
from foundation.settings import Settings
from responders.models import Unit

CALL_TOPIC = "calls/112"


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes


def call_status_topic(call_id: str) -> str:
    """Where the call center hears what happened to a call."""
    return f"{CALL_TOPIC}/status/{call_id}"


def is_call_status(topic: str) -> bool:
    """Our own output, echoed back by the broker to our ``calls/#`` subscription."""
    return topic.startswith(f"{CALL_TOPIC}/status/")


def publications(incident: Incident, now: datetime, **extra: Any) -> tuple[Publication, ...]:
    """The status message for the incident's origin (QoS 1, published after commit)."""
    if incident.device_id is not None:
        extra.setdefault("needs_review", incident.needs_review or None)
        payload = status_payload(
            press_id=incident.press_id, incident_id=incident.id, state=incident.state, at=now, **extra
        )
        return (Publication(device_status_topic(incident.device_id), payload),)
    if incident.call_id is not None:
        body = {
            "call_id": incident.call_id,
            "incident_id": incident.id,
            "state": incident.state,
            "location_needed": incident.location_needed or None,
            "ts": now.isoformat().replace("+00:00", "Z"),
            **extra,
        }
        data = json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":")).encode()
        return (Publication(call_status_topic(incident.call_id), data),)
    return ()


def refresh_incident(
    session: Session, settings: Settings, incident: Incident, now: datetime
) -> list[tuple[str, bytes]]:
    """Derive the incident's state from its assignments; tell the resident when it changed.

    Returns the status publications to make after commit (none when the state stands).
    """
    # The caller's changes to assignments already loaded are read from the session (a row the
    # SELECT returns keeps its unflushed attributes), so only a new assignment needs a flush.
    # Not flushing here lets the incident's own changes and its new state go out as one UPDATE.
    if any(isinstance(added, Assignment) for added in session.new):
        session.flush()
    with session.no_autoflush:
        assignments = session.execute(select(Assignment).where(Assignment.incident_id == incident.id)).scalars().all()
    derived = incident_state([a.state for a in assignments])
    if derived is None or derived == incident.state:
        return []
    previous, incident.state = incident.state, derived
    if derived in ("resolved", "cancelled"):
        incident.closed_at = now
        incident.disposition = incident.disposition or derived
    timeline.record(
        session,
        "state_changed",
        actor="system",
        incident_id=incident.id,
        at=now,
        previous=previous,
        state=derived,
    )
    device = session.get(Device, incident.device_id) if incident.device_id else None
    accepted = next((a for a in assignments if a.accepted_unit_id), None)
    unit = session.get(Unit, accepted.accepted_unit_id) if accepted and accepted.accepted_unit_id else None
    distance = _distance(unit, incident)
    if device is not None and settings.escalation.resident_sms and derived != "dispatched":
        alerts.write_resident_update(
            session,
            incident,
            device,
            derived,
            unit_name=unit.name if unit else None,
            distance_m=distance,
            now=now,
        )
    extra = {
        "unit_name": unit.name if unit else None,
        "distance_m": round(distance) if distance is not None else None,
    }
    return [(p.topic, p.payload) for p in publications(incident, now, **extra)]


def _distance(unit: Unit | None, incident: Incident) -> float | None:
    if unit is None or incident.lat is None or incident.lon is None:
        return None
    lat, lon = (unit.fix_lat, unit.fix_lon) if unit.fix_lat is not None else (unit.station_lat, unit.station_lon)
    return float(geodesic((incident.lat, incident.lon), (lat, lon)).meters)
