"""Response-time statistics of the console: pure functions, and the page over the real database."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session, sessionmaker

from dispatch.console.stats import (
    ALL,
    AssignmentTimes,
    IncidentTimes,
    date_range,
    day_bounds,
    failures,
    histogram,
    intervals,
    percentile,
    response_times,
)
from dispatch.models import Assignment, Incident
from dispatch.service import DispatchService
from foundation.clock import utcnow
from foundation.db import transaction
from tests.conftest import eventually
from tests.responder_helpers import fast_escalation, kinds
from tests.test_console_web import (
    Browser,
    users,  # noqa: F401  (the fixture, shared)
)

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Probolinggo (WIB, UTC+7)


def incident(n: int, *assignments: tuple[str, float | None, float | None, float | None]) -> IncidentTimes:
    """An incident opened at T0 + n minutes, with (service, to first page delivered, to accept, to on scene) s."""
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
    assert (police.to_delivered.p50, police.to_delivered.p90) == (50.0, 90.0)
    assert (police.to_accept.p50, police.to_accept.p90) == (100.0, 140.0)
    assert police.to_on_scene.count == 10
    # 10..100 s: six of ten within 60 s -> 60 %, below the 90 % target.
    assert (police.within_target, police.judged, police.pending) == (6, 10, 0)
    assert police.within_target_ratio == pytest.approx(0.6)
    assert police.meets_target is False
    assert row(rows, "ambulance").incidents == 0
    assert row(rows, "ambulance").meets_target is None


def test_an_undelivered_page_counts_as_a_miss_after_60_s_and_as_pending_before() -> None:
    now = T0 + timedelta(minutes=5, seconds=30)
    samples = [
        incident(0, ("police", 20.0, None, None)),
        incident(1, ("police", None, None, None)),  # 4.5 min without a unit: a miss
        incident(5, ("police", None, None, None)),  # 30 s old: still pending
    ]
    police = row(response_times(samples, now), "police")
    assert (police.within_target, police.judged, police.pending) == (1, 2, 1)
    assert police.to_delivered.count == 1


def test_the_all_row_takes_each_incidents_first_milestones_across_services() -> None:
    samples = [
        incident(0, ("police", 30.0, 90.0, None), ("ambulance", 20.0, 200.0, 400.0)),
        incident(1, ("disaster", 50.0, None, None)),
        incident(2),  # a prank call: no assignment, not counted
    ]
    rows = response_times(samples, now=T0 + timedelta(hours=1))
    total = row(rows, ALL)
    assert total.incidents == 2
    assert sorted([total.to_delivered.p50, total.to_delivered.p90]) == [20.0, 50.0]
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


def test_never_accepted_assignments_are_failures_and_listed() -> None:
    now = T0 + timedelta(minutes=10)
    samples = [
        incident(0, ("police", 20.0, 40.0, None)),
        incident(1, ("police", 30.0, None, None)),  # paged, delivered, nobody accepted: a failure
        incident(2, ("police", None, None, None), ("ambulance", 15.0, 70.0, None)),
        incident(9, ("police", None, None, None), ("ambulance", None, None, None)),  # 60 s old: pending
    ]
    police = row(response_times(samples, now), "police")
    assert police.never_accepted == 2
    listed = failures(intervals(samples, now))
    assert [(f.incident_id, f.service) for f in listed] == [(1, "police"), (2, "police")]
    assert row(response_times(samples, now), ALL).never_accepted == 1  # incident 1: no service accepted


def test_a_cancel_within_the_grace_window_is_not_counted() -> None:
    cancelled = IncidentTimes(5, "press", T0, (AssignmentTimes("police", None, None, None, "cancelled"),),
                              "cancelled_within_grace")  # fmt: skip
    police = row(response_times([cancelled], T0 + timedelta(hours=1)), "police")
    assert (police.incidents, police.judged, police.never_accepted) == (0, 0, 0)


def test_histogram_bins_and_never_delivered() -> None:
    assert histogram([5.0, 29.9, 30.0, 61.0, 700.0, None, None]) == [2, 1, 1, 0, 0, 0, 0, 1, 2]


def test_date_ranges_are_local_days() -> None:
    zone = ZoneInfo("Asia/Jakarta")
    now = datetime(2026, 11, 22, 18, 30, tzinfo=UTC)  # 01:30 on the 23rd in WIB
    assert date_range("today", now, zone) == day_bounds(now, zone)
    start, end = date_range("7d", now, zone)
    assert start == datetime(2026, 11, 17, tzinfo=zone) and end == datetime(2026, 11, 24, tzinfo=zone)
    start, end = date_range("custom", now, zone, date(2026, 11, 1), date(2026, 11, 2))
    assert (start, end) == (datetime(2026, 11, 1, tzinfo=zone), datetime(2026, 11, 3, tzinfo=zone))
    for bad in [("custom", None, None), ("custom", date(2026, 11, 2), date(2026, 11, 1)), ("year", None, None)]:
        with pytest.raises(ValueError):
            date_range(bad[0], now, zone, bad[1], bad[2])


def test_the_page_counts_a_page_as_dispatched_only_once_delivered(
    start_service: Callable[..., DispatchService],
    roster: None,
    users: dict[str, int],  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    slow = [{"after_s": 0, "action": "notify_unit"}, {"after_s": 600, "action": "supervisor"}]
    service = start_service(escalation=fast_escalation(slow))
    browser = Browser(service)
    browser.login("budi")
    body = {"call_id": "C-stats", "services": ["police"], "lat": -7.7543, "lon": 113.2159}
    headers = {"X-CSRF-Token": browser.csrf}
    delivered = browser.http.post(browser.base + "/api/calls", json=body, headers=headers, timeout=20).json()
    eventually(lambda: "sms_delivered" in kinds(sessions, delivered["incident_id"]))
    # A second incident whose page was queued at Twilio but never reported delivered, two minutes ago,
    # and nobody accepted: it may not count as dispatched, and it is a failure.
    with transaction(sessions) as session:
        opened = utcnow() - timedelta(minutes=2)
        queued = Incident(source="call", call_id="C-queued", service="police", services=["police"],
                          state="dispatched", opened_at=opened)  # fmt: skip
        session.add(queued)
        session.flush()
        session.add(Assignment(incident_id=queued.id, service="police", state="exhausted", unit_id="POL-02",
                               dispatched_at=opened + timedelta(seconds=1)))  # fmt: skip
        queued_id = queued.id

    page = browser.get("/console/stats")
    assert page.status_code == 200
    police = page.text.split('data-service="police"')[1].split("</tr>")[0]
    assert "50.0 % " in visible(police) and "(1/2)" in police  # the queued-only page is a miss
    failures_table = page.text.split('id="failures"')[1].split("</table>")[0]
    assert f'/console/incidents/{queued_id}"' in failures_table and "tak pernah sampai" in failures_table
    assert f'/console/incidents/{delivered["incident_id"]}"' not in failures_table  # still young, pending
    assert page.text.count("<svg") == 3 and 'class="bar never"' in page.text

    csv_text = browser.get("/console/stats.csv?range=7d").text.splitlines()
    assert csv_text[0].startswith("incident_id,service,opened_at_wib,to_first_page_delivered_s")
    rows = {line.split(",")[0]: line.split(",") for line in csv_text[1:]}
    assert rows[str(queued_id)][3] == "" and rows[str(queued_id)][-1] == "never_accepted"
    assert float(rows[str(delivered["incident_id"])][3]) < 60

    for query in ("range=custom&from=2026-13-01&to=2026-12-01", "range=custom", "range=year"):
        bad = browser.get(f"/console/stats?{query}")
        assert bad.status_code == 400 and "Traceback" not in bad.text
        assert browser.get(f"/console/stats.csv?{query}").status_code == 400
    custom = browser.get("/console/stats?range=custom&from=2020-01-01&to=2020-01-02")
    assert custom.status_code == 200 and "2020-01-01" in custom.text and 'id="failure-count">0<' in custom.text


def visible(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", html))
