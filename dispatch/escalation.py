"""The escalation engine: durable steps in the database, executed once each.

- ``start`` (in the intake transaction) creates the assignment and its first step.
- ``run_due_steps`` (scheduler tick) claims a batch of due steps atomically
  (``UPDATE ... RETURNING`` under SQLite's write lock; ``FOR UPDATE SKIP LOCKED``
  on PostgreSQL) and executes each, with the next one it schedules, in its own savepoint
  of the batch's transaction. A crash rolls the batch back; it is claimed again on the next tick.
- A step whose fence is older than its assignment's exits without acting.
- Notifications are only written here (the outbox); ``dispatch/outbox.py`` sends them.
- A round (one pass through the policy) starts from the nearest available unit: a unit
  that timed out is passed over for the rest of its round only; one that declined, for good.
- Supervisors are paged at most once per round of an assignment.
- When the last step of the last round has run and nobody accepted, the assignment is
  ``exhausted`` and the incident ``unanswered``.
- ``bring_forward``: a page that definitely failed moves the next step to now.
- A step that fails ``POISON_AFTER`` times in a row for a reason other than an unreachable
  database is set aside (``failed``, the incident flagged for review, on the timeline): steps
  run in due order, so one broken step retried for ever would stop every escalation behind it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from geopy.distance import geodesic
from sqlalchemy import BindParameter, Row, and_, bindparam, or_, select, text, true, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from devices.models import Device
from dispatch import alerts, status, timeline
from dispatch.escalation_policy import StepRef, following
from dispatch.geocoding import GazetteerGeocoder
from dispatch.matcher import (
    Box,
    Candidate,
    Match,
    Shortfall,
    nearby_skipped,
    next_window_m,
    pick_nearest,
    search_box,
    window_proves,
    window_radii,
)
from dispatch.models import Assignment, EscalationStep, Incident, Notification
from foundation.clock import utcnow
from foundation.db import reading, transaction
from foundation.settings import EscalationStep as EscalationStepSetting
from foundation.settings import Settings
from responders.models import Supervisor, Unit

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], object]

# Why a unit is passed over (Assignment.excluded): for the rest of its round, or for the incident.
NO_ANSWER = "no answer"
DECLINED = "declined"
# Why a failed page brought the next step forward (step_brought_forward's data.reason).
BRING_FORWARD_REASONS = ("no-answer", "busy", "failed", "permanent_sms_failure")
# A step failing this many times in a row (not for a database outage) is set aside.
POISON_AFTER = 3
STEP_FAILED = "escalation step failed"
# A call in one of these states may still be answered: its step is not over yet.
_CALL_IN_FLIGHT = ("pending", "sending", "queued", "initiated", "ringing", "in-progress")


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
        nearest_place: Callable[[float, float], str | None] | None = None,
    ) -> None:
        """``nearest_place`` names a bare pin for responders; by default the offline gazetteer's."""
        self._sessions = sessions
        self._settings = settings
        self._publish = publish
        self._public_base = public_base
        self._clock = clock
        self._secret = settings.signing_key()
        self._nearest_place = (
            nearest_place or GazetteerGeocoder.from_file(settings.geocoding.gazetteer_path).nearest_place
        )
        self._failures: dict[int, int] = {}  # step id -> failed attempts in a row, in this process
        # Where the roster search starts, per service: a guess from the last pick, never an answer.
        # None yet: the first pick of a service reads it whole, which also tells how thin it is.
        self._window_m: dict[str, float] = {}

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

    def run_due_steps(self, limit: int = 200, *, committed: Callable[[], object] | None = None) -> list[StepOutcome]:
        """Execute due steps, a batch per transaction, until none is due (or ``limit``).

        A batch shares one claim, one commit and one connection checkout: a burst of
        thousands of first steps is paid per batch, not per step. Each step runs in its own
        savepoint, so a step that raises is rolled back alone and its batch carries on.
        ``committed`` is called after each batch's commit (the sender may start at once).
        """
        outcomes: list[StepOutcome] = []
        busy: set[int] = set()  # steps whose incident someone else is working on: after this pass
        batch = self._settings.escalation.batch_size
        while len(outcomes) < limit:
            now = self._clock()
            done: list[StepOutcome] = []
            with transaction(self._sessions) as session:
                steps = claim_due_steps(session, now, min(batch, limit - len(outcomes)), skip=busy)
                if steps:  # the claim itself never waits (SKIP LOCKED)
                    _wait_briefly_for_locks(session)
                for step in steps:
                    outcome = self._execute_alone(session, step, now, busy)
                    if outcome is not None:
                        done.append(outcome)
            if not steps:
                break
            outcomes.extend(done)
            for outcome in done:
                self._failures.pop(outcome.step_id, None)
                for topic, payload in outcome.publications:
                    self._publish(topic, payload)
            if done and committed is not None:
                committed()
        return outcomes

    def _execute_alone(
        self, session: Session, step: EscalationStep, now: datetime, busy: set[int]
    ) -> StepOutcome | None:
        """One step of a batch in its own savepoint; None when it did not run (busy, failed)."""
        step_id = step.id
        try:
            with session.begin_nested():
                return self._execute(session, step, now)
        except IncidentBusy:
            busy.add(step_id)
            return None
        except OperationalError as exc:
            if not _contended(exc):
                raise  # the database is unreachable: the whole batch rolls back and is claimed again
            # Another worker's batch holds what this step needs (the same phone's next alert code,
            # say): its savepoint is rolled back and it runs on the next pass, after that commit.
            log.info("step %d waits for another worker (%s): next pass", step_id, _sqlstate(exc))
            busy.add(step_id)
            return None
        except InterfaceError:
            raise
        except Exception as exc:
            busy.add(step_id)  # rolled back alone; the rest of the batch goes on
            if self._poisoned(step_id, exc):
                log.exception("step %d failed %d times in a row: set aside", step_id, POISON_AFTER)
                self._set_aside(session, step_id, exc, now)
            else:
                log.exception("step %d failed; it is tried again on the next pass", step_id)
            return None

    def _poisoned(self, step_id: int, exc: Exception) -> bool:
        if isinstance(exc, OperationalError | InterfaceError):
            return False  # the database is unreachable: every step fails alike; retry, never blame one
        failures = self._failures[step_id] = self._failures.get(step_id, 0) + 1
        return failures >= POISON_AFTER

    def _set_aside(self, session: Session, step_id: int, exc: Exception, now: datetime) -> None:
        """Take a step that keeps failing out of the queue, and put its incident before a person."""
        self._failures.pop(step_id, None)
        error = f"{type(exc).__name__}: {exc}"[:300]
        with session.begin_nested():
            step = session.get_one(EscalationStep, step_id)
            step.state, step.done_at, step.result = "failed", now, {"error": error}
            incident = session.get_one(Incident, step.incident_id)
            incident.needs_review, incident.review_reason = True, STEP_FAILED
            timeline.record(
                session,
                "step_failed",
                actor="engine",
                incident_id=incident.id,
                at=now,
                step_id=step.id,
                action=step.action,
                attempts=POISON_AFTER,
                error=error,
            )

    def next_due_at(self) -> datetime | None:
        """When the earliest pending step is due (for the scheduler's next wake-up)."""
        with reading(self._sessions) as session:
            return session.execute(
                select(EscalationStep.due_at)
                .where(EscalationStep.state == "pending")
                .order_by(EscalationStep.due_at)
                .limit(1)
            ).scalar_one_or_none()

    def _execute(self, session: Session, step: EscalationStep, now: datetime) -> StepOutcome:
        # Everyone else takes incident, then assignment, then steps (an action locks the incident,
        # an acknowledgement too); we already hold the step. Waiting here could close a cycle
        # (PostgreSQL would abort one side: perhaps a responder's "YA"), so the engine never
        # waits: it leaves the step for the next pass while someone else works on the incident.
        incident = _lock_now(session, Incident, step.incident_id)
        assignment = _lock_now(session, Assignment, step.assignment_id)
        if incident is None or assignment is None:
            raise IncidentBusy(step.id)
        if step.fence != assignment.fence or assignment.state != "active":
            step.state = "stale"
            step.result = {"skipped": f"fence {step.fence} != {assignment.fence} or state {assignment.state}"}
            return StepOutcome(step.id, incident.id, step.action, 0)

        policy = self._policy(assignment.service)
        spec = policy[step.seq]
        if step.round > assignment.round:
            self._start_round(session, assignment, step, now)
        device = session.get(Device, incident.device_id) if incident.device_id else None
        context = alerts.AlertContext(
            incident=incident,
            assignment=assignment,
            device=device,
            public_base=self._public_base(),
            secret=self._secret,
        )
        written = 0
        publications: list[tuple[str, bytes]] = []
        result: dict[str, Any] = {"action": spec.action, "channels": list(spec.channels)}

        if spec.action in ("notify_unit", "next_unit"):
            if spec.action == "next_unit" and (timed_out := _time_out(session, assignment, step, step.round, now)):
                assignment.excluded = {timed_out: NO_ANSWER, **assignment.excluded}  # for the rest of this round
            paged = self._current_or_next_unit(session, assignment, incident, now)
            # After the pick's queries: the name goes out with the incident's other changes, one UPDATE.
            self._name_the_pin(incident)
            if paged is not None:
                unit, distance_m = paged
                first_dispatch = assignment.dispatched_at is None
                # Every change to the incident and the assignment before the first query that
                # follows: each row is then one UPDATE (autoflush), not one per change.
                if first_dispatch:
                    assignment.dispatched_at = now
                    if incident.state == "received":
                        incident.state = "dispatched"
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
                    publications.extend(self._on_dispatched(session, incident, device, unit, distance_m, now))
                elif incident.state == "unanswered":
                    # Paging again after exhaustion (a moved pin restarts it): no longer unanswered.
                    publications.extend(status.refresh_incident(session, self._settings, incident, now))
            else:
                result["shortfall"] = assignment.explanation.get("shortfall")
                written += self._page_supervisors_once(
                    session, context, step, spec.channels, now, result, reason=result["shortfall"] or "no unit"
                )
        else:
            self._name_the_pin(incident)
            written += self._page_supervisors_once(session, context, step, spec.channels, now, result, reason=NO_ANSWER)

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
        publications.extend(self._schedule_next(session, assignment, incident, step, now))
        return StepOutcome(step.id, incident.id, spec.action, written, tuple(publications))

    def _name_the_pin(self, incident: Incident) -> None:
        """Remember the nearest named place of the incident's pin (once per pin) for what responders read."""
        if incident.lat is None or incident.lon is None:
            return
        here = alerts.pin_key(incident.lat, incident.lon)
        if (incident.geocode or {}).get("near_of") == here:
            return
        near = self._nearest_place(incident.lat, incident.lon)
        incident.geocode = {**(incident.geocode or {}), "near": near, "near_of": here}

    def _start_round(self, session: Session, assignment: Assignment, step: EscalationStep, now: datetime) -> None:
        """A new round pages the nearest available unit again, as the first round did.

        Units that only timed out in the last round may be paged again; units that declined
        stay passed over. The unit paged at the end of the last round did not answer either.
        """
        _time_out(session, assignment, step, assignment.round, now)
        readmitted = sorted(unit for unit, why in assignment.excluded.items() if why == NO_ANSWER)
        assignment.excluded = {unit: why for unit, why in assignment.excluded.items() if why != NO_ANSWER}
        assignment.round = step.round
        timeline.record(
            session,
            "round_started",
            actor="system",
            incident_id=assignment.incident_id,
            at=now,
            step_id=step.id,
            round=step.round,
            service=assignment.service,
            readmitted=readmitted,
            still_excluded=sorted(assignment.excluded) or None,
        )

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
        # Loaded before the assignment changes, so they wait for the caller's own (one UPDATE).
        unit = session.get_one(Unit, answer.unit_id)
        assignment.unit_id = answer.unit_id
        assignment.explanation = {
            "unit_id": answer.unit_id,
            "distance_m": round(answer.distance_m, 1),
            "position_source": answer.position_source,
            "position_age_s": answer.position_age_s,
            "skipped": answer.skipped,
            # Busy and off-duty units farther than the pick are not listed (`pick`): say so on screen.
            "skipped_nearby": True,
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
        return unit, answer.distance_m

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
        """The matcher's answer for this assignment, from the roster as it is in the database now.

        Only the units in a box around the incident are read, the box growing until the answer is
        proven to be the whole roster's (`window_proves`); the whole service is read when no box
        proves it (a shortfall, a sparse roster, a pole or the antimeridian).  `skipped` lists the
        excluded units and the busy or off-duty ones no farther than the pick (`nearby_skipped`).
        """
        assert incident.lat is not None and incident.lon is not None
        lat, lon, service = incident.lat, incident.lon, assignment.service
        exclude = dict(assignment.excluded)
        max_fix_age_s = self._settings.escalation.max_fix_age_s
        for radius_m in window_radii(self._window_m.get(service, math.inf)):
            box = search_box(lat, lon, radius_m)
            if box is None:
                break
            candidates = roster_rows(session, service, box, exclude)
            answer = pick_nearest(lat, lon, service, candidates, now=now, exclude=exclude, max_fix_age_s=max_fix_age_s)
            if window_proves(answer, radius_m):
                self._window_m[service] = next_window_m(answer)
                return nearby_skipped(answer, lat, lon, candidates, now=now, max_fix_age_s=max_fix_age_s)
        candidates = roster_rows(session, service, None, exclude)
        answer = pick_nearest(lat, lon, service, candidates, now=now, exclude=exclude, max_fix_age_s=max_fix_age_s)
        self._window_m[service] = next_window_m(answer)
        return nearby_skipped(answer, lat, lon, candidates, now=now, max_fix_age_s=max_fix_age_s)

    def _page_supervisors_once(
        self,
        session: Session,
        context: alerts.AlertContext,
        step: EscalationStep,
        channels: tuple[str, ...],
        now: datetime,
        result: dict[str, Any],
        *,
        reason: str,
    ) -> int:
        """Page the supervisors unless this round already did (then ``result`` says which step did)."""
        assert context.assignment is not None
        earlier = supervisors_paged_by(session, context.assignment.id, step.round)
        if earlier is not None:
            result["already_paged"] = earlier
            return 0
        return self._page_supervisors(session, context, step, channels, now, reason=reason)

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
    ) -> list[tuple[str, bytes]]:
        """Schedule the policy's next step; when there is none, the incident is unanswered.

        Returns the status publications of an exhaustion (the incident's state changed).
        """
        policy = self._policy(assignment.service)
        settings = self._settings.escalation
        nxt = following(policy, StepRef(step.round, step.seq), repeat=settings.repeat, round_gap_s=settings.round_gap_s)
        if nxt is not None:
            ref, delay = nxt
            schedule(session, assignment, ref, policy[ref.seq].action, now + timedelta(seconds=delay))
            return []
        assignment.state = "exhausted"
        incident.needs_review = True
        incident.review_reason = "nobody acknowledged: escalation policy exhausted"
        timeline.record(
            session,
            "escalation_exhausted",
            actor="system",
            incident_id=incident.id,
            at=now,
            service=assignment.service,
            rounds=step.round + 1,
        )
        log.error("incident %s: escalation exhausted without acknowledgement", incident.id)
        return status.refresh_incident(session, self._settings, incident, now)

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


