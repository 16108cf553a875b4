"""Every page and every timeline event kind reads in one language: the user's.

Renders each console page (and the one-tap link page) in Indonesian and in English, with an
incident carrying every kind of event the code can record, and fails on text from the other
language's catalogue, on a catalogue key shown as such, or (in Indonesian) on a raw enum value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from dispatch import links
from dispatch.console import i18n, sentences
from dispatch.models import Assignment, Incident, Notification, TimelineEvent, User
from dispatch.service import DispatchService
from foundation.db import transaction
from responders.sandbox import words
from tests.conftest import eventually
from tests.test_console_sentences import recorded_kinds
from tests.test_console_web import (
    Browser,
    users,  # noqa: F401  (the fixture, shared)
)

# What an engine value looks like when it leaks onto an Indonesian page untranslated.
RAW = ("delivered", "no-answer", "no_answer", "excluded: no answer", "notify_unit", "next_unit", "in-progress",
       "unanswered", "exhausted", "acknowledged", "dispatched", "nobody acknowledged", "step_")  # fmt: skip
HIDDEN = re.compile(r"<(script|style|details)\b.*?</\1>", re.DOTALL)
OTHER = {"id": "en", "en": "id"}


def visible(html: str) -> str:
    """What a person reads: no scripts, styles, raw-data <details>, tags or attributes."""
    text = re.sub(r"<[^>]*>", " ", HIDDEN.sub(" ", html))
    return re.sub(r"\s+", " ", text.replace("&#39;", "'").replace("&amp;", "&"))


def foreign_phrases(language: str) -> list[str]:
    """Texts only the other language's catalogue has (long enough not to be a shared word)."""
    mine = i18n.messages(language)
    theirs = i18n.messages(OTHER[language])
    phrases = set()
    for key, text in theirs.items():
        if text == mine.get(key):
            continue
        for fragment in re.split(r"%\(\w+\)s|%%", text):
            fragment = fragment.strip(" .:·,()→#")
            if len(fragment) >= 8 and not any(fragment in own for own in mine.values()):
                phrases.add(fragment)
    return sorted(phrases)


def check(language: str, name: str, html: str) -> None:
    text = visible(html)
    assert len(text) > 40, f"{name}: empty page?"
    problems = [f"foreign: {p!r}" for p in foreign_phrases(language) if re.search(rf"\b{re.escape(p)}\b", text)]
    problems += [f"key: {k!r}" for k in i18n.messages(language) if re.search(rf"(?<![\w/]){re.escape(k)}\b", text)]
    if language == "id":
        problems += [f"raw: {r!r}" for r in RAW if r in text]
    assert problems == [], f"{language} {name}: {problems}\n{text[:3000]}"


@pytest.fixture
def service(
    start_service: Callable[..., DispatchService],
    roster: None,
    users: dict[str, int],  # noqa: F811
) -> DispatchService:
    return start_service()


def every_kind(sessions: sessionmaker[Session], incident_id: int) -> None:
    """Append one event of every kind the code records (and every delivery receipt) to the incident."""
    data = {
        "round": 0,
        "seq": 1,
        "channels": ["sms", "voice"],
        "channel": "sms",
        "unit_id": "POL-02",
        "service": "police",
        "state": "dispatched",
        "previous": "received",
        "disposition": "false_alarm",
        "reason": "nobody acknowledged: escalation policy exhausted",
        "status": "busy",
        "distance_m": 850.0,
        "recipient": "POL-02",
        "battery": 15,
    }
    with transaction(sessions) as session:
        notification = (
            session.execute(select(Notification).where(Notification.incident_id == incident_id)).scalars().first()
        )
        assert notification is not None
        for kind in sorted(recorded_kinds()):
            session.add(TimelineEvent(incident_id=incident_id, actor="system", kind=kind, data=data, unit_id="POL-02"))
        for state in sentences.DELIVERY_STATES:
            for channel in ("sms", "voice"):
                session.add(
                    TimelineEvent(
                        incident_id=incident_id,
                        actor="twilio",
                        kind=f"{channel}_{state}",
                        data={"notification_id": 10_000 + len(channel), "recipient": "POL-02", "alert_code": 3},
                    )
                )
        # The notifications table shows a state in words whatever Twilio said last.
        notification.state = "no-answer"


