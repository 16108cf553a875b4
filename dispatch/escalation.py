"""The escalation engine: durable steps in the database, executed once each.

- ``start`` (in the intake transaction) creates the assignment and its first step.
- ``run_due_steps`` (scheduler tick) claims one due step at a time atomically
  (``UPDATE ... RETURNING`` under SQLite's write lock; ``FOR UPDATE SKIP LOCKED``
  on PostgreSQL), executes it and schedules the next one in the same transaction.
  A crash rolls the whole step back; it is claimed again on the next tick.
- A step whose fence is older than its assignment's exits without acting.
- Notifications are only written here (the outbox); ``dispatch/outbox.py`` sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from geopy.distance import geodesic
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from devices.models import Device
from dispatch import alerts, status, timeline
from dispatch.escalation_policy import StepRef, following
from dispatch.matcher import Candidate, Match, Shortfall, pick_nearest
from dispatch.models import Assignment, EscalationStep, Incident
from foundation.clock import utcnow
from foundation.db import transaction
from foundation.settings import EscalationStep as EscalationStepSetting
from foundation.settings import Settings
from responders.models import Supervisor, Unit

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], object]


@dataclass(frozen=True)
class StepOutcome:
    step_id: int
    incident_id: int
    action: str
    notifications: int
    publications: tuple[tuple[str, bytes], ...] = ()


class EscalationEngine:
    """Creates, claims and executes escalation steps. Stateless between calls."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        publish: Publish,
        public_base: Callable[[], str],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._publish = publish
        self._public_base = public_base
        self._clock = clock
        self._secret = settings.signing_key()

    # -- creating work (inside other transactions) ----------------------------

    def start(self, session: Session, incident: Incident, now: datetime) -> list[Assignment]:
        """Open one assignment per service of the incident, each with its first step due now.

        A multi-agency call (police and ambulance, say) gets independent escalations
        and acknowledgements; the incident resolves when every one has.
        """
        services = list(incident.services or ([incident.service] if incident.service else []))
        opened = []
        for service in services:
            assignment = Assignment(incident_id=incident.id, service=service, state="active", excluded={})
            session.add(assignment)
            session.flush()
            schedule(session, assignment, StepRef(0, 0), self._policy(service)[0].action, now)
            timeline.record(
                session, "escalation_started", actor="system", incident_id=incident.id, at=now, service=service
            )
            opened.append(assignment)
        return opened

    # -- executing due steps ---------------------------------------------------

    def run_due_steps(self, limit: int = 200) -> list[StepOutcome]:
        """Execute due steps, one transaction each, until none is due (or ``limit``)."""
        outcomes: list[StepOutcome] = []
        while len(outcomes) < limit:
            now = self._clock()
            with transaction(self._sessions) as session:
                step = claim_due_step(session, now)
                if step is None:
                    break
                outcome = self._execute(session, step, now)
            outcomes.append(outcome)
            for topic, payload in outcome.publications:
                self._publish(topic, payload)
        return outcomes

    def next_due_at(self) -> datetime | None:
        """When the earliest pending step is due (for the scheduler's next wake-up)."""
        with self._sessions() as session:
            return session.execute(
                select(EscalationStep.due_at)
                .where(EscalationStep.state == "pending")
                .order_by(EscalationStep.due_at)
                .limit(1)
            ).scalar_one_or_none()

    def _execute(self, session: Session, step: EscalationStep, now: datetime) -> StepOutcome:
        assignment = session.get_one(Assignment, step.assignment_id, with_for_update=True)
        incident = session.get_one(Incident, step.incident_id)
        if step.fence != assignment.fence or assignment.state != "active":
            step.state = "stale"
            step.result = {"skipped": f"fence {step.fence} != {assignment.fence} or state {assignment.state}"}
            return StepOutcome(step.id, incident.id, step.action, 0)

        policy = self._policy(assignment.service)
        spec = policy[step.seq]
        device = session.get(Device, incident.device_id) if incident.device_id else None
        context = alerts.AlertContext(
            incident=incident,
            assignment=assignment,
            where=alerts.describe_location(incident, device),
            public_base=self._public_base(),
            secret=self._secret,
        )
        written = 0
        publications: list[tuple[str, bytes]] = []
        result: dict[str, Any] = {"action": spec.action, "channels": list(spec.channels)}

        if spec.action in ("notify_unit", "next_unit"):
            if spec.action == "next_unit" and assignment.unit_id is not None:
                excluded = dict(assignment.excluded)
                excluded.setdefault(assignment.unit_id, "no answer")
                assignment.excluded = excluded
                timeline.record(
                    session,
                    "unit_timed_out",
                    actor="system",
                    incident_id=incident.id,
                    unit_id=assignment.unit_id,
                    at=now,
                    step_id=step.id,
                )
                assignment.unit_id = None
            paged = self._current_or_next_unit(session, assignment, incident, now)
            if paged is not None:
                unit, distance_m = paged
                first_dispatch = assignment.dispatched_at is None
                recipient = alerts.Recipient("unit", unit.id, unit.phone, unit.language, unit.name)
                for channel in spec.channels:
                    key = f"step:{step.id}:unit:{unit.id}:{channel}"
                    if alerts.write_alert(
                        session,
                        context,
                        recipient,
                        channel,
                        key=key,
                        step_id=step.id,
                        distance_m=distance_m,
                        now=now,
                    ):
                        written += 1
                result.update(unit_id=unit.id, distance_m=round(distance_m, 1) if distance_m is not None else None)
                if first_dispatch:
                    assignment.dispatched_at = now
                    publications.extend(self._on_dispatched(session, incident, device, unit, distance_m, now))
            else:
                result["shortfall"] = assignment.explanation.get("shortfall")
                written += self._page_supervisors(
                    session, context, step, spec.channels, now, reason=result["shortfall"] or "no unit"
                )
        else:
            written += self._page_supervisors(session, context, step, spec.channels, now, reason="no answer")

        step.state = "done"
        step.done_at = now
        step.result = result
        timeline.record(
            session,
            f"step_{spec.action}",
            actor="system",
            incident_id=incident.id,
            at=now,
            step_id=step.id,
            round=step.round,
            seq=step.seq,
            notifications=written,
            **result,
        )
        self._schedule_next(session, assignment, incident, step, now)
        return StepOutcome(step.id, incident.id, spec.action, written, tuple(publications))

    def _current_or_next_unit(
        self, session: Session, assignment: Assignment, incident: Incident, now: datetime
    ) -> tuple[Unit, float | None] | None:
        """The unit to page and its distance; None (with the shortfall recorded) when there is none."""
        if assignment.unit_id is not None:
            unit = session.get_one(Unit, assignment.unit_id)
            known = assignment.explanation.get("distance_m")
            return unit, float(known) if known is not None else self._distance(unit, incident, now)
        answer = self.pick(session, incident, assignment, now)
        if isinstance(answer, Shortfall):
            assignment.explanation = {"shortfall": answer.reason, "skipped": answer.skipped}
            timeline.record(
                session,
                "no_unit_available",
                actor="system",
                incident_id=incident.id,
                at=now,
                reason=answer.reason,
                skipped=answer.skipped,
            )
            return None
        assignment.unit_id = answer.unit_id
        assignment.explanation = {
            "unit_id": answer.unit_id,
            "distance_m": round(answer.distance_m, 1),
            "position_source": answer.position_source,
            "position_age_s": answer.position_age_s,
            "skipped": answer.skipped,
            "next": [list(r) for r in answer.ranked],
        }
        timeline.record(
            session,
            "unit_matched",
            actor="system",
            incident_id=incident.id,
            at=now,
            **assignment.explanation,  # includes unit_id, which fills the event's unit column
        )
        return session.get_one(Unit, answer.unit_id), answer.distance_m

    def _distance(self, unit: Unit, incident: Incident, now: datetime) -> float | None:
        """Geodesic distance for a unit chosen by hand (its fresh fix, else its station)."""
        if incident.lat is None or incident.lon is None:
            return None
        fresh = (
            unit.fix_at is not None and (now - unit.fix_at).total_seconds() <= self._settings.escalation.max_fix_age_s
        )
        lat, lon = (unit.fix_lat, unit.fix_lon) if fresh else (unit.station_lat, unit.station_lon)
        return float(geodesic((incident.lat, incident.lon), (lat, lon)).meters)

    def pick(self, session: Session, incident: Incident, assignment: Assignment, now: datetime) -> Match | Shortfall:
        """The matcher's answer for this assignment, from a fresh roster snapshot."""
        assert incident.lat is not None and incident.lon is not None
        units = session.execute(select(Unit).where(Unit.service == assignment.service, Unit.active.is_(True))).scalars()
        candidates = [_candidate(unit) for unit in units]
        return pick_nearest(
            incident.lat,
            incident.lon,
            assignment.service,
            candidates,
            now=now,
            exclude=dict(assignment.excluded),
            max_fix_age_s=self._settings.escalation.max_fix_age_s,
        )

    def _page_supervisors(
        self,
        session: Session,
        context: alerts.AlertContext,
        step: EscalationStep,
        channels: tuple[str, ...],
        now: datetime,
        *,
        reason: str,
    ) -> int:
        assert context.assignment is not None
        supervisors = session.execute(
            select(Supervisor).where(Supervisor.service == context.assignment.service, Supervisor.active.is_(True))
        ).scalars()
        written = 0
        for supervisor in supervisors:
            recipient = alerts.Recipient(
                "supervisor", supervisor.id, supervisor.phone, supervisor.language, supervisor.name
            )
            for channel in channels:
                key = f"step:{step.id}:supervisor:{supervisor.id}:{channel}"
                if alerts.write_alert(
                    session,
                    context,
                    recipient,
                    channel,
                    key=key,
                    step_id=step.id,
                    distance_m=None,
                    now=now,
                    reason=reason,
                ):
                    written += 1
        if written == 0:
            log.error("incident %s: no active supervisor for %s", context.incident.id, context.assignment.service)
            timeline.record(
                session,
                "no_supervisor",
                actor="system",
                incident_id=context.incident.id,
                at=now,
                service=context.assignment.service,
            )
        return written

    def _on_dispatched(
        self,
        session: Session,
        incident: Incident,
        device: Device | None,
        unit: Unit,
        distance_m: float | None,
        now: datetime,
    ) -> list[tuple[str, bytes]]:
        if incident.state == "received":
            incident.state = "dispatched"
        if device is not None and self._settings.escalation.resident_sms:
            alerts.write_resident_update(
                session,
                incident,
                device,
                "dispatched",
                unit_name=unit.name,
                distance_m=distance_m,
                now=now,
            )
        extra = {
            "unit_name": unit.name,
            "distance_m": round(distance_m) if distance_m is not None else None,
            "service": unit.service,
        }
        return [(p.topic, p.payload) for p in status.publications(incident, now, **extra)]

    def _schedule_next(
        self,
        session: Session,
        assignment: Assignment,
        incident: Incident,
        step: EscalationStep,
        now: datetime,
    ) -> None:
        policy = self._policy(assignment.service)
        settings = self._settings.escalation
        nxt = following(policy, StepRef(step.round, step.seq), repeat=settings.repeat, round_gap_s=settings.round_gap_s)
        if nxt is None:
            assignment.state = "exhausted"
            incident.needs_review = True
            incident.review_reason = "nobody acknowledged: escalation policy exhausted"
            timeline.record(session, "escalation_exhausted", actor="system", incident_id=incident.id, at=now)
            log.error("incident %s: escalation exhausted without acknowledgement", incident.id)
            return
        ref, delay = nxt
        assignment.round = ref.round
        schedule(session, assignment, ref, policy[ref.seq].action, now + timedelta(seconds=delay))

    def _policy(self, service: str) -> tuple[EscalationStepSetting, ...]:
        policy = self._settings.escalation.policies.get(service)  # type: ignore[call-overload]
        if policy is None:
            raise LookupError(f"no escalation policy for service {service!r}")
        return policy


