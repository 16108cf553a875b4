"""The incident timeline as sentences in the reader's language (pure: the words come from ``translate``).

One place for every event kind: the catalogue key ``event.<kind>`` is the sentence, with named
parameters filled from the event (unit, who, channel, round, code...). A kind with no sentence
still reads as one (``event.fallback``), never as a raw key; tests/test_console_sentences.py lists
every kind the code records and fails when one lacks its sentence in either language.

Delivery receipts (Twilio's status callbacks: ``sms_sent``, ``voice_ringing``...) are folded into
the row of the notification they report on, which reads in its latest state
("SMS ke POL-01 terkirim · kode #1"), with each receipt and its time underneath.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

Translate = Callable[..., str]  # (key, **params) -> text in the reader's language

# "sms_queued", "chat_read", "voice_no_answer": a notification's progress (the outbox's hand-off,
# the providers' delivery reports).
NOTIFICATION_KIND = re.compile(r"^(sms|chat|voice)_(.+)$")

# Every provider status a notification row can be in (also Twilio's callback states), for the catalogue.
DELIVERY_STATES = (
    "pending",
    "sending",
    "unknown",
    "accepted",
    "scheduled",
    "queued",
    "initiated",
    "sending_provider",
    "ringing",
    "sent",
    "in_progress",
    "answered",
    "delivered",
    "undelivered",
    "failed",
    "completed",
    "busy",
    "no_answer",
    "canceled",
    "read",
    "cancelled",  # ours: never sent, the assignment no longer needed it
    "expired",  # ours: the provider could not take it while it was useful
    "unconfirmed",  # ours: the provider's final report never came
)


# Why a failed page brought the next step forward (dispatch.escalation.BRING_FORWARD_REASONS).
FORWARD_REASONS = ("no-answer", "busy", "failed", "permanent_sms_failure")

# Why the engine flagged an incident (its own English words) -> the catalogue's key for them.
REVIEW_REASONS = {
    "unregistered device": "review.unregistered_device",
    "inactive device": "review.inactive_device",
    "resident cancelled after the grace window": "review.cancelled_late",
    "nobody acknowledged: escalation policy exhausted": "review.exhausted",
    "location needed": "review.location_needed",
    "escalation step failed": "review.step_failed",
}


def review_reason(reason: str | None, t: Translate) -> str:
    """A review reason in the reader's language (one the catalogue does not know yet: as written)."""
    if not reason:
        return ""
    return t(REVIEW_REASONS[reason]) if reason in REVIEW_REASONS else reason


# Why the matcher passed a unit over ("excluded: no answer") -> the catalogue's key.
EXCLUSIONS = {"no answer": "skip.no_answer", "declined": "skip.declined"}


def skip_reason(reason: str, t: Translate) -> str:
    """Why a unit was passed over, in words: its status, or why it was excluded."""
    if reason in ("available", "busy", "off_duty"):
        return t(f"unit_status.{reason}")
    why = reason.removeprefix("excluded: ")
    if why in EXCLUSIONS:
        return t(EXCLUSIONS[why])
    return t("skip.other", why=why)


class Event(Protocol):
    """What a timeline row needs of a TimelineEvent."""

    id: int
    at: datetime
    actor: str
    kind: str
    unit_id: str | None
    device_id: str | None
    data: dict[str, Any]


@dataclass
class Row:
    """One line of the timeline as the console shows it."""

    at: datetime
    who: str
    sentence: str
    kind: str
    channel: str = ""
    receipts: list[tuple[datetime, str]] = field(default_factory=list)  # (when, state in words)
    raw: list[Event] = field(default_factory=list)


def who(actor: str, t: Translate) -> str:
    """``user:budi`` -> budi, ``unit:POL-01`` -> POL-01, ``system`` -> the system, in words."""
    kind, _, name = actor.partition(":")
    if not name:
        return t(f"actor.{kind}") if kind in ("system", "auditor", "twilio") else actor
    return name


def delivery_word(state: str, t: Translate) -> str:
    """A notification state in words ("no-answer" -> "tidak diangkat")."""
    return t(f"delivery.{state.replace('-', '_')}")


def _channels(data: Mapping[str, Any], t: Translate) -> str:
    named = data.get("channels") or ([data["channel"]] if data.get("channel") else [])
    return " + ".join(t(f"channel.{c}") if c in ("sms", "chat", "voice") else str(c) for c in named)


