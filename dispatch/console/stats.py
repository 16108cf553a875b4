"""Today's response times, from incidents and their assignments (pure functions, no I/O).

Intervals start when the press or call reached us (``incident.opened_at``, server time) and end
when a unit was first paged (``assignment.dispatched_at``, set by the first SMS/voice step that
wrote notifications), accepted it (``accepted_at``) and reported on scene (``on_scene_at``).

NFPA 1225 asks that 90 % of alarms be dispatched within 60 s. An assignment not dispatched
within 60 s counts as a miss even if it never was dispatched (it is the worst case, not an
absence); one younger than 60 s and not yet dispatched is still pending and not counted.
Incidents without any assignment (prank, ghost and information calls, or a call still waiting
for its location) are not counted: nothing was to be dispatched yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

NFPA_DISPATCH_S = 60.0
NFPA_TARGET = 0.90
ALL = "all"


@dataclass(frozen=True)
class AssignmentTimes:
    """When one service's unit was paged, accepted and arrived (None: not yet)."""

    service: str
    dispatched_at: datetime | None
    accepted_at: datetime | None
    on_scene_at: datetime | None


@dataclass(frozen=True)
class IncidentTimes:
    """One incident: when it reached us, where from, and its assignments."""

    incident_id: int
    source: str  # press | call
    opened_at: datetime
    assignments: tuple[AssignmentTimes, ...]


@dataclass(frozen=True)
class Percentiles:
    """P50/P90 of one interval in seconds (None when there is no sample)."""

    count: int
    p50: float | None
    p90: float | None


@dataclass(frozen=True)
class ServiceStats:
    """One row of the response-time table."""

    service: str  # police | disaster | ambulance | all
    incidents: int
    to_dispatch: Percentiles
    to_accept: Percentiles
    to_on_scene: Percentiles
    within_target: int  # dispatched within NFPA_DISPATCH_S
    judged: int  # dispatched, or older than NFPA_DISPATCH_S without dispatch
    pending: int  # younger than NFPA_DISPATCH_S and not dispatched yet

    @property
    def within_target_ratio(self) -> float | None:
        """Share dispatched within 60 s (None before the first judged sample)."""
        return self.within_target / self.judged if self.judged else None

    @property
    def meets_target(self) -> bool | None:
        """Whether the NFPA 1225 target (90 % within 60 s) is met today."""
        ratio = self.within_target_ratio
        return None if ratio is None else ratio >= NFPA_TARGET


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` of samples at or below.

    Nearest rank (rather than interpolation) always answers with a time that really happened,
    which is what a compliance report quotes.
    """
    if not values:
        return None
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(values: Sequence[float]) -> Percentiles:
    """Count, P50 and P90 of a list of seconds."""
    return Percentiles(len(values), percentile(values, 0.5), percentile(values, 0.9))


def day_bounds(now: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight around ``now``, as aware datetimes in ``zone``."""
    local = now.astimezone(zone)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else max(0.0, (end - start).total_seconds())


def _first(moments: Iterable[datetime | None]) -> datetime | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def _row(service: str, samples: list[tuple[datetime, AssignmentTimes]], now: datetime, incidents: int) -> ServiceStats:
    dispatch: list[float] = []
    accept: list[float] = []
    on_scene: list[float] = []
    within = judged = pending = 0
    for opened_at, times in samples:
        to_dispatch = _seconds(opened_at, times.dispatched_at)
        if to_dispatch is not None:
            dispatch.append(to_dispatch)
            judged += 1
            within += to_dispatch <= NFPA_DISPATCH_S
        elif (now - opened_at).total_seconds() > NFPA_DISPATCH_S:
            judged += 1  # a miss: 60 s went by without a unit being paged
        else:
            pending += 1
        if (value := _seconds(opened_at, times.accepted_at)) is not None:
            accept.append(value)
        if (value := _seconds(opened_at, times.on_scene_at)) is not None:
            on_scene.append(value)
    return ServiceStats(
        service, incidents, summarize(dispatch), summarize(accept), summarize(on_scene), within, judged, pending
    )


def response_times(
    incidents: Iterable[IncidentTimes], now: datetime, services: Sequence[str] = ("police", "disaster", "ambulance")
) -> list[ServiceStats]:
    """One row per service (each assignment a sample), then an ``all`` row (each incident a sample,
    measured to its first dispatch, first acceptance and first arrival across its services)."""
    chosen = [i for i in incidents if i.assignments]
    rows = []
    for service in services:
        samples = [(i.opened_at, a) for i in chosen for a in i.assignments if a.service == service]
        rows.append(_row(service, samples, now, len(samples)))  # one assignment per incident and service
    overall = [
        (
            i.opened_at,
            AssignmentTimes(
                ALL,
                _first(a.dispatched_at for a in i.assignments),
                _first(a.accepted_at for a in i.assignments),
                _first(a.on_scene_at for a in i.assignments),
            ),
        )
        for i in chosen
    ]
    rows.append(_row(ALL, overall, now, len(chosen)))
    return rows
