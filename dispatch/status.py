"""Telling whoever raised an incident what is happening: the button, or the 112 call center."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devices.protocol import status_payload
from devices.protocol import status_topic as device_status_topic
from dispatch.models import Incident

CALL_TOPIC = "calls/112"


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes


def call_status_topic(call_id: str) -> str:
    """Where the call center hears what happened to a call."""
    return f"{CALL_TOPIC}/status/{call_id}"


def is_call_status(topic: str) -> bool:
    """Our own output, echoed back by the broker to our ``calls/#`` subscription."""
    return topic.startswith(f"{CALL_TOPIC}/status/")


def publications(incident: Incident, now: datetime, **extra: Any) -> tuple[Publication, ...]:
    """The status message for the incident's origin (QoS 1, published after commit)."""
    if incident.device_id is not None:
        extra.setdefault("needs_review", incident.needs_review or None)
        payload = status_payload(
            press_id=incident.press_id, incident_id=incident.id, state=incident.state, at=now, **extra
        )
        return (Publication(device_status_topic(incident.device_id), payload),)
    if incident.call_id is not None:
        body = {
            "call_id": incident.call_id,
            "incident_id": incident.id,
            "state": incident.state,
            "location_needed": incident.location_needed or None,
            "ts": now.isoformat().replace("+00:00", "Z"),
            **extra,
        }
        data = json.dumps({k: v for k, v in body.items() if v is not None}, separators=(",", ":")).encode()
        return (Publication(call_status_topic(incident.call_id), data),)
    return ()
