"""How the board orders and words open incidents (pure functions, no I/O).

The board answers one question first: where is nobody coming? So incidents fall into four
buckets by urgency, and every badge is derived from the current state only (an accepted
assignment shows who accepted it, never the escalation step it had reached before).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# NFPA 1225: 90 % of alarms dispatched within 60 s. A paging incident's age is coloured against it.
TARGET_S = 60.0
WARN_S = 45.0

# In order of urgency: nobody is coming or a person must look; units are being paged;
# a unit accepted and is on its way; every unit is on scene.
BUCKETS = ("attention", "paging", "en_route", "on_scene")


@dataclass(frozen=True)
class Urgency:
    """What decides an incident's place on the board."""

    state: str  # the incident's state
    needs_review: bool
    location_needed: bool
    assignment_states: tuple[str, ...]
    age_s: float
    owned: bool


def bucket(urgency: Urgency) -> str:
    """The incident's bucket (one of BUCKETS)."""
    states = [s for s in urgency.assignment_states if s not in ("cancelled", "resolved")]
    if urgency.state == "unanswered" or urgency.needs_review or urgency.location_needed or "exhausted" in states:
        return "attention"
    if urgency.state == "received" or not states or "active" in states:
        return "paging"
    if all(s == "on_scene" for s in states):
        return "on_scene"
    return "en_route"


def alarm(urgency: Urgency) -> bool:
    """The board keeps sounding for an unanswered incident until a dispatcher takes ownership."""
    return (urgency.state == "unanswered" or "exhausted" in urgency.assignment_states) and not urgency.owned


def order(urgencies: Iterable[tuple[int, Urgency]]) -> list[tuple[str, list[int]]]:
    """Incident ids per bucket, most urgent bucket first.

    Within "attention", incidents still sounding the alarm come first; everywhere, the oldest
    first (the one waiting longest is the one most at risk).
    """
    grouped: dict[str, list[tuple[int, Urgency]]] = {name: [] for name in BUCKETS}
    for incident_id, urgency in urgencies:
        grouped[bucket(urgency)].append((incident_id, urgency))
    return [
        (name, [i for i, _ in sorted(rows, key=lambda r: (not alarm(r[1]), -r[1].age_s, r[0]))])
        for name, rows in grouped.items()
    ]


def age_level(age_s: float | None, target_s: float = TARGET_S) -> str:
    """ok / warn / late: how a paging incident's age compares with the 60 s dispatch target."""
    if age_s is None or age_s < WARN_S * target_s / TARGET_S:
        return "ok"
    return "warn" if age_s <= target_s else "late"


def step_what(action: str, channels: Sequence[str]) -> str:
    """What a step does, as a catalogue key suffix: sms, voice, sms_voice, next_unit, supervisor."""
    if action == "notify_unit":
        # A chat step is a text too (WhatsApp, or SMS when the responder has none): "sms" on the board.
        texts = {"sms", "chat"} & set(channels)
        return "_".join(c for c in ("sms", "voice") if c in channels or (c == "sms" and texts)) or "sms"
    return action