def params(
    event: Event,
    t: Translate,
    distance: Callable[[float | None], str],
    local: Callable[[datetime], str] = lambda moment: moment.strftime("%H:%M:%S"),
) -> dict[str, Any]:
    """Every value a sentence may name, from the event (missing ones show as a dash).

    ``local`` shows a moment the event names (an outage's start) in the reader's time zone.
    """
    data = event.data or {}
    values = dict(
        who=who(event.actor, t),
        unit=event.unit_id or data.get("unit_id") or data.get("recipient") or "—",
        recipient=data.get("recipient") or "—",
        device=event.device_id or "—",
        channel=_channels(data, t),
        channels=_channels(data, t),
        code=data.get("alert_code") or data.get("code") or "—",
        note=data.get("note") or review_reason(data.get("reason"), t),
        battery=data.get("battery", "—"),
        steps=data.get("steps", "—"),
    )
    if "round" in data:
        values["round"], values["seq"] = int(data["round"]) + 1, int(data.get("seq", 0)) + 1
    if data.get("service"):
        values["service"] = t(f"service.{data['service']}")
    for key in ("state", "previous"):
        if data.get(key):
            values[key] = t(f"state.{data[key]}")
    if data.get("disposition"):
        values["disposition"] = t(f"disposition.{data['disposition']}")
    if data.get("status"):
        values["unit_status"] = t(f"unit_status.{data['status']}")
    if "distance_m" in data:
        values["distance"] = distance(data.get("distance_m"))
    if data.get("reason") in FORWARD_REASONS:  # why a step was brought forward
        values["why"] = t(f"why.{str(data['reason']).replace('-', '_')}")
    if "readmitted" in data:
        values["readmitted"] = ", ".join(data.get("readmitted") or []) or "—"
    for key in ("provider", "to_provider", "lookups"):  # the outbox's own words about a page
        if data.get(key) is not None:
            values[key] = data[key]
    if data.get("since"):
        try:
            values["since"] = local(datetime.fromisoformat(str(data["since"])))
        except ValueError:
            values["since"] = str(data["since"])
    return values


def sentence(kind: str, values: dict[str, Any], t: Translate, known: Callable[[str], bool]) -> str:
    """The event's sentence; the readable fallback when its kind has none yet."""
    if known(f"event.{kind}"):
        return t(f"event.{kind}", **values)
    return t("event.fallback", what=kind.replace("_", " "))


def notification_sentence(channel: str, recipient: str, state: str, code: Any, t: Translate) -> str:
    """ "SMS ke POL-01 terkirim · kode #1": a notification in its latest state."""
    text = t(
        "sentence.notification", channel=t(f"channel.{channel}"), recipient=recipient, state=delivery_word(state, t)
    )
    return text + (" · " + t("sentence.code", code=code) if code else "")


def timeline(
    events: Iterable[Event],
    t: Translate,
    known: Callable[[str], bool],
    distance: Callable[[float | None], str],
    local: Callable[[datetime], str] = lambda moment: moment.strftime("%H:%M:%S"),
) -> list[Row]:
    """The incident's events as rows; a notification's hand-off and receipts share one row."""
    rows: list[Row] = []
    by_notification: dict[Any, tuple[Row, str, str, Any]] = {}
    for event in events:
        data = event.data or {}
        match = NOTIFICATION_KIND.match(event.kind)
        if match and data.get("notification_id") is not None:
            channel, state = match.group(1), match.group(2)
            key = data["notification_id"]
            if key in by_notification:
                row, recipient, _, code = by_notification[key]
            else:
                recipient, code = str(data.get("recipient") or "—"), data.get("alert_code")
                row = Row(event.at, who(event.actor, t), "", "notification", channel)
                rows.append(row)
            row.receipts.append((event.at, delivery_word(state, t)))
            row.raw.append(event)
            row.sentence = notification_sentence(channel, recipient, state, code, t)
            by_notification[key] = (row, recipient, state, code)
            continue
        values = params(event, t, distance, local)
        row = Row(event.at, who(event.actor, t), sentence(event.kind, values, t, known), event.kind)
        row.channel = values["channel"]
        row.raw.append(event)
        rows.append(row)
    return rows
