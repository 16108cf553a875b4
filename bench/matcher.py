"""Benchmark dispatch.matcher.UnitIndex against the naive geopy scan.

Run from the repository root:  python bench/matcher.py

For each roster size it builds one index (timed separately), times 1,000 `nearest` queries, times a
sample of naive full-roster geopy scans, and checks both pick the same unit on that sample.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from geopy.distance import geodesic

# Run as a plain script, so the repository root is not on sys.path by default.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dispatch.matcher import SERVICES, Candidate, Match, UnitIndex

PROBOLINGGO = (-7.75, 113.21)
SIZES = (100, 1_000, 10_000, 100_000)
QUERIES = 1_000
# The naive scan costs ~65 us per unit, so large rosters only get a small sample.
NAIVE_QUERIES = {100: 200, 1_000: 50, 10_000: 20, 100_000: 20}
MAX_FIX_AGE_S = 120.0
NOW = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)


def make_roster(n: int, rng: np.random.Generator) -> list[Candidate]:
    """n units within +-1 deg of Probolinggo, ~1/3 per service, ~80 % available, half with a GPS fix."""
    lat = PROBOLINGGO[0] + rng.uniform(-1.0, 1.0, n)
    lon = PROBOLINGGO[1] + rng.uniform(-1.0, 1.0, n)
    drift = rng.normal(0.0, 0.01, (n, 2))
    service = rng.integers(0, len(SERVICES), n)
    status = rng.choice(["available", "busy", "off_duty"], n, p=[0.8, 0.15, 0.05])
    has_fix = rng.random(n) < 0.5
    fix_age_s = rng.uniform(0.0, 2.0 * MAX_FIX_AGE_S, n)  # about half of the fixes are stale
    return [
        Candidate(
            unit_id=f"U{i:06d}",
            service=SERVICES[service[i]],
            status=str(status[i]),
            station_lat=float(lat[i]),
            station_lon=float(lon[i]),
            fix_lat=float(lat[i] + drift[i, 0]) if has_fix[i] else None,
            fix_lon=float(lon[i] + drift[i, 1]) if has_fix[i] else None,
            fix_at=NOW - timedelta(seconds=float(fix_age_s[i])) if has_fix[i] else None,
        )
        for i in range(n)
    ]


def naive_pick(lat: float, lon: float, service: str, roster: Sequence[Candidate]) -> str | None:
    """The obvious implementation the index must agree with: geopy over every eligible unit."""
    best: tuple[float, str] | None = None
    for unit in roster:
        if unit.service != service or unit.status != "available":
            continue
        position = (unit.station_lat, unit.station_lon)
        if unit.fix_at is not None and unit.fix_lat is not None and unit.fix_lon is not None:
            age_s = (NOW - unit.fix_at).total_seconds()
            if -5.0 <= age_s <= MAX_FIX_AGE_S:
                position = (unit.fix_lat, unit.fix_lon)
        key = (geodesic((lat, lon), position).meters, unit.unit_id)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def main() -> None:
    rng = np.random.default_rng(20250101)
    header = (
        f"{'units':>8} {'build ms':>9} {'median ms':>10} {'p99 ms':>8} "
        f"{'naive ms':>10} {'(n)':>5} {'speed-up':>9} {'agree':>7}"
    )
    print(f"UnitIndex.nearest, {QUERIES} queries per roster size (build time excluded from per-query figures)")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for n in SIZES:
        roster = make_roster(n, rng)
        t0 = time.perf_counter()
        index = UnitIndex(roster, now=NOW, max_fix_age_s=MAX_FIX_AGE_S)
        build_ms = (time.perf_counter() - t0) * 1e3

        qlat = PROBOLINGGO[0] + rng.uniform(-1.0, 1.0, QUERIES)
        qlon = PROBOLINGGO[1] + rng.uniform(-1.0, 1.0, QUERIES)
        qservice = [SERVICES[s] for s in rng.integers(0, len(SERVICES), QUERIES)]
        timings_ms: list[float] = []
        picks: list[str | None] = []
        for i in range(QUERIES):
            t0 = time.perf_counter()
            result = index.nearest(float(qlat[i]), float(qlon[i]), qservice[i])
            timings_ms.append((time.perf_counter() - t0) * 1e3)
            picks.append(result.unit_id if isinstance(result, Match) else None)
        timings_ms.sort()

        sample = NAIVE_QUERIES[n]
        naive_ms: list[float] = []
        agree = 0
        for i in range(sample):
            t0 = time.perf_counter()
            expected = naive_pick(float(qlat[i]), float(qlon[i]), qservice[i], roster)
            naive_ms.append((time.perf_counter() - t0) * 1e3)
            agree += expected == picks[i]

        median_ms = statistics.median(timings_ms)
        naive_median_ms = statistics.median(naive_ms)
        p99_ms = percentile(timings_ms, 0.99)
        speed_up = naive_median_ms / median_ms
        print(
            f"{n:>8,} {build_ms:>9.1f} {median_ms:>10.3f} {p99_ms:>8.3f} "
            f"{naive_median_ms:>10.1f} {sample:>5} {speed_up:>8.0f}x {agree:>3}/{sample:<3}"
        )
    print(f"total run time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
