"""Response-time statistics of the console (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatch.console.stats import (
    ALL,
    AssignmentTimes,
    IncidentTimes,
    day_bounds,
    percentile,
    response_times,
)

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Probolinggo (WIB, UTC+7)


def incident(n: int, *assignments: tuple[str, float | None, float | None, float | None]) -> IncidentTimes:
    """An incident opened at T0 + n minutes, with (service, to dispatch, to accept, to on scene) seconds."""
    opened = T0 + timedelta(minutes=n)

    def at(seconds: float | None) -> datetime | None:
        return None if seconds is None else opened + timedelta(seconds=seconds)

    return IncidentTimes(
        n, "press", opened, tuple(AssignmentTimes(s, at(d), at(a), at(o)) for s, d, a, o in assignments)
    )


def row(rows: list, service: str):  # type: ignore[no-untyped-def]
    return next(r for r in rows if r.service == service)


def test_percentiles_are_nearest_rank() -> None:
    values = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.9) == 90.0
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0  # order of the input does not matter
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_per_service_p50_p90_and_nfpa_share() -> None:
    samples = [incident(i, ("police", 10.0 * (i + 1), 60.0 + 10 * i, 300.0 + i)) for i in range(10)]
    rows = response_times(samples, now=T0 + timedelta(hours=2))
    police = row(rows, "police")
    assert police.incidents == 10
    assert (police.to_dispatch.p50, police.to_dispatch.p90) == (50.0, 90.0)
    assert (police.to_accept.p50, police.to_accept.p90) == (100.0, 140.0)
    assert police.to_on_scene.count == 10
    # 10..100 s: six of ten within 60 s -> 60 %, below the 90 % target.
    assert (police.within_target, police.judged, police.pending) == (6, 10, 0)
    assert police.within_target_ratio == pytest.approx(0.6)
    assert police.meets_target is False
    assert row(rows, "ambulance").incidents == 0
    assert row(rows, "ambulance").meets_target is None


def test_an_undispatched_assignment_counts_as_a_miss_after_60_s_and_as_pending_before() -> None:
    now = T0 + timedelta(minutes=5, seconds=30)
    samples = [
        incident(0, ("police", 20.0, None, None)),
        incident(1, ("police", None, None, None)),  # 4.5 min without a unit: a miss
        incident(5, ("police", None, None, None)),  # 30 s old: still pending
    ]
    police = row(response_times(samples, now), "police")
    assert (police.within_target, police.judged, police.pending) == (1, 2, 1)
    assert police.to_dispatch.count == 1


def test_the_all_row_takes_each_incidents_first_milestones_across_services() -> None:
    samples = [
        incident(0, ("police", 30.0, 90.0, None), ("ambulance", 20.0, 200.0, 400.0)),
        incident(1, ("disaster", 50.0, None, None)),
        incident(2),  # a prank call: no assignment, not counted
    ]
    rows = response_times(samples, now=T0 + timedelta(hours=1))
    total = row(rows, ALL)
    assert total.incidents == 2
    assert sorted([total.to_dispatch.p50, total.to_dispatch.p90]) == [20.0, 50.0]
    assert total.to_accept.count == 1 and total.to_accept.p50 == 90.0
    assert total.meets_target is True
    assert row(rows, "ambulance").to_on_scene.p50 == 400.0


def test_today_is_the_local_day_in_probolinggo() -> None:
    zone = ZoneInfo("Asia/Jakarta")
    # 18:30 UTC on the 22nd is already 01:30 on the 23rd in WIB.
    start, end = day_bounds(datetime(2026, 11, 22, 18, 30, tzinfo=UTC), zone)
    assert start == datetime(2026, 11, 23, 0, 0, tzinfo=zone)
    assert start.astimezone(UTC) == datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
    assert end - start == timedelta(days=1)
