"""Benchmark the matcher on the live path: `EscalationEngine.pick`, SQL included, by roster size.

Run from the repository root:
    python bench/roster_pick.py                      # a SQLite file in a temporary directory
    python bench/roster_pick.py --database postgresql+psycopg://postgres@127.0.0.1:5432/bench
(the PostgreSQL database is emptied: its public schema is dropped).

For 100, 1,000 and 10,000 units in the database it times, per pick, inside an open transaction:
- before: the whole service read as ORM objects, then `pick_nearest` (the code before the roster window);
- after: `EscalationEngine.pick` (a box around the incident, grown until it proves the answer);
- floor: `UnitIndex.nearest` over the same roster already in memory (the pure matcher, no SQL at all);
and checks that before and after agree on the unit, its distance and the runners-up.  Besides wall
time (p50, p99) it prints the median CPU time of this process per pick: on a shared machine it moves
less with the load (it leaves out the PostgreSQL server's own work).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

# Run as a plain script, so the repository root is not on sys.path by default.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# bench/matcher.py, beside this script (a script's own directory is on sys.path): the same roster.
from matcher import MAX_FIX_AGE_S, NOW, PROBOLINGGO, make_roster, percentile

from dispatch import database
from dispatch.escalation import EscalationEngine, _candidate
from dispatch.matcher import SERVICES, Match, Shortfall, UnitIndex, pick_nearest
from dispatch.models import Assignment, Incident
from foundation.db import make_engine, make_session_factory, transaction
from foundation.settings import load_settings
from responders.models import Unit

SIZES = (100, 1_000, 10_000)


def load_units(sessions: sessionmaker[Session], n: int, rng: np.random.Generator) -> None:
    """bench/matcher.py's roster (n units around Probolinggo, half with a fix, half of those stale), stored."""
    with transaction(sessions) as session:
        session.add_all(
            Unit(
                id=c.unit_id,
                service=c.service,
                name=c.unit_id,
                phone=f"+628120{i:07d}",
                status=c.status,
                station_lat=c.station_lat,
                station_lon=c.station_lon,
                fix_lat=c.fix_lat,
                fix_lon=c.fix_lon,
                fix_at=c.fix_at,
            )
            for i, c in enumerate(make_roster(n, rng))
        )


def pick_before(session: Session, lat: float, lon: float, service: str) -> Match | Shortfall:
    """The live path before the roster window: every active unit of the service, as ORM objects."""
    units = session.execute(select(Unit).where(Unit.service == service, Unit.active.is_(True))).scalars()
    candidates = [_candidate(unit) for unit in units]  # type: ignore[arg-type]
    return pick_nearest(lat, lon, service, candidates, now=NOW, max_fix_age_s=MAX_FIX_AGE_S)


def same(a: Match | Shortfall, b: Match | Shortfall) -> bool:
    if isinstance(a, Match) and isinstance(b, Match):
        return (a.unit_id, a.distance_m, a.ranked) == (b.unit_id, b.distance_m, b.ranked)
    return a == b


