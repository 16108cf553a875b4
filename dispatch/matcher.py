"""Exact "nearest available unit" matcher.

Pure functions over a roster snapshot: no I/O, no database, no module state.

The answer is defined as what a brute-force scan gives: for every available unit of the requested
service (not excluded), ``geopy.distance.geodesic((lat, lon), (unit_lat, unit_lon)).meters``, smallest
distance wins, ties broken by ``unit_id`` ascending.  `UnitIndex` reaches the same answer (bit for bit,
including the reported distances) much faster: a vectorised spherical prefilter finds a short list
that provably contains the winner and the next three, and only that short list gets the expensive
ellipsoidal geodesic.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from geographiclib.geodesic import Geodesic
from geopy.distance import ELLIPSOIDS

SERVICES: tuple[str, ...] = ("police", "disaster", "ambulance")
STATUSES: tuple[str, ...] = ("available", "busy", "off_duty")

# Devices and the server disagree on the clock by a few seconds; a fix "from the future" beyond this is
# more likely a broken device clock than skew, so it is not trusted.
_FUTURE_SKEW_S = 5.0

# The pick plus the three `ranked` runners-up, all with exact distances.
_DEPTH = 4

# Mean Earth radius R1 (IUGG), the sphere the prefilter measures on.
_R1_M = 6371008.8

# Why a spherical distance can safely prune candidates for an ellipsoidal ranking:
# Map the WGS-84 ellipsoid onto the R1 sphere by keeping (lat, lon).  The ellipsoid's line element is
# ds^2 = M^2 dlat^2 + (N cos lat)^2 dlon^2 and the sphere's is R1^2 (dlat^2 + (cos lat)^2 dlon^2), with
# M (meridional radius) >= a(1 - e^2) and N (prime vertical radius) >= a > a(1 - e^2).  So every curve on
# the ellipsoid is at least a(1 - e^2) / R1 = 6335439.3 / 6371008.8 = 0.994417 times as long as its
# image on the sphere, and in particular the ellipsoidal geodesic g between two points is at least that
# factor times the great-circle distance h between them:  g >= 0.994417 * h  (the ~0.56 % bound, reached
# by short north-south lines at the equator; the other side, g <= 1.00449 * h near the poles, is not
# needed).  We assume only g >= 0.99 * h, leaving room for any rounding in geographiclib.
_LOWER_RATIO = 0.99
# Absolute slack for float error in the prefilter's great-circle distance.  It is computed from the dot
# product of unit vectors, whose few-ulp error becomes up to ~sqrt(2 * 6e-16) rad ~ 0.22 m where the
# angle is ill-conditioned (near 0 and near pi).  2 m covers that with margin and costs nothing.
_SLACK_M = 2.0
# Rows that must never be short-listed: below every real dot product of unit vectors (>= -1 - ulps).
_BLOCKED = -3.0
# Step 1 of the query guesses a search radius from the sphere; the exact bound later is at most
# 1.00449 / _LOWER_RATIO = 1.0146 times that (plus slack), so a 2 % margin means it almost never has to
# widen the band again.
_BAND_MARGIN = 1.02
# Smallest half-width, in rows, of the latitude window that seeds the search radius; tables up to twice
# this are scanned in one pass.
_MIN_HALF_WINDOW = 32

# geopy measures on an ellipsoid given in kilometres and converts to metres afterwards; using the very
# same parameters keeps our distances bit-identical to geopy.distance.geodesic(...).meters.
_WGS84_A_KM, _, _WGS84_F = ELLIPSOIDS["WGS-84"]


@dataclass(frozen=True)
class Candidate:
    """One unit of the roster snapshot, with its station and latest reported GPS fix.

    Construction validates the data, so a bad roster row fails where it is built (with the unit named)
    rather than inside a dispatch.

    Raises:
        ValueError: unknown service or status, empty ``unit_id``, non-finite or out-of-range
            coordinates, half a fix position, ``fix_at`` without a position, or a naive ``fix_at``.
    """

    unit_id: str
    service: str  # "police" | "disaster" | "ambulance"
    status: str  # "available" | "busy" | "off_duty"
    station_lat: float
    station_lon: float
    fix_lat: float | None = None  # latest reported GPS position
    fix_lon: float | None = None
    fix_at: datetime | None = None  # tz-aware UTC time of that fix

    def __post_init__(self) -> None:
        if not self.unit_id:
            raise ValueError("unit_id must be a non-empty string")
        if self.service not in SERVICES:
            raise ValueError(f"unit {self.unit_id!r}: unknown service {self.service!r}")
        if self.status not in STATUSES:
            raise ValueError(f"unit {self.unit_id!r}: unknown status {self.status!r}")
        _canonical_position(self.station_lat, self.station_lon, f"unit {self.unit_id!r} station")
        if (self.fix_lat is None) != (self.fix_lon is None):
            raise ValueError(f"unit {self.unit_id!r}: fix_lat and fix_lon must be given together")
        if self.fix_lat is not None and self.fix_lon is not None:
            _canonical_position(self.fix_lat, self.fix_lon, f"unit {self.unit_id!r} fix")
        elif self.fix_at is not None:
            raise ValueError(f"unit {self.unit_id!r}: fix_at given without a fix position")
        if self.fix_at is not None and self.fix_at.utcoffset() is None:
            raise ValueError(f"unit {self.unit_id!r}: fix_at must be timezone-aware")


@dataclass(frozen=True)
class Match:
    """The unit to dispatch, and why the others were passed over."""

    unit_id: str
    distance_m: float  # WGS-84 geodesic (geopy.distance.geodesic)
    position_source: str  # "fix" | "station"
    position_age_s: float | None  # age of the fix if source == "fix", else None
    skipped: dict[str, str]  # same-service unit_id -> "off_duty" | "busy" | "excluded: <reason>"
    ranked: tuple[tuple[str, float], ...]  # up to 3 runners-up (unit_id, distance_m), nearest first


@dataclass(frozen=True)
class Shortfall:
    """No unit of the service can be dispatched; ``reason`` is meant for the dispatcher's screen."""

    reason: str  # e.g. "no available ambulance unit (3 busy, 1 off duty)"
    skipped: dict[str, str]