def _time_out(session: Session, assignment: Assignment, step: EscalationStep, round_: int, now: datetime) -> str | None:
    """The paged unit's time (in ``round_``) is up: stop paging it. Returns its id, if one was paged."""
    unit_id = assignment.unit_id
    if unit_id is None:
        return None
    timeline.record(
        session,
        "unit_timed_out",
        actor="system",
        incident_id=assignment.incident_id,
        unit_id=unit_id,
        at=now,
        step_id=step.id,
        round=round_,
    )
    assignment.unit_id = None
    return unit_id


def supervisors_paged_by(session: Session, assignment_id: int, round_: int) -> int | None:
    """The step that paged the assignment's supervisors in this round, if one did."""
    return session.execute(
        select(EscalationStep.id)
        .join(Notification, Notification.step_id == EscalationStep.id)
        .where(
            EscalationStep.assignment_id == assignment_id,
            EscalationStep.round == round_,
            Notification.recipient_kind == "supervisor",
        )
        .order_by(EscalationStep.id)
        .limit(1)
    ).scalar_one_or_none()


def bring_forward(
    session: Session, assignment_id: int, now: datetime, reason: str, *, step_id: int | None = None
) -> int:
    """A page definitely failed: bring the assignment's pending step forward to now, on the timeline.

    ``reason`` is one of :data:`BRING_FORWARD_REASONS`. ``step_id`` is the step whose page
    failed; nothing moves when the escalation has gone past that step since (the failure is
    old news), or while a call of that step may still be answered (an SMS refused for good
    while the same step's call rings). Returns how many steps were moved.
    """
    if step_id is not None and (
        step_id != _last_executed_step(session, assignment_id) or _call_in_flight(session, step_id)
    ):
        return 0
    pending = session.execute(
        select(EscalationStep)
        .where(
            EscalationStep.assignment_id == assignment_id,
            EscalationStep.state == "pending",
            EscalationStep.due_at > now,
        )
        .with_for_update()
    ).scalars()
    moved = 0
    for step in pending:
        timeline.record(
            session,
            "step_brought_forward",
            actor="system",
            incident_id=step.incident_id,
            at=now,
            reason=reason,
            step_id=step.id,
            action=step.action,
            round=step.round,
            seq=step.seq,
            was_due=step.due_at.isoformat(),
            failed_step_id=step_id,
        )
        step.due_at = now
        moved += 1
    return moved


