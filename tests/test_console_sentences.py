"""The timeline reads as sentences in both languages, for every kind of event the code can record."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from dispatch.console import i18n, sentences
from dispatch.models import TimelineEvent
from dispatch.service import DispatchService
from tests.conftest import ROOT, eventually
from tests.responder_helpers import notifications
from tests.test_console_web import (
    Browser,
    users,  # noqa: F401  (the fixture, shared)
)

# timeline.record(session, <kind>, ...) and the outbox's _record(session, <kind>, row, ...) wrapper.
RECORD = re.compile(r"(?:timeline\.record|\b_record)\(\s*\w+,\s*(?:#[^\n]*\n\s*)*(f?\"[^\"]*\"|[^,]+),")
LITERAL = re.compile(r'^"([a-z_]+)"$')
# Kinds named by an expression rather than a literal, with every value the expression takes.
# A new expression fails the test below until it is added here (and its kinds get sentences).
DYNAMIC: dict[str, tuple[str, ...]] = {
    'f"step_{spec.action}"': ("step_notify_unit", "step_next_unit", "step_supervisor"),
    "_geocode_kind(geocode)": ("geocode_failed", "geocoded", "geocoded_uncertain"),  # dispatch/calls.py
    "kind": (
        "cancelled",
        "cancelled_by_resident",  # dispatch/intake.py cancel
        "device_silent",
        "device_low_battery",  # dispatch/device_health.py _alert
    ),
    "target": ("on_scene", "resolved"),  # dispatch/acknowledge.py _progress
    '"chat_reply" if inbound.channel == "chat" else "sms_reply"': ("chat_reply", "sms_reply"),
}
# Notification progress (outbox hand-off, failures, Twilio's callbacks) folds into the notification's row.
NOTIFICATION_EXPRESSIONS = (
    'f"{_medium(row)}_queued"',
    'f"{_medium(row)}_failed"',
    'f"{_medium(row)}_expired"',
    "change.event",  # every provider's delivery reports (dispatch/delivery.py)
)


def recorded_kinds() -> set[str]:
    """Every kind a ``timeline.record`` call in the code can write (notification progress aside)."""
    kinds: set[str] = set()
    unknown = []
    for path in [*ROOT.glob("dispatch/**/*.py"), *ROOT.glob("devices/**/*.py"), *ROOT.glob("responders/**/*.py")]:
        for expression in RECORD.findall(path.read_text(encoding="utf-8")):
            expression = expression.strip()
            if literal := LITERAL.match(expression):
                kinds.add(literal.group(1))
            elif expression in DYNAMIC:
                kinds.update(DYNAMIC[expression])
            elif expression not in NOTIFICATION_EXPRESSIONS:
                unknown.append(f"{path.relative_to(ROOT)}: {expression}")
    assert not unknown, f"kinds recorded from expressions this test does not know: {unknown}"
    return kinds


def test_the_scan_finds_the_kinds_it_should() -> None:
    kinds = recorded_kinds()
    assert {"press_received", "accepted", "step_supervisor", "ownership_taken", "closed"} <= kinds
    assert len(kinds) > 30


@pytest.mark.parametrize("language", ["id", "en"])
def test_every_kind_the_code_records_has_a_sentence(language: str) -> None:
    missing = sorted(k for k in recorded_kinds() if not i18n.has(language, f"event.{k}"))
    assert missing == []
    for state in sentences.DELIVERY_STATES:
        assert i18n.has(language, f"delivery.{state}"), state


def event(kind: str, actor: str = "system", unit_id: str | None = None, **data: Any) -> TimelineEvent:
    return TimelineEvent(
        id=1, kind=kind, actor=actor, unit_id=unit_id, at=datetime(2026, 12, 2, 1, 0, tzinfo=UTC), data=data
    )


def rows(language: str, *events: TimelineEvent) -> list[sentences.Row]:
    translate: Callable[..., str] = lambda key, **p: i18n.translate(language, key, **p)  # noqa: E731
    return sentences.timeline(events, translate, lambda key: i18n.has(language, key), i18n.distance)


def test_delivery_receipts_fold_into_their_notifications_row() -> None:
    shown = rows(
        "id",
        event("step_notify_unit", round=0, seq=0, unit_id="POL-01", channels=["sms"]),
        event("sms_queued", notification_id=7, recipient="POL-01", alert_code=1),
        event("sms_sent", "twilio", notification_id=7, recipient="POL-01", previous="queued"),
        event("accepted", "unit:POL-01", "POL-01", channel="sms"),
        event("sms_delivered", "twilio", notification_id=7, recipient="POL-01", previous="sent"),
    )
    assert [r.sentence for r in shown] == [
        "Putaran 1 · langkah 1: POL-01 dipanggil lewat SMS",
        "SMS ke POL-01 sampai · kode #1",
        "POL-01 menerima tugas lewat SMS",
    ]
    assert [word for _, word in shown[1].receipts] == ["antre", "terkirim", "sampai"]
    assert len(shown[1].raw) == 3
    english = rows(
        "en", event("voice_queued", notification_id=8, recipient="POL-02"), event("voice_no_answer", notification_id=8)
    )
    assert [r.sentence for r in english] == ["Voice call to POL-02 no answer"]


def test_a_kind_without_a_sentence_still_reads_as_one() -> None:
    (row,) = rows("id", event("carrier_pigeon_sent"))
    assert row.sentence == "Peristiwa lain tercatat (carrier pigeon sent)"
    (row,) = rows("en", event("signal_flare_fired"))
    assert row.sentence == "Other event recorded (signal flare fired)"


def test_the_incident_page_shows_the_timeline_as_sentences(
    start_service: Callable[..., DispatchService],
    roster: None,
    users: dict[str, int],  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:
    service = start_service()
    browser = Browser(service)
    browser.login("budi")
    created = browser.http.post(
        browser.base + "/api/calls",
        json={"call_id": "C-tl", "services": ["police"], "lat": -7.7543, "lon": 113.2159},
        headers={"X-CSRF-Token": browser.csrf},
        timeout=20,
    )
    incident_id = created.json()["incident_id"]
    eventually(lambda: [n for n in notifications(sessions, incident_id) if n.state in ("sent", "delivered")])
    page = browser.get(f"/console/incidents/{incident_id}").text
    timeline = page.split('id="timeline"')[1].split("</table>")[0]
    assert "Panggilan 112 dicatat oleh budi" in timeline
    assert re.search(r"SMS ke POL-01 (terkirim|sampai) · kode #\d", timeline)
    assert timeline.count('data-kind="notification"') == len(notifications(sessions, incident_id))
    assert "<details>" in timeline and "sms_queued" in timeline  # the raw fields, one click away
    for raw in ("delivered</td>", "no-answer", "step_notify_unit</td>"):
        assert raw not in timeline


def test_no_sentence_uses_the_other_languages_words() -> None:
    english_only = re.compile(r"\b(the|and|paged|accepted|button|unit did)\b", re.IGNORECASE)
    for key, text in i18n.messages("id").items():
        if key.startswith("event."):
            assert not english_only.search(text), (key, text)


@pytest.mark.parametrize("language", ["id", "en"])
def test_review_reasons_read_in_the_users_language(language: str) -> None:
    for key in sentences.REVIEW_REASONS.values():
        assert i18n.has(language, key), key
    translate: Callable[..., str] = lambda key, **p: i18n.translate(language, key, **p)  # noqa: E731
    exhausted = sentences.review_reason("nobody acknowledged: escalation policy exhausted", translate)
    assert (
        exhausted
        == {
            "id": "tidak ada yang menerima: semua langkah eskalasi habis",
            "en": "nobody accepted: every escalation step ran",
        }[language]
    )