class _ServiceTable:
    """One service's available units, as rows sorted by latitude, plus who else was skipped and why."""

    __slots__ = (
        "_pending",
        "ages",
        "base_skipped",
        "ids",
        "lats",
        "lons",
        "row_of",
        "sources",
        "status_of",
        "xyz",
    )

    def __init__(self) -> None:
        self._pending: list[tuple[float, float, str, str, float | None]] = []
        self.ids: list[str] = []
        self.lats: list[float] = []  # ascending, so a latitude band is a contiguous slice of rows
        self.lons: list[float] = []
        self.sources: list[str] = []
        self.ages: list[float | None] = []
        self.row_of: dict[str, int] = {}
        self.status_of: dict[str, str] = {}  # every unit of the service, whatever its status
        self.base_skipped: dict[str, str] = {}
        self.xyz: npt.NDArray[np.float64] = np.empty((0, 3))

    def add(self, unit: Candidate, now: datetime, max_fix_age_s: float) -> None:
        self.status_of[unit.unit_id] = unit.status
        if unit.status != "available":
            self.base_skipped[unit.unit_id] = unit.status
            return
        lat, lon, source, age = _effective_position(unit, now, max_fix_age_s)
        self._pending.append((lat, lon, unit.unit_id, source, age))

    def freeze(self) -> None:
        self._pending.sort(key=lambda row: row[0])
        for row, (lat, lon, unit_id, source, age) in enumerate(self._pending):
            self.row_of[unit_id] = row
            self.ids.append(unit_id)
            self.lats.append(lat)
            self.lons.append(lon)
            self.sources.append(source)
            self.ages.append(age)
        self._pending = []
        lat_r = np.radians(np.asarray(self.lats, dtype=np.float64))
        lon_r = np.radians(np.asarray(self.lons, dtype=np.float64))
        cos_lat = np.cos(lat_r)
        # Unit vectors: the great-circle angle is then one dot product away, with no special cases at the
        # antimeridian or the poles.
        self.xyz = np.ascontiguousarray(
            np.column_stack((cos_lat * np.cos(lon_r), cos_lat * np.sin(lon_r), np.sin(lat_r)))
        )

    def band(self, lat: float, angle: float) -> tuple[int, int]:
        """Rows [lo, hi) whose latitude is within ``angle`` radians of ``lat``.

        A great-circle angle is never smaller than the latitude difference, so every row within
        ``angle`` of a point at ``lat`` is in this band.
        """
        reach = math.degrees(angle)
        return bisect_left(self.lats, lat - reach), bisect_right(self.lats, lat + reach)

    def dots(
        self, query: npt.NDArray[np.float64], lo: int, hi: int, blocked: Sequence[int]
    ) -> tuple[npt.NDArray[np.float64], int]:
        """Cosines of the great-circle angles from ``query`` to rows [lo, hi), and how many are open.

        Blocked rows get `_BLOCKED`, below any real cosine, so they never rank and never pass a threshold.
        """
        dots = self.xyz[lo:hi] @ query
        n_open = hi - lo
        for row in blocked:
            if lo <= row < hi:
                dots[row - lo] = _BLOCKED
                n_open -= 1
        return dots, n_open


