"""Turning device messages into incidents and device state, inside one transaction.

Every function here runs in the caller's transaction and returns the
publications to make *after* it commits. Idempotency rests on the unique
constraint (device_id, press_id), never on check-then-insert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from devices.models import Device
from devices.protocol import CancelPayload, HeartbeatPayload, PressPayload
from dispatch import alerts, status, timeline
from dispatch.escalation import fence_off
from dispatch.models import OPEN_STATES, AlertCode, Assignment, InboundMessage, Incident
from dispatch.status import Publication
from foundation.db import insert_for
from responders.models import Unit
from responders.protocol import LocationPayload, StatusPayload

# A fix time this far ahead of our clock is a broken device clock, not a fresher fix.
CLOCK_SKEW_S = 30.0


@dataclass(frozen=True)
class Outcome:
    """What handling one message decided: how to file it and what to say afterwards."""

    outcome: str  # accepted | duplicate | dead_letter
    reason: str | None = None
    incident_id: int | None = None
    publications: tuple[Publication, ...] = ()
    opened: Incident | None = None  # a new incident, for the caller to start its escalation


def accept_press(
    session: Session, device_id: str, press: PressPayload, *, now: datetime, inbound: InboundMessage
) -> Outcome:
    """Open the incident for this press, or recognise a redelivery of one already opened.

    ``inbound`` is the message's log row, not yet written: its id reaches the timeline at commit.
    """
    # The button is seen now: marked so and loaded by one UPDATE … RETURNING, not a SELECT and an UPDATE.
    seen: dict[str, Any] = {"last_seen_at": now}
    if press.battery is not None:
        seen["battery"] = press.battery
    device = session.scalars(
        update(Device).where(Device.id == device_id).values(seen).returning(Device),
        execution_options={"populate_existing": True},
    ).one_or_none()
    registered = device is not None and device.active
    service = press.service or (device.service if device else None)
    lat: float | None = None
    lon: float | None = None
    accuracy: float | None = None
    source: str | None = None
    if press.lat is not None and press.lon is not None:
        lat, lon, accuracy, source = press.lat, press.lon, press.accuracy_m, "device_gps"
    elif device is not None:
        lat, lon, source = device.lat, device.lon, "device_registered"

    review_reason = None if registered else ("unregistered device" if device is None else "inactive device")
    # RETURNING the whole row: the incident is loaded by its INSERT, not by a second SELECT.
    incident = session.scalars(
        insert_for(session, Incident)
        .values(
            source="press",
            device_id=device_id,
            press_id=press.press_id,
            service=service,
            state="received",
            lat=lat,
            lon=lon,
            accuracy_m=accuracy,
            location_source=source,
            needs_review=review_reason is not None,
            review_reason=review_reason,
            opened_at=now,
            source_ts=press.ts,
        )
        .on_conflict_do_nothing(index_elements=["device_id", "press_id"])
        .returning(Incident)
    ).one_or_none()

    actor = f"device:{device_id}"
    if incident is None:
        incident = session.execute(
            select(Incident).where(Incident.device_id == device_id, Incident.press_id == press.press_id)
        ).scalar_one()
        timeline.record(
            session,
            "press_repeated",
            actor=actor,
            incident_id=incident.id,
            device_id=device_id,
            source_ts=press.ts,
            at=now,
            inbound_message_id=timeline.Later(lambda: inbound.id),
            redelivered=inbound.redelivered,
        )
        return Outcome("duplicate", "press already recorded", incident.id, (_status(incident, now),))

    timeline.record(
        session,
        "press_received",
        actor=actor,
        incident_id=incident.id,
        device_id=device_id,
        source_ts=press.ts,
        at=now,
        press_id=press.press_id,
        service=service,
        lat=lat,
        lon=lon,
        accuracy_m=accuracy,
        location_source=source,
        battery=press.battery,
        inbound_message_id=timeline.Later(lambda: inbound.id),
    )
    if review_reason is not None:
        timeline.record(
            session,
            "flagged_for_review",
            actor="system",
            incident_id=incident.id,
            device_id=device_id,
            at=now,
            reason=review_reason,
            auto_dispatch=False,
        )
    return Outcome("accepted", None, incident.id, (_status(incident, now),), opened=incident)


def dispatchable(incident: Incident) -> bool:
    """Whether the engine may page units without a human looking first."""
    return (
        not incident.needs_review
        and incident.service is not None
        and incident.lat is not None
        and incident.lon is not None
        and incident.state == "received"
    )


def accept_cancel(session: Session, device_id: str, cancel: CancelPayload, *, now: datetime, grace_s: float) -> Outcome:
    """Cancel within the grace window closes the incident; later, it is recorded and flagged.

    After the grace window responders may already be on their way, and a cancel
    can be coerced (an intruder standing next to the resident), so a late cancel
    never stands responders down by itself: a dispatcher decides.
    """
    incident = session.execute(
        select(Incident).where(Incident.device_id == device_id, Incident.press_id == cancel.press_id)
    ).scalar_one_or_none()
    if incident is None:
        return Outcome("dead_letter", f"cancel for unknown press {cancel.press_id!r}")
    actor = f"device:{device_id}"
    if incident.state not in OPEN_STATES or incident.disposition == "cancelled_by_resident":
        return Outcome("duplicate", f"incident already {incident.state}", incident.id, (_status(incident, now),))

    age_s = (now - incident.opened_at).total_seconds()
    if age_s <= grace_s:
        kind, note = "cancelled", None
        incident.state = "cancelled"
        incident.closed_at = now
        incident.disposition = "cancelled_within_grace"
        stand_down(session, incident, now)
    else:
        kind, note = "cancelled_by_resident", "incident stays open until a dispatcher closes it"
        incident.disposition = "cancelled_by_resident"
        incident.needs_review = True
        incident.review_reason = "resident cancelled after the grace window"
    timeline.record(
        session,
        kind,
        actor=actor,
        incident_id=incident.id,
        device_id=device_id,
        source_ts=cancel.ts,
        at=now,
        seconds_after_press=round(age_s, 3),
        grace_s=grace_s,
        note=note,
    )
    return Outcome("accepted", None, incident.id, (_status(incident, now),))


def stand_down(session: Session, incident: Incident, now: datetime) -> int:
    """Stop every escalation of a cancelled incident and tell the units already paged.

    Returns the number of stand-down texts queued.
    """
    queued = 0
    for assignment in session.execute(select(Assignment).where(Assignment.incident_id == incident.id)).scalars():
        if assignment.state in ("resolved", "cancelled"):
            continue
        fence_off(session, assignment, now)
        assignment.state = "cancelled"
        if assignment.accepted_unit_id:
            unit = session.get_one(Unit, assignment.accepted_unit_id)
            unit.release(now)
        paged = session.execute(select(AlertCode).where(AlertCode.assignment_id == assignment.id)).scalars().all()
        for code in paged:
            queued += alerts.write_stand_down(session, incident, assignment, code.phone, code.code, now=now)
        alerts.release_codes(session, assignment.id)
    return queued


def accept_heartbeat(session: Session, device_id: str, beat: HeartbeatPayload, *, now: datetime) -> Outcome:
    """Record that the device is alive; clear its silent alert if it had one."""
    # Locked like the health check locks it: a check committing between our read and our write
    # would otherwise leave a silent alert standing with no recovery recorded.
    device = session.get(Device, device_id, with_for_update=True)
    if device is None:
        return Outcome("dead_letter", "heartbeat from unregistered device")
    device.last_seen_at = now
    if beat.battery is not None:
        device.battery = beat.battery
    if beat.rssi is not None:
        device.rssi = beat.rssi
    if device.silent_alert_at is not None:
        silent_since = device.silent_alert_at
        device.silent_alert_at = None
        timeline.record(
            session,
            "device_recovered",
            actor=f"device:{device_id}",
            device_id=device_id,
            at=now,
            alerted_at=silent_since.isoformat(),
        )
    return Outcome("accepted")


def accept_unit_location(session: Session, unit_id: str, fix: LocationPayload, *, now: datetime) -> Outcome:
    """A unit's GPS fix. Older than the one we hold (out-of-order delivery): recorded, not applied."""
    unit = session.get(Unit, unit_id)
    if unit is None:
        return Outcome("dead_letter", "location from unregistered unit")
    if unit.fix_at is not None and fix.ts <= unit.fix_at:
        return Outcome("duplicate", "older than the fix already held")
    if fix.ts > now + timedelta(seconds=CLOCK_SKEW_S):
        return Outcome("dead_letter", f"fix time {fix.ts.isoformat()} is in the future")
    unit.fix_lat, unit.fix_lon, unit.fix_accuracy_m, unit.fix_at = fix.lat, fix.lon, fix.accuracy_m, fix.ts
    return Outcome("accepted")


def accept_unit_status(session: Session, unit_id: str, report: StatusPayload, *, now: datetime) -> Outcome:
    """A unit going on or off duty. Recorded on the unit's timeline; older reports are not applied."""
    unit = session.get(Unit, unit_id)
    if unit is None:
        return Outcome("dead_letter", "status from unregistered unit")
    if unit.status_at is not None and report.ts <= unit.status_at:
        return Outcome("duplicate", "older than the status already held")
    previous = unit.status
    unit.status, unit.status_at = report.status, report.ts
    timeline.record(
        session,
        "unit_status",
        actor=f"unit:{unit_id}",
        unit_id=unit_id,
        source_ts=report.ts,
        at=now,
        previous=previous,
        status=report.status,
        incident_id=None,
    )
    return Outcome("accepted")


def _status(incident: Incident, now: datetime) -> Publication:
    [publication] = status.publications(incident, now)
    return publication
