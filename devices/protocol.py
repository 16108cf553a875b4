"""The MQTT protocol spoken by panic buttons (see PROTOCOL.md).

Pure parsing and validation: bytes in, typed message or a clear reason out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from foundation.wire import (
    ENTITY_ID,
    InvalidMessage,
    Latitude,
    Longitude,
    Payload,
    Service,
    decode_json_object,
    validate,
)

# Re-exported: callers catch protocol.InvalidMessage without knowing where it lives.
__all__ = ["InvalidMessage", "Service"]


class PressPayload(Payload):
    """devices/{device_id}/press"""

    press_id: str = Field(min_length=1, max_length=128)
    ts: AwareDatetime | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    accuracy_m: float | None = Field(default=None, ge=0)
    service: Service | None = None
    battery: int | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _both_or_neither(self) -> PressPayload:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        return self


class CancelPayload(Payload):
    """devices/{device_id}/cancel"""

    press_id: str = Field(min_length=1, max_length=128)
    ts: AwareDatetime | None = None


class HeartbeatPayload(Payload):
    """devices/{device_id}/heartbeat"""

    ts: AwareDatetime | None = None
    battery: int | None = Field(default=None, ge=0, le=100)
    rssi: int | None = Field(default=None, ge=-200, le=50)


DeviceKind = Literal["press", "cancel", "heartbeat"]
PAYLOADS: dict[str, type[Payload]] = {
    "press": PressPayload,
    "cancel": CancelPayload,
    "heartbeat": HeartbeatPayload,
}


@dataclass(frozen=True)
class DeviceMessage:
    device_id: str
    kind: DeviceKind
    payload: PressPayload | CancelPayload | HeartbeatPayload


def status_topic(device_id: str) -> str:
    """Where the backend tells a device what happened to its press."""
    return f"devices/{device_id}/status"


def is_own_output(topic: str) -> bool:
    """True for ``devices/{id}/status``: what the backend publishes, not an input."""
    parts = topic.split("/")
    return len(parts) == 3 and parts[0] == "devices" and parts[2] == "status"


def parse_device_topic(topic: str) -> tuple[str, DeviceKind] | None:
    """``devices/{id}/{kind}`` -> (id, kind); None when the topic is not a device input."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "devices" or parts[2] not in PAYLOADS:
        return None
    if not ENTITY_ID.match(parts[1]):
        raise InvalidMessage(f"invalid device id in topic: {parts[1][:64]!r}")
    return parts[1], parts[2]  # type: ignore[return-value]


def parse_device_message(topic: str, payload: bytes) -> DeviceMessage | None:
    """Parse a message on a device topic; None if the topic is not one of ours."""
    parsed = parse_device_topic(topic)
    if parsed is None:
        return None
    device_id, kind = parsed
    body = validate(PAYLOADS[kind], decode_json_object(payload))
    return DeviceMessage(device_id, kind, body)  # type: ignore[arg-type]


def status_payload(*, press_id: str | None, incident_id: int, state: str, at: datetime, **extra: Any) -> bytes:
    """The JSON a device receives on its status topic."""
    body: dict[str, Any] = {
        "press_id": press_id,
        "incident_id": incident_id,
        "state": state,
        "ts": at.isoformat().replace("+00:00", "Z"),
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(body, separators=(",", ":")).encode()