@pytest.mark.parametrize("language", ["id", "en"])
def test_every_page_reads_in_one_language(
    service: DispatchService, sessions: sessionmaker[Session], language: str
) -> None:
    with transaction(sessions) as session:
        session.execute(update(User).values(language=language))
    browser = Browser(service)
    check(language, "login", browser.get(f"/console/login?lang={language}").text)
    browser.login("admin")
    api = browser.base + "/api/calls"
    headers = {"X-CSRF-Token": browser.csrf}
    body = {"call_id": "C-lang", "services": ["police", "ambulance"], "lat": -7.7543, "lon": 113.2159,
            "description": "Kecelakaan motor", "priority": 1}  # fmt: skip
    incident_id = browser.http.post(api, json=body, headers=headers, timeout=20).json()["incident_id"]
    unlocated = browser.http.post(
        api, json={"call_id": "C-nowhere", "services": ["police"], "address": "Jalan yang tidak dikenal 99"},
        headers=headers, timeout=20,
    ).json()["incident_id"]  # fmt: skip
    eventually(lambda: [n for n in _notifications(sessions, incident_id) if n.provider_sid])
    every_kind(sessions, incident_id)
    with transaction(sessions) as session:  # one assignment nobody answered, as the engine leaves it
        session.execute(
            update(Assignment)
            .where(Assignment.incident_id == incident_id, Assignment.service == "ambulance")
            .values(state="exhausted", excluded={"AMB-01": "no answer", "AMB-02": "declined"})
        )
        incident = session.get_one(Incident, incident_id)
        incident.state, incident.needs_review = "unanswered", True
        incident.review_reason = "nobody acknowledged: escalation policy exhausted"
        incident.opened_at -= timedelta(minutes=5)

    pages = {
        "board": "/console/",
        "board rows": "/console/board/rows",
        "map": "/console/map",
        "call form": "/console/calls/new",
        "units": "/console/units",
        "devices": "/console/devices",
        "stats": "/console/stats",
        "users": "/console/admin/users",
        "incident": f"/console/incidents/{incident_id}",
        "incident live": f"/console/incidents/{incident_id}/live",
        "incident without location": f"/console/incidents/{unlocated}",
        "not found": "/console/incidents/999999",
    }
    for name, path in pages.items():
        response = browser.get(path)
        assert response.status_code in (200, 404), (name, response.status_code)
        check(language, name, response.text)

    with transaction(sessions) as session:
        notification = _notifications(sessions, incident_id)[0]
        session.execute(update(Notification).where(Notification.id == notification.id).values(language=language))
    token = links.make_token(service.settings.signing_key(), notification.id, "view")
    check(language, "link page", browser.http.get(f"{browser.base}/a/{token}", timeout=20).text)
    # A broken link names no recipient: the browser's preferred language.
    preferred = {"Accept-Language": f"{language};q=1, {OTHER[language]};q=0.5"}
    check(language, "bad link", browser.http.get(f"{browser.base}/a/nonsense", headers=preferred, timeout=20).text)


def _notifications(sessions: sessionmaker[Session], incident_id: int) -> list[Notification]:
    with sessions() as session:
        return list(
            session.execute(
                select(Notification).where(Notification.incident_id == incident_id).order_by(Notification.id)
            ).scalars()
        )


@pytest.mark.parametrize("language", ["id", "en"])
def test_the_phone_simulator_reads_in_one_language(service: DispatchService, language: str) -> None:
    assert set(words.WORDS["id"]) == set(words.WORDS["en"])
    base = f"http://127.0.0.1:{service.web_port}/sandbox/twilio/phones"
    asked = requests.get(f"{base}?lang={language}", timeout=20).text
    preferred = requests.get(base, headers={"Accept-Language": f"{language}, *;q=0.1"}, timeout=20).text
    for page in (asked, preferred):
        text = visible(page)
        mine, theirs = words.WORDS[language], words.WORDS[OTHER[language]]
        assert mine["send_sms"] in text and mine["text_in"] in text
        leaked = [v for k, v in theirs.items() if v != mine[k] and "{" not in v and len(v) > 6 and v in text]
        assert leaked == []
        script_words = {"id": "Twilio akan membalas SMS", "en": "Twilio would text back"}
        assert "const WORDS = " in page and script_words[language] in page  # the script's own words
