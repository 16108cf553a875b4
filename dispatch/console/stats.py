"""Response times that cannot flatter, from incidents and their assignments (pure functions, no I/O).

Intervals start when the press or call reached us (``incident.opened_at``, server time). For
NFPA 1225 an alarm is *dispatched* when a unit actually got the page: the first SMS Twilio
reported ``delivered`` or the first call a unit picked up, never the moment we queued it
(``assignment.dispatched_at``), which only says we tried. Then: accepted (``accepted_at``) and
on scene (``on_scene_at``).

NFPA 1225 asks that 90 % of alarms be dispatched within 60 s. An assignment whose page was not
delivered within 60 s counts as a miss even if it never was (the worst case, not an absence);
one younger than 60 s without a delivered page is still pending and not judged. An assignment
nobody accepted is a failure, counted and listed, once it has had 60 s; incidents without any
assignment (prank, ghost and information calls, a call waiting for its location) and incidents
the resident cancelled within the grace window had nothing to dispatch and are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

NFPA_DISPATCH_S = 60.0
NFPA_TARGET = 0.90
ALL = "all"
SERVICES = ("police", "disaster", "ambulance")
RANGES = ("today", "7d", "30d", "custom")
MAX_CUSTOM_DAYS = 366
# Histogram bins of the distribution chart, in seconds (the last one open-ended).
BINS = (0.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
NOT_NEEDED = ("cancelled_within_grace",)


@dataclass(frozen=True)
class AssignmentTimes:
    """One service's milestones (None: not yet)."""

    service: str
    delivered_at: datetime | None  # first page a unit got: SMS delivered or call picked up
    accepted_at: datetime | None
    on_scene_at: datetime | None
    state: str = "active"


@dataclass(frozen=True)
class IncidentTimes:
    """One incident: when it reached us, where from, and its assignments."""

    incident_id: int
    source: str  # press | call
    opened_at: datetime
    assignments: tuple[AssignmentTimes, ...]
    disposition: str | None = None


@dataclass(frozen=True)
class Interval:
    """One assignment's intervals in seconds, and what became of it (a row of the CSV export)."""

    incident_id: int
    service: str
    opened_at: datetime
    to_delivered: float | None
    to_accept: float | None
    to_on_scene: float | None
    outcome: str  # accepted | never_accepted | pending


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
    to_delivered: Percentiles
    to_accept: Percentiles
    to_on_scene: Percentiles
    within_target: int  # first page delivered within NFPA_DISPATCH_S
    judged: int  # delivered, or older than NFPA_DISPATCH_S without a delivered page
    pending: int  # younger than NFPA_DISPATCH_S and no page delivered yet
    never_accepted: int

    @property
    def within_target_ratio(self) -> float | None:
        """Share with a page delivered within 60 s (None before the first judged sample)."""
        return self.within_target / self.judged if self.judged else None

    @property
    def meets_target(self) -> bool | None:
        """Whether the NFPA 1225 target (90 % within 60 s) is met in the range."""
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


def date_range(
    choice: str, now: datetime, zone: tzinfo, first: date | None = None, last: date | None = None
) -> tuple[datetime, datetime]:
    """[start, end) of a range of local days: today, the last 7 or 30 days (today included), or
    ``first``..``last`` inclusive. Raises ValueError whose text is a code for what is wrong
    (bad_choice, missing_dates, reversed, too_long) that the page says in the user's language."""
    today_start, tomorrow = day_bounds(now, zone)
    if choice == "today":
        return today_start, tomorrow
    if choice in ("7d", "30d"):
        return today_start - timedelta(days=int(choice[:-1]) - 1), tomorrow
    if choice != "custom":
        raise ValueError("bad_choice")
    if first is None or last is None:
        raise ValueError("missing_dates")
    if last < first:
        raise ValueError("reversed")
    if (last - first).days >= MAX_CUSTOM_DAYS:
        raise ValueError("too_long")
    start = datetime.combine(first, time(0), tzinfo=zone)
    return start, datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone)


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else max(0.0, (end - start).total_seconds())