def timed(fn: object, *args: object, cpu: list[float] | None = None) -> tuple[float, Match | Shortfall]:
    """Wall ms of one call; its CPU ms in this thread appended to ``cpu`` (steadier on a busy machine)."""
    c0, t0 = time.thread_time(), time.perf_counter()
    answer = fn(*args)  # type: ignore[operator]
    wall_ms, cpu_ms = (time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3
    if cpu is not None:
        cpu.append(cpu_ms)
    return wall_ms, answer


HEADER = (
    f"{'units':>7} {'before p50':>10} {'p99':>7} {'after p50':>10} {'p99':>7} {'floor p50':>10} {'p99':>7}"
    f" {'after/floor':>11} {'before/after':>12} {'cpu: before':>11} {'after':>6} {'floor':>6} {'agree':>9}"
)


def run(url: str, n: int, picks: int, data_dir: Path, rng: np.random.Generator) -> None:
    """One roster size in a fresh database: print its line of the table."""
    settings = load_settings(environ={}, overrides={"data_dir": str(data_dir), "database": {"url": url}})
    if True:
        engine = make_engine(url)
        if url.startswith("postgresql"):
            with engine.begin() as connection:
                connection.exec_driver_sql("DROP SCHEMA public CASCADE")
                connection.exec_driver_sql("CREATE SCHEMA public")
        database.upgrade(engine)
        sessions = make_session_factory(engine)
        load_units(sessions, n, rng)
        matcher = EscalationEngine(
            sessions, settings, publish=lambda *_: None, public_base=lambda: "", nearest_place=lambda *_: None
        )
        with sessions() as session:
            roster = [_candidate(u) for u in session.execute(select(Unit)).scalars()]  # type: ignore[arg-type]
        index = UnitIndex(roster, now=NOW, max_fix_age_s=MAX_FIX_AGE_S)

        qlat = PROBOLINGGO[0] + rng.uniform(-1.0, 1.0, picks)
        qlon = PROBOLINGGO[1] + rng.uniform(-1.0, 1.0, picks)
        qservice = [SERVICES[s] for s in rng.integers(0, len(SERVICES), picks)]
        before_ms: list[float] = []
        after_ms: list[float] = []
        floor_ms: list[float] = []
        cpu: dict[str, list[float]] = {"before": [], "after": [], "floor": []}
        agree = compared = 0
        sample = max(1, picks // 4) if n >= 10_000 else picks  # the full read is slow at 10k
        for i in range(picks):
            lat, lon, service = float(qlat[i]), float(qlon[i]), qservice[i]
            with sessions() as session:
                session.execute(text("SELECT 1"))  # the step's transaction is already open
                incident, assignment = Incident(lat=lat, lon=lon), Assignment(service=service, excluded={})
                ms, after = timed(matcher.pick, session, incident, assignment, NOW, cpu=cpu["after"])
                after_ms.append(ms)
                if i < sample:
                    ms, before = timed(pick_before, session, lat, lon, service, cpu=cpu["before"])
                    before_ms.append(ms)
                    compared += 1
                    agree += same(before, after)
            ms, _ = timed(index.nearest, lat, lon, service, cpu=cpu["floor"])
            floor_ms.append(ms)
        engine.dispose()
        before_ms.sort()
        after_ms.sort()
        floor_ms.sort()
        after_p50, floor_p50, before_p50 = (statistics.median(v) for v in (after_ms, floor_ms, before_ms))
        print(
            f"{n:>7,} {before_p50:>10.3f} {percentile(before_ms, 0.99):>7.3f}"
            f" {after_p50:>10.3f} {percentile(after_ms, 0.99):>7.3f}"
            f" {floor_p50:>10.3f} {percentile(floor_ms, 0.99):>7.3f}"
            f" {after_p50 / floor_p50:>10.1f}x {before_p50 / after_p50:>11.1f}x"
            f" {statistics.median(cpu['before']):>11.3f} {statistics.median(cpu['after']):>6.3f}"
            f" {statistics.median(cpu['floor']):>6.3f} {agree:>4}/{compared:<4}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="a PostgreSQL URL (emptied!); default: a SQLite file in a temp dir")
    parser.add_argument("--picks", type=int, default=400)
    parser.add_argument("--sizes", default=",".join(str(n) for n in SIZES))
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    rng = np.random.default_rng(20250101)
    backend = (args.database or "sqlite").split(":", 1)[0]
    print(f"{backend}: ms per pick inside an open transaction, {args.picks} picks per size (p50, p99 wall;")
    print("cpu: p50 of this process's CPU per pick, which a loaded machine inflates less; not the server's)")
    print(HEADER)
    print("-" * len(HEADER))
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            url = args.database or f"sqlite:///{tmp}/roster-{n}.sqlite3"
            run(url, n, args.picks, Path(tmp) / "var", rng)


if __name__ == "__main__":
    main()