class UnitIndex:
    """Spatial index over one roster snapshot, answering many `nearest` queries.

    Unit positions (fresh fix or station) are resolved once, against ``now``; rebuild the index when
    the roster or the fixes change.  Build cost is O(n log n).  A query looks at a latitude band of the
    service's available units (about sqrt(n) rows for an evenly spread roster) with vectorised
    spherical distances, then computes the exact geodesic for typically four of them.
    """

    __slots__ = ("_geod", "_tables")

    def __init__(self, candidates: Sequence[Candidate], *, now: datetime, max_fix_age_s: float = 120.0) -> None:
        """Index ``candidates`` as of ``now``.

        A unit's position is its fix when ``fix_at`` is within ``max_fix_age_s`` seconds before ``now``
        (or at most 5 s after it, for clock skew), else its station.

        Raises:
            ValueError: ``now`` is naive, ``max_fix_age_s`` is NaN or negative, or a ``unit_id`` repeats.
        """
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        if math.isnan(max_fix_age_s) or max_fix_age_s < 0:
            raise ValueError(f"max_fix_age_s must be >= 0, got {max_fix_age_s!r}")
        # Per index rather than a module global, so the module holds no objects; it is never mutated
        # after construction, which costs ~20 us.
        self._geod = Geodesic(_WGS84_A_KM, _WGS84_F)
        self._tables = {service: _ServiceTable() for service in SERVICES}
        seen: set[str] = set()
        for unit in candidates:
            if unit.unit_id in seen:
                # Two rows for one unit would make `skipped` and the tie-break ambiguous.
                raise ValueError(f"duplicate unit_id {unit.unit_id!r} in roster")
            seen.add(unit.unit_id)
            self._tables[unit.service].add(unit, now, max_fix_age_s)
        for table in self._tables.values():
            table.freeze()

    def nearest(
        self, lat: float, lon: float, service: str, *, exclude: Mapping[str, str] | None = None
    ) -> Match | Shortfall:
        """Return the available ``service`` unit geodesically nearest to (``lat``, ``lon``).

        ``exclude`` maps unit_id -> reason (e.g. "declined"); those units are skipped and reported as
        "excluded: <reason>", which takes precedence over their busy/off-duty status.  Units of other
        services never appear in ``skipped``.

        Raises:
            ValueError: non-finite or out-of-range coordinates, or an unknown service.
        """
        qlat, qlon = _canonical_position(lat, lon, "query position")
        table = self._tables.get(service)
        if table is None:
            raise ValueError(f"unknown service {service!r}")

        skipped = dict(table.base_skipped)  # a fresh dict per answer: callers may mutate it
        blocked: list[int] = []
        if exclude:
            for unit_id, why in exclude.items():
                if unit_id in table.status_of:
                    skipped[unit_id] = f"excluded: {why}"
                    row = table.row_of.get(unit_id)
                    if row is not None:
                        blocked.append(row)
        if len(table.ids) == len(blocked):
            return Shortfall(reason=_shortfall_reason(service, skipped), skipped=skipped)

        exact = self._exact_shortlist(table, qlat, qlon, blocked)
        best, *runners_up = sorted(exact, key=lambda row: (exact[row], table.ids[row]))[:_DEPTH]
        return Match(
            unit_id=table.ids[best],
            distance_m=exact[best],
            position_source=table.sources[best],
            position_age_s=table.ages[best],
            skipped=skipped,
            ranked=tuple((table.ids[row], exact[row]) for row in runners_up),
        )

    def _exact_shortlist(
        self, table: _ServiceTable, qlat: float, qlon: float, blocked: Sequence[int]
    ) -> dict[int, float]:
        """Exact geodesic distance for every row that could rank in the top `_DEPTH`, keyed by row.

        Correctness rests only on step 3; steps 1 and 2 pick good seeds cheaply, and a poor choice there
        costs time, never the answer.
        """
        rlat, rlon = math.radians(qlat), math.radians(qlon)
        cos_qlat = math.cos(rlat)
        query = np.array((cos_qlat * math.cos(rlon), cos_qlat * math.sin(rlon), math.sin(rlat)))
        n_rows = len(table.ids)
        depth = min(_DEPTH, n_rows - len(blocked))

        # Rows [lo, hi) hold every row within `reach` radians of the query.
        lo, hi, reach = 0, n_rows, math.inf
        half = max(_MIN_HALF_WINDOW, math.isqrt(n_rows))
        if 2 * half < n_rows:  # small tables: one pass over everything is cheaper than two
            # 1. A radius that surely holds `depth` open rows: the depth-th nearest (on the sphere) among
            # the rows nearest in latitude.  ~sqrt(n) rows is what a uniformly spread roster needs for that
            # to be close to the true depth-th neighbour; a poor guess costs time, not correctness.
            mid = bisect_left(table.lats, qlat)
            window, n_open = table.dots(query, max(0, mid - half), min(n_rows, mid + half), blocked)
            if n_open >= depth:
                kth_dot = float(np.partition(window, len(window) - depth)[len(window) - depth])
                reach = math.acos(max(-1.0, min(1.0, kth_dot))) * _BAND_MARGIN + _SLACK_M / _R1_M
                # 2. The latitude band of that radius holds those rows, so its `depth` nearest on the
                # sphere are the global ones: the tightest seeds the prefilter can offer.
                lo, hi = table.band(qlat, reach)
        dots, n_open = table.dots(query, lo, hi, blocked)
        if n_open < depth:  # only if float error beat the slack; stay correct regardless
            lo, hi, reach = 0, n_rows, math.inf
            dots, n_open = table.dots(query, lo, hi, blocked)
        seeds = np.argpartition(dots, len(dots) - depth)[len(dots) - depth :]
        exact = {
            lo + row: self._geodesic_m(qlat, qlon, table.lats[lo + row], table.lons[lo + row]) for row in seeds.tolist()
        }

        # 3. The `depth` seeds lie within `worst` metres (exact), so a row can only reach the top `depth` if
        # its geodesic g <= worst.  For any row, g >= _LOWER_RATIO * (h - slack), with h the prefilter's
        # great-circle distance; so it needs h <= worst / _LOWER_RATIO + slack, which the angle below
        # over-covers (slack added before dividing).  Rows past it are provably out; rows inside get the
        # exact geodesic and the caller's sort decides, ties included.
        worst = max(exact.values())
        bound = (worst + _SLACK_M) / _LOWER_RATIO / _R1_M
        if bound > reach:  # the seeds' true geodesics ran past step 1's margin: widen the band
            lo, hi = table.band(qlat, bound)
            dots, _ = table.dots(query, lo, hi, blocked)
        if bound < math.pi:
            reachable = np.flatnonzero(dots >= math.cos(bound))
        else:  # the bound covers the whole sphere
            reachable = np.flatnonzero(dots > _BLOCKED)
        for offset in reachable.tolist():
            row = lo + offset
            if row not in exact:
                exact[row] = self._geodesic_m(qlat, qlon, table.lats[row], table.lons[row])
        return exact

    def _geodesic_m(self, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        # Exactly the call geopy.distance.geodesic.measure makes, followed by geopy's km -> m step
        # ((0 + s12_km + 0.0) + 0.0) * 1000 == s12_km * 1000, skipping geopy's per-call Point/Geodesic
        # construction, which is ~40 % of its cost.  tests/test_matcher.py pins the equality.
        s12_km: float = self._geod.Inverse(lat1, lon1, lat2, lon2, Geodesic.DISTANCE)["s12"]
        return s12_km * 1000.0


def pick_nearest(
    lat: float,
    lon: float,
    service: str,
    candidates: Sequence[Candidate],
    *,
    now: datetime,
    exclude: Mapping[str, str] | None = None,
    max_fix_age_s: float = 120.0,
) -> Match | Shortfall:
    """One-shot form of `UnitIndex.nearest`: index ``candidates`` as of ``now`` and query once.

    For many queries against the same snapshot, build a `UnitIndex` once instead.

    Raises:
        ValueError: as `UnitIndex` and `UnitIndex.nearest`.
    """
    index = UnitIndex(candidates, now=now, max_fix_age_s=max_fix_age_s)
    return index.nearest(lat, lon, service, exclude=exclude)


def _canonical_position(lat: float, lon: float, what: str) -> tuple[float, float]:
    """Validate a position and normalise it the way geopy's Point does, so distances match geopy's."""
    lat_f, lon_f = float(lat), float(lon)
    if not (math.isfinite(lat_f) and math.isfinite(lon_f)):
        raise ValueError(f"{what}: coordinates must be finite, got ({lat!r}, {lon!r})")
    if not (-90.0 <= lat_f <= 90.0 and -180.0 <= lon_f <= 180.0):
        raise ValueError(f"{what}: ({lat!r}, {lon!r}) is outside lat [-90, 90], lon [-180, 180]")
    # geopy turns -0.0 into 0.0 (`float(x or 0.0)`); geographiclib can tell them apart.
    return lat_f + 0.0, lon_f + 0.0


def _effective_position(unit: Candidate, now: datetime, max_fix_age_s: float) -> tuple[float, float, str, float | None]:
    """(lat, lon, source, age_s) of where the unit is taken to be at ``now``."""
    if unit.fix_at is not None and unit.fix_lat is not None and unit.fix_lon is not None:
        age_s = (now - unit.fix_at).total_seconds()
        if -_FUTURE_SKEW_S <= age_s <= max_fix_age_s:
            lat, lon = _canonical_position(unit.fix_lat, unit.fix_lon, f"unit {unit.unit_id!r} fix")
            # A fix within the skew allowance is "just now", not negative seconds old.
            return lat, lon, "fix", max(age_s, 0.0)
    lat, lon = _canonical_position(unit.station_lat, unit.station_lon, f"unit {unit.unit_id!r} station")
    return lat, lon, "station", None


def _shortfall_reason(service: str, skipped: Mapping[str, str]) -> str:
    reasons = list(skipped.values())
    excluded = sum(reason.startswith("excluded: ") for reason in reasons)
    parts = [
        f"{count} {label}"
        for count, label in (
            (reasons.count("busy"), "busy"),
            (reasons.count("off_duty"), "off duty"),
            (excluded, "excluded"),
        )
        if count
    ]
    return f"no available {service} unit ({', '.join(parts) if parts else 'none on roster'})"


# --- the roster window: answering from the units near the incident only ----------------------------------
#
# A caller holding the roster in a database need not read all of it: the units whose position lies in a
# box around the incident give the whole roster's answer once that answer is proven to lie inside the
# box (`window_proves`).  The box is tested on both places a unit can be taken to be (station and fix),
# so every unit whose position is in the box is read, whatever its status or the age of its fix.

# The smallest window, how fast it grows, and where it stops:
# past `WINDOW_MAX_M` the box holds most of a country and one read of the whole roster is cheaper than
# another box.  Doubling (4x the area) rather than x4 (16x): a read costs about one round trip plus
# ~10 us per row, and overshooting by 16x the rows costs more than the occasional extra round trip.
WINDOW_GROWTH = 2.0
WINDOW_MIN_M = 500.0
WINDOW_MAX_M = 1_000_000.0
# Degrees added on every side of a box, so float rounding of the stored coordinates never drops a unit
# on the edge (1e-7 deg is about 1 cm).
_BOX_PAD_DEG = 1e-7


@dataclass(frozen=True)
class Box:
    """Latitude and longitude ranges, inclusive, in degrees; never crosses the antimeridian."""

    south: float
    north: float
    west: float
    east: float


def search_box(lat: float, lon: float, radius_m: float) -> Box | None:
    """A box holding every point within ``radius_m`` (WGS-84 geodesic) of (``lat``, ``lon``).

    None when there is no such box short of the whole roster: a pole within reach, the antimeridian
    crossed, or ``radius_m`` beyond `WINDOW_MAX_M`.
    """
    qlat, qlon = _canonical_position(lat, lon, "query position")
    if not 0.0 <= radius_m <= WINDOW_MAX_M:
        return None
    # A point within geodesic g of the query lies within great-circle h <= g / _LOWER_RATIO on the R1
    # sphere (see _LOWER_RATIO), so the box of that spherical cap holds it.
    angle = (radius_m / _LOWER_RATIO + _SLACK_M) / _R1_M
    dlat = math.degrees(angle) + _BOX_PAD_DEG
    if abs(qlat) + dlat >= 89.0:
        return None
    # The widest longitude of a cap of radius `angle` around latitude phi: asin(sin(angle) / cos(phi)).
    dlon = math.degrees(math.asin(min(1.0, math.sin(angle) / math.cos(math.radians(qlat))))) * 1.000001
    dlon += _BOX_PAD_DEG
    if qlon - dlon < -180.0 or qlon + dlon > 180.0:
        return None
    return Box(qlat - dlat, qlat + dlat, qlon - dlon, qlon + dlon)


def window_radii(start_m: float) -> list[float]:
    """The radii to try, smallest first, each `WINDOW_GROWTH` times the last, up to `WINDOW_MAX_M`.

    None at all when ``start_m`` is past `WINDOW_MAX_M`: the caller knows the roster too thin for a window.
    """
    if start_m > WINDOW_MAX_M:
        return []
    radius = max(start_m, WINDOW_MIN_M)
    radii = [radius]
    while radius < WINDOW_MAX_M:
        radius = min(radius * WINDOW_GROWTH, WINDOW_MAX_M)
        radii.append(radius)
    return radii


def window_proves(answer: Match | Shortfall, radius_m: float) -> bool:
    """Whether ``answer``, computed from every unit whose position is within ``radius_m`` (plus any
    others), is the whole roster's answer under `nearby_skipped`.

    It is when the pick and all three runners-up lie within ``radius_m``: every unit left out is
    farther than the radius, hence strictly farther than all four, so it cannot rank among them, and
    the busy and off-duty units `nearby_skipped` keeps (no farther than the pick) were all read.  A
    Shortfall, or fewer than four units found, proves nothing: more units may wait outside.
    """
    if not isinstance(answer, Match) or len(answer.ranked) < _DEPTH - 1:
        return False
    return answer.ranked[-1][1] <= radius_m


def next_window_m(answer: Match | Shortfall) -> float:
    """Where the next search should start: a little past this answer's last runner-up (a guess only).

    Infinite (no window: read the whole service) when the service has fewer than four units to offer:
    every window would fail to prove the answer, and doubling one up to `WINDOW_MAX_M` only to read the
    whole service after all would cost ten reads per pick when few units are free, as in a disaster.
    """
    if not window_proves(answer, math.inf):
        return math.inf
    assert isinstance(answer, Match)
    return min(max(answer.ranked[-1][1] * 1.25, WINDOW_MIN_M), WINDOW_MAX_M)


def nearby_skipped(
    answer: Match | Shortfall,
    lat: float,
    lon: float,
    candidates: Sequence[Candidate],
    *,
    now: datetime,
    max_fix_age_s: float = 120.0,
) -> Match | Shortfall:
    """``answer`` with `Match.skipped` cut down to what an operator weighs against the pick.

    Every excluded unit stays (the list is the assignment's own, short); a busy or off-duty unit stays
    only if it is no farther than the chosen unit.  The whole roster's busy and off-duty units are
    neither readable in one line nor cheap to collect at 10,000 units.  A Shortfall is returned as it
    is: it still names every unit of the service.
    """
    if not isinstance(answer, Match):
        return answer
    qlat, qlon = _canonical_position(lat, lon, "query position")
    by_id = {unit.unit_id: unit for unit in candidates}
    geod = Geodesic(_WGS84_A_KM, _WGS84_F)
    kept: dict[str, str] = {}
    for unit_id, why in answer.skipped.items():
        if why.startswith("excluded: "):
            kept[unit_id] = why
            continue
        ulat, ulon, _, _ = _effective_position(by_id[unit_id], now, max_fix_age_s)
        if _LOWER_RATIO * (_haversine_m(qlat, qlon, ulat, ulon) - _SLACK_M) > answer.distance_m:
            continue  # provably farther than the pick (see _LOWER_RATIO): no geodesic needed
        # Same call and units as UnitIndex, so a unit exactly as far as the pick compares equal.
        s12_km: float = geod.Inverse(qlat, qlon, ulat, ulon, Geodesic.DISTANCE)["s12"]
        if s12_km * 1000.0 <= answer.distance_m:
            kept[unit_id] = why
    return Match(
        unit_id=answer.unit_id,
        distance_m=answer.distance_m,
        position_source=answer.position_source,
        position_age_s=answer.position_age_s,
        skipped=kept,
        ranked=answer.ranked,
    )


def geodesic_at_least_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """A lower bound of the WGS-84 geodesic between two points, for a few float operations.

    For skipping exact geodesics that cannot matter (see _LOWER_RATIO and _SLACK_M).
    """
    return _LOWER_RATIO * max(0.0, _haversine_m(lat1, lon1, lat2, lon2) - _SLACK_M)


def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the R1 sphere (well conditioned for short distances)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2.0 * _R1_M * math.asin(min(1.0, math.sqrt(h)))