def _last_executed_step(session: Session, assignment_id: int) -> int | None:
    return session.execute(
        select(EscalationStep.id)
        .where(EscalationStep.assignment_id == assignment_id, EscalationStep.state == "done")
        .order_by(EscalationStep.done_at.desc(), EscalationStep.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _call_in_flight(session: Session, step_id: int) -> bool:
    return (
        session.execute(
            select(Notification.id)
            .where(
                Notification.step_id == step_id,
                Notification.channel == "voice",
                Notification.state.in_(_CALL_IN_FLIGHT),
            )
            .limit(1)
        ).first()
        is not None
    )


def fence_off(session: Session, assignment: Assignment, now: datetime) -> int:
    """Invalidate every pending step of the assignment (new fence); returns how many were cancelled."""
    assignment.fence += 1
    cancelled = session.execute(
        update(EscalationStep)
        .where(EscalationStep.assignment_id == assignment.id, EscalationStep.state == "pending")
        .values(state="cancelled", done_at=now)
    )
    return int(cancelled.rowcount or 0)  # type: ignore[attr-defined]


_Locked = TypeVar("_Locked", Incident, Assignment)


class IncidentBusy(Exception):
    """Another transaction holds the step's incident or assignment: run the step on a later pass."""

    def __init__(self, step_id: int) -> None:
        super().__init__(f"step {step_id}: its incident is being changed by someone else")
        self.step_id = step_id


def _lock_now(session: Session, model: type[_Locked], row_id: int) -> _Locked | None:
    """The row, locked for this transaction, or None if another transaction holds it (no waiting)."""
    return session.execute(
        select(model).where(model.id == row_id).with_for_update(skip_locked=True)
    ).scalar_one_or_none()


# PostgreSQL: deadlock, serialization failure, lock wait timeout. A step meeting one of these
# gave way to another transaction; the step itself is fine.
CONTENDED = frozenset({"40P01", "40001", "55P03"})
# How long a step may wait for a row lock or a unique key another worker is inserting.
LOCK_WAIT = "200ms"


def _wait_briefly_for_locks(session: Session) -> None:
    """Bound this batch's lock waits: a wait is a step for the next pass, not a stalled batch.

    Two workers' batches can each insert rows the other is about to insert (alert codes of one
    phone): without a bound they wait for each other's whole batch, or deadlock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))


def _sqlstate(exc: OperationalError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _contended(exc: OperationalError) -> bool:
    return _sqlstate(exc) in CONTENDED


def claim_due_steps(session: Session, now: datetime, limit: int, skip: Collection[int] = ()) -> list[EscalationStep]:
    """Atomically take up to ``limit`` due steps for this transaction (see module docstring), none of ``skip``."""
    due = (
        select(EscalationStep.id)
        .where(EscalationStep.state == "pending", EscalationStep.due_at <= now)
        .where(EscalationStep.id.not_in(skip) if skip else true())
        .order_by(EscalationStep.due_at, EscalationStep.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    step_ids = (
        session.execute(
            update(EscalationStep)
            .where(EscalationStep.id.in_(due.scalar_subquery()), EscalationStep.state == "pending")
            .values(state="pending")  # a no-op write that takes the rows (and SQLite's write lock) for us
            .returning(EscalationStep.id)
            .execution_options(synchronize_session=False)
        )
        .scalars()
        .all()
    )
    if not step_ids:
        return []
    steps = session.execute(select(EscalationStep).where(EscalationStep.id.in_(step_ids))).scalars().all()
    return sorted(steps, key=lambda step: (step.due_at, step.id))


_ROSTER_COLUMNS = (
    Unit.id,
    Unit.service,
    Unit.status,
    Unit.current_incident_id,
    Unit.station_lat,
    Unit.station_lon,
    Unit.fix_lat,
    Unit.fix_lon,
    Unit.fix_at,
)
_SERVICE: BindParameter[str] = bindparam("service")
_WHOLE_SERVICE = select(*_ROSTER_COLUMNS).where(Unit.service == _SERVICE, Unit.active.is_(True))
# Built once: building the expression costs more than running it.
_NEAR = (
    and_(
        Unit.service == _SERVICE,
        Unit.station_lat.between(bindparam("s"), bindparam("n")),
        Unit.station_lon.between(bindparam("w"), bindparam("e")),
    ),
    and_(
        Unit.service == _SERVICE,
        Unit.fix_lat.between(bindparam("s"), bindparam("n")),
        Unit.fix_lon.between(bindparam("w"), bindparam("e")),
    ),
)
_IN_BOX = select(*_ROSTER_COLUMNS).where(Unit.active.is_(True), or_(*_NEAR))
_IN_BOX_OR_ALSO = select(*_ROSTER_COLUMNS).where(
    Unit.active.is_(True),
    or_(*_NEAR, and_(Unit.service == _SERVICE, Unit.id.in_(bindparam("also", expanding=True)))),
)
# One row of _ROSTER_COLUMNS.
_RosterRow = Row[str, str, str, int | None, float, float, float | None, float | None, datetime | None]


def roster_rows(session: Session, service: str, box: Box | None, also: Collection[str] = ()) -> list[Candidate]:
    """The service's active units whose station or fix lies in ``box`` (all of them if None), and ``also``.

    Each branch of the OR names the service itself and nothing else is outside the OR, so each branch
    is one range scan of an index of migration 0013 (SQLite's multi-index OR, PostgreSQL's BitmapOr);
    with the service outside too, SQLite scans the whole service.  Only the matcher's columns are read.
    """
    if box is None:
        query = _WHOLE_SERVICE
        params: dict[str, Any] = {"service": service}
    else:
        query = _IN_BOX_OR_ALSO if also else _IN_BOX
        params = {"service": service, "s": box.south, "n": box.north, "w": box.west, "e": box.east}
        if also:
            params["also"] = sorted(also)
    return [_candidate(row) for row in session.execute(query, params)]


def _candidate(unit: _RosterRow) -> Candidate:
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