def schedule(session: Session, assignment: Assignment, ref: StepRef, action: str, due_at: datetime) -> EscalationStep:
    """Add a pending step under the assignment's current fence."""
    step = EscalationStep(
        assignment_id=assignment.id,
        incident_id=assignment.incident_id,
        fence=assignment.fence,
        round=ref.round,
        seq=ref.seq,
        action=action,
        due_at=due_at,
        state="pending",
        result={},
    )
    session.add(step)
    session.flush()
    return step


def fence_off(session: Session, assignment: Assignment, now: datetime) -> int:
    """Invalidate every pending step of the assignment (new fence); returns how many were cancelled."""
    assignment.fence += 1
    cancelled = session.execute(
        update(EscalationStep)
        .where(EscalationStep.assignment_id == assignment.id, EscalationStep.state == "pending")
        .values(state="cancelled", done_at=now)
    )
    return int(cancelled.rowcount or 0)  # type: ignore[attr-defined]


def claim_due_step(session: Session, now: datetime) -> EscalationStep | None:
    """Atomically take one due step for this transaction (see module docstring)."""
    due = (
        select(EscalationStep.id)
        .where(EscalationStep.state == "pending", EscalationStep.due_at <= now)
        .order_by(EscalationStep.due_at, EscalationStep.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    step_id = session.execute(
        update(EscalationStep)
        .where(EscalationStep.id == due.scalar_subquery(), EscalationStep.state == "pending")
        .values(state="pending")  # a no-op write that takes the row (and SQLite's write lock) for us
        .returning(EscalationStep.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return session.get(EscalationStep, step_id) if step_id is not None else None


def _candidate(unit: Unit) -> Candidate:
    status = "busy" if unit.current_incident_id is not None and unit.status == "available" else unit.status
    has_fix = unit.fix_lat is not None and unit.fix_lon is not None and unit.fix_at is not None
    return Candidate(
        unit_id=unit.id,
        service=unit.service,
        status=status,
        station_lat=unit.station_lat,
        station_lon=unit.station_lon,
        fix_lat=unit.fix_lat if has_fix else None,
        fix_lon=unit.fix_lon if has_fix else None,
        fix_at=unit.fix_at if has_fix else None,
    )