def _first(moments: Iterable[datetime | None]) -> datetime | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def _interval(incident: IncidentTimes, times: AssignmentTimes, now: datetime) -> Interval:
    opened = incident.opened_at
    if times.accepted_at is not None:
        outcome = "accepted"
    elif (now - opened).total_seconds() > NFPA_DISPATCH_S or times.state in ("exhausted", "cancelled", "resolved"):
        outcome = "never_accepted"
    else:
        outcome = "pending"
    return Interval(
        incident.incident_id,
        times.service,
        opened,
        _seconds(opened, times.delivered_at),
        _seconds(opened, times.accepted_at),
        _seconds(opened, times.on_scene_at),
        outcome,
    )


def counted(incidents: Iterable[IncidentTimes]) -> list[IncidentTimes]:
    """The incidents that had something to dispatch."""
    return [i for i in incidents if i.assignments and i.disposition not in NOT_NEEDED]


def intervals(incidents: Iterable[IncidentTimes], now: datetime) -> list[Interval]:
    """One row per assignment of every counted incident, oldest first."""
    rows = [_interval(i, a, now) for i in counted(incidents) for a in i.assignments]
    return sorted(rows, key=lambda r: (r.opened_at, r.incident_id, r.service))


def _row(service: str, rows: Sequence[Interval], now: datetime, incidents: int) -> ServiceStats:
    within = judged = pending = 0
    for row in rows:
        if row.to_delivered is not None:
            judged += 1
            within += row.to_delivered <= NFPA_DISPATCH_S
        elif (now - row.opened_at).total_seconds() > NFPA_DISPATCH_S:
            judged += 1  # a miss: 60 s went by without a unit getting the page
        else:
            pending += 1
    return ServiceStats(
        service,
        incidents,
        summarize([r.to_delivered for r in rows if r.to_delivered is not None]),
        summarize([r.to_accept for r in rows if r.to_accept is not None]),
        summarize([r.to_on_scene for r in rows if r.to_on_scene is not None]),
        within,
        judged,
        pending,
        sum(r.outcome == "never_accepted" for r in rows),
    )


def response_times(
    incidents: Iterable[IncidentTimes], now: datetime, services: Sequence[str] = SERVICES
) -> list[ServiceStats]:
    """One row per service (each assignment a sample), then an ``all`` row (each incident a sample,
    measured to its first delivered page, first acceptance and first arrival across its services)."""
    chosen = counted(incidents)
    per_assignment = intervals(chosen, now)
    rows = []
    for service in services:
        mine = [r for r in per_assignment if r.service == service]
        rows.append(_row(service, mine, now, len(mine)))  # one assignment per incident and service
    overall = [
        _interval(
            i,
            AssignmentTimes(
                ALL,
                _first(a.delivered_at for a in i.assignments),
                _first(a.accepted_at for a in i.assignments),
                _first(a.on_scene_at for a in i.assignments),
                "active" if any(a.state == "active" for a in i.assignments) else "exhausted",
            ),
            now,
        )
        for i in chosen
    ]
    rows.append(_row(ALL, overall, now, len(chosen)))
    return rows


def failures(rows: Iterable[Interval]) -> list[Interval]:
    """Assignments nobody accepted, oldest first (each one listed on the page with its incident)."""
    return [r for r in rows if r.outcome == "never_accepted"]


def histogram(values: Iterable[float | None], bins: Sequence[float] = BINS) -> list[int]:
    """How many values fall in each bin [bins[i], bins[i+1]), the last open-ended, then the ``None``s
    (never delivered) as a final count: the distribution chart's bars."""
    counts = [0] * (len(bins) + 1)
    for value in values:
        if value is None:
            counts[-1] += 1
            continue
        index = max(i for i, edge in enumerate(bins) if value >= edge)
        counts[index] += 1
    return counts
