"""Specification of the matcher on the live path: `EscalationEngine.pick` reads only the units near an
incident from the database, and answers exactly what the brute-force geodesic over the whole roster does.

`skipped` on the live path lists every excluded unit, and the busy and off-duty units no farther than
the chosen one (dispatch.matcher.nearby_skipped); a Shortfall still lists the whole service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from geographiclib.geodesic import Geodesic
from geopy.distance import geodesic
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from dispatch import escalation
from dispatch.escalation import EscalationEngine
from dispatch.matcher import (
    SERVICES,
    WINDOW_MAX_M,
    Box,
    Candidate,
    Match,
    Shortfall,
    pick_nearest,
    search_box,
)
from dispatch.models import Assignment, Incident
from foundation.db import transaction
from foundation.settings import load_settings
from responders.models import Unit
from tests.test_matcher import NOW, brute_force, expected_skipped, spherical_destination

PROBOLINGGO = (-7.75, 113.21)
MAX_FIX_AGE_S = 120.0


@dataclass(frozen=True)
class Row:
    """A roster row as the database holds it (a busy unit may be 'available' with an incident)."""

    unit_id: str
    service: str
    status: str
    on_incident: bool
    active: bool
    station: tuple[float, float]
    fix: tuple[float, float] | None
    fix_age_s: float | None

    def unit(self) -> Unit:
        return Unit(
            id=self.unit_id,
            service=self.service,
            name=self.unit_id,
            phone="+6281200000000",
            status=self.status,
            current_incident_id=7 if self.on_incident else None,
            active=self.active,
            station_lat=self.station[0],
            station_lon=self.station[1],
            fix_lat=None if self.fix is None else self.fix[0],
            fix_lon=None if self.fix is None else self.fix[1],
            fix_at=None if self.fix_age_s is None else NOW - timedelta(seconds=self.fix_age_s),
        )

    def candidate(self) -> Candidate:
        return Candidate(
            unit_id=self.unit_id,
            service=self.service,
            status="busy" if self.on_incident and self.status == "available" else self.status,
            station_lat=self.station[0],
            station_lon=self.station[1],
            fix_lat=None if self.fix is None else self.fix[0],
            fix_lon=None if self.fix is None else self.fix[1],
            fix_at=None if self.fix_age_s is None else NOW - timedelta(seconds=self.fix_age_s),
        )


@pytest.fixture
def engine_pick(sessions: sessionmaker[Session], tmp_path: Path) -> Callable[..., Match | Shortfall]:
    """The live path: load ``rows`` into the units table, then ask the engine for a pick."""
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "var")})
    engine = EscalationEngine(sessions, settings, publish=lambda *_: None, public_base=lambda: "", nearest_place=None)

    def pick(
        rows: Sequence[Row], lat: float, lon: float, service: str, exclude: Mapping[str, str] | None = None
    ) -> Match | Shortfall:
        with transaction(sessions) as session:
            session.execute(delete(Unit))
            session.add_all(row.unit() for row in rows)
        with sessions() as session:
            incident = Incident(lat=lat, lon=lon)
            assignment = Assignment(service=service, excluded=dict(exclude or {}))
            return engine.pick(session, incident, assignment, NOW)

    return pick


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Box | None, int]]]:
    """Every roster read of the engine: its box (None: the whole service) and how many units it returned."""
    reads: list[tuple[Box | None, int]] = []
    real = escalation.roster_rows

    def spy(session: Session, service: str, box: Box | None, also: Any = ()) -> list[Candidate]:
        rows = real(session, service, box, also)
        reads.append((box, len(rows)))
        return rows

    monkeypatch.setattr(escalation, "roster_rows", spy)
    yield reads


def assert_same_as_brute_force_over_the_roster(
    result: Match | Shortfall, rows: Sequence[Row], lat: float, lon: float, service: str, exclude: Mapping[str, str]
) -> None:
    roster = [row.candidate() for row in rows if row.active]
    expected = brute_force(lat, lon, service, roster, exclude=exclude, max_fix_age_s=MAX_FIX_AGE_S)
    everyone_skipped = expected_skipped(service, roster, exclude)
    if not expected:
        assert result == pick_nearest(lat, lon, service, roster, now=NOW, exclude=exclude)
        assert isinstance(result, Shortfall)
        assert result.skipped == everyone_skipped
        return
    assert isinstance(result, Match)
    assert (result.distance_m, result.unit_id) == expected[0]
    assert result.ranked == tuple((unit_id, distance) for distance, unit_id in expected[1:4])
    by_id = {u.unit_id: u for u in roster}
    assert result.position_source == ("fix" if fresh_fix(by_id[result.unit_id]) else "station")
    # Busy and off-duty units as near as the pick or nearer are named; every excluded one is.
    nearby = {}
    for unit_id, why in everyone_skipped.items():
        u = by_id[unit_id]
        where = (u.fix_lat, u.fix_lon) if fresh_fix(u) else (u.station_lat, u.station_lon)
        if why.startswith("excluded: ") or geodesic((lat, lon), where).meters <= result.distance_m:
            nearby[unit_id] = why
    assert result.skipped == nearby


def fresh_fix(u: Candidate) -> bool:
    return u.fix_at is not None and -5.0 <= (NOW - u.fix_at).total_seconds() <= MAX_FIX_AGE_S


# --- a few cases by hand ----------------------------------------------------------------------------------


def km_north(km: float) -> tuple[float, float]:
    return (PROBOLINGGO[0] + km / 111.0, PROBOLINGGO[1])


def station_row(unit_id: str, km: float, **fields: Any) -> Row:
    values: dict[str, Any] = {
        "service": "ambulance",
        "status": "available",
        "on_incident": False,
        "active": True,
        "station": km_north(km),
        "fix": None,
        "fix_age_s": None,
    }
    return Row(unit_id=unit_id, **(values | fields))


def test_a_dense_roster_is_answered_from_a_small_window(
    engine_pick: Callable[..., Match | Shortfall], windows: list[tuple[Box | None, int]]
) -> None:
    rows = [station_row(f"u{i:04d}", 0.05 * i) for i in range(2000)]  # one every 50 m, 100 km north
    first = engine_pick(rows, *km_north(20), "ambulance")
    assert windows == [(None, 2000)]  # the first pick of a service in a process reads it whole
    windows.clear()
    result = engine_pick(rows, *PROBOLINGGO, "ambulance")
    assert isinstance(first, Match) and isinstance(result, Match)
    assert (result.unit_id, [r[0] for r in result.ranked]) == ("u0000", ["u0001", "u0002", "u0003"])
    assert windows and all(box is not None and n < 200 for box, n in windows)


def test_a_service_with_fewer_than_four_units_to_offer_is_read_whole_without_windows_next_time(
    engine_pick: Callable[..., Match | Shortfall], windows: list[tuple[Box | None, int]]
) -> None:
    rows = [station_row(f"u{i}", 2 * i) for i in range(3)]
    first = engine_pick(rows, *PROBOLINGGO, "ambulance")
    assert windows[-1] == (None, 3)  # no window could prove a ranking of four
    windows.clear()
    assert engine_pick(rows, *PROBOLINGGO, "ambulance") == first
    assert windows == [(None, 3)]
    rows += [station_row(f"v{i}", 1 + i) for i in range(3)]
    windows.clear()
    engine_pick(rows, *PROBOLINGGO, "ambulance")  # whole again, and now four to rank: windows again
    engine_pick(rows, *PROBOLINGGO, "ambulance")
    assert windows[0][0] is None and windows[-1][0] is not None


def test_a_unit_far_from_its_station_is_found_by_its_fresh_fix(
    engine_pick: Callable[..., Match | Shortfall],
) -> None:
    rows = [station_row(f"near{i}", 3 + i) for i in range(4)]
    rows.append(station_row("roaming", 400, fix=km_north(0.2), fix_age_s=10))
    rows.append(station_row("stale", 400, fix=km_north(0.1), fix_age_s=MAX_FIX_AGE_S + 1))
    result = engine_pick(rows, *PROBOLINGGO, "ambulance")
    assert isinstance(result, Match)
    assert (result.unit_id, result.position_source) == ("roaming", "fix")
    assert [r[0] for r in result.ranked] == ["near0", "near1", "near2"]


def test_busy_units_nearer_than_the_pick_are_named_and_farther_ones_are_not(
    engine_pick: Callable[..., Match | Shortfall],
) -> None:
    rows = [
        station_row("busy-near", 1, status="busy"),
        station_row("taken-near", 1.5, on_incident=True),
        station_row("home-near", 2, status="off_duty"),
        station_row("free", 3),
        station_row("busy-far", 30, status="busy"),
        station_row("declined-far", 60),
    ]
    result = engine_pick(rows, *PROBOLINGGO, "ambulance", {"declined-far": "declined", "ghost": "declined"})
    assert isinstance(result, Match)
    assert result.unit_id == "free"
    assert result.skipped == {
        "busy-near": "busy",
        "taken-near": "busy",
        "home-near": "off_duty",
        "declined-far": "excluded: declined",
    }


def test_a_shortfall_still_names_every_unit_of_the_service(
    engine_pick: Callable[..., Match | Shortfall],
) -> None:
    rows = [station_row(f"b{i}", 100 * i, status="busy") for i in range(5)] + [station_row("o", 900, status="off_duty")]
    rows.append(station_row("gone", 1, active=False))
    result = engine_pick(rows, *PROBOLINGGO, "ambulance")
    assert isinstance(result, Shortfall)
    assert result.reason == "no available ambulance unit (5 busy, 1 off duty)"
    assert set(result.skipped) == {"b0", "b1", "b2", "b3", "b4", "o"}


# --- the box ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(st.floats(-85.0, 85.0), st.floats(-180.0, 180.0)),
    st.floats(0.0, WINDOW_MAX_M),
    st.floats(0.0, 360.0),
    st.floats(0.0, 1.0),
)
def test_the_search_box_holds_every_point_within_its_radius(
    centre: tuple[float, float], radius_m: float, bearing: float, fraction: float
) -> None:
    box = search_box(*centre, radius_m)
    if box is None:
        return
    far = Geodesic.WGS84.Direct(centre[0], centre[1], bearing, radius_m * fraction)
    assert box.south <= far["lat2"] <= box.north
    assert box.west <= far["lon2"] <= box.east


def test_no_box_across_a_pole_or_the_antimeridian_or_past_the_largest_window() -> None:
    assert search_box(88.5, 0.0, 100_000) is None
    assert search_box(0.0, 179.99, 10_000) is None
    assert search_box(*PROBOLINGGO, WINDOW_MAX_M * 1.01) is None
    assert search_box(*PROBOLINGGO, 10_000) is not None


# --- property: the live path is the brute-force scan over the whole roster ---------------------------------


@st.composite
def rosters(draw: st.DrawFn) -> tuple[tuple[float, float], list[Row], dict[str, str], str]:
    """A query, and 1-250 units clustered around it and/or spread over the province (sometimes anywhere)."""
    far_away = draw(st.integers(0, 9)) == 0
    query = (
        draw(st.tuples(st.floats(-89.0, 89.0), st.floats(-180.0, 180.0)))
        if far_away
        else draw(st.tuples(st.floats(-8.75, -6.75), st.floats(112.21, 114.21)))
    )
    cluster_m = draw(st.sampled_from([200.0, 3_000.0, 20_000.0, 150_000.0]))
    clustered = st.builds(
        lambda bearing, d: spherical_destination(query, bearing, d), st.floats(0.0, 360.0), st.floats(0.0, cluster_m)
    )
    spread = st.tuples(st.floats(-9.75, -5.75), st.floats(111.21, 115.21))
    shared = draw(st.lists(clustered, min_size=1, max_size=3))  # shared stations: exact ties
    position = st.one_of(clustered, spread, st.sampled_from(shared))
    fix_age = st.one_of(st.floats(-10.0, 300.0), st.sampled_from([-5.0, 0.0, MAX_FIX_AGE_S, MAX_FIX_AGE_S + 1e-6]))
    services = draw(st.sampled_from([SERVICES, ("ambulance",)]))
    n = draw(st.integers(1, 250))
    rows = []
    for i in range(n):
        has_fix = draw(st.booleans())
        rows.append(
            Row(
                unit_id=f"u{i}",
                service=draw(st.sampled_from(services)),
                status=draw(st.sampled_from(["available", "available", "available", "busy", "off_duty"])),
                on_incident=draw(st.integers(0, 7)) == 0,
                active=draw(st.integers(0, 9)) != 0,
                station=draw(position),
                fix=draw(position) if has_fix else None,
                fix_age_s=draw(fix_age) if has_fix else None,
            )
        )
    excluded = draw(st.sets(st.integers(0, n + 2), max_size=min(n, 20)))  # a few ids not on the roster
    reasons = st.sampled_from(["declined", "no answer"])
    exclude = {f"u{i}": draw(reasons) for i in sorted(excluded)}
    return query, rows, exclude, draw(st.sampled_from(["ambulance", "ambulance", "police"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rosters())
def test_live_pick_equals_brute_force_over_every_unit_in_the_database(
    engine_pick: Callable[..., Match | Shortfall],
    windows: list[tuple[Box | None, int]],
    scenario: tuple[tuple[float, float], list[Row], dict[str, str], str],
) -> None:
    (lat, lon), rows, exclude, service = scenario
    for excluding in ({}, exclude):
        windows.clear()
        result = engine_pick(rows, lat, lon, service, excluding)
        # Both ways of answering must be exercised: --hypothesis-show-statistics counts them.
        event("answered from a window" if windows[-1][0] is not None else "answered from the whole service")
        assert_same_as_brute_force_over_the_roster(result, rows, lat, lon, service, excluding)
