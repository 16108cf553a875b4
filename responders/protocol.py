"""MQTT reports from responder units (see PROTOCOL.md): location fixes and duty status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import AwareDatetime, Field

from foundation.wire import (
    ENTITY_ID,
    InvalidMessage,
    Latitude,
    Longitude,
    Payload,
    decode_json_object,
    validate,
)


class LocationPayload(Payload):
    """responders/{unit_id}/location"""

    ts: AwareDatetime
    lat: Latitude
    lon: Longitude
    accuracy_m: float | None = Field(default=None, ge=0)


class StatusPayload(Payload):
    """responders/{unit_id}/status"""

    ts: AwareDatetime
    status: Literal["available", "busy", "off_duty"]


ResponderKind = Literal["location", "status"]
PAYLOADS: dict[str, type[Payload]] = {"location": LocationPayload, "status": StatusPayload}


@dataclass(frozen=True)
class ResponderMessage:
    unit_id: str
    kind: ResponderKind
    payload: LocationPayload | StatusPayload


def parse_responder_message(topic: str, payload: bytes) -> ResponderMessage | None:
    """Parse ``responders/{unit_id}/{location|status}``; None if the topic is not one of these."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "responders" or parts[2] not in PAYLOADS:
        return None
    if not ENTITY_ID.match(parts[1]):
        raise InvalidMessage(f"invalid unit id in topic: {parts[1][:64]!r}")
    body = validate(PAYLOADS[parts[2]], decode_json_object(payload))
    return ResponderMessage(parts[1], parts[2], body)  # type: ignore[arg-type]
