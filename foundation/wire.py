"""Wire-format helpers shared by every MQTT protocol: JSON decoding and pydantic validation.

Pure: bytes in, a typed payload or an :class:`InvalidMessage` with one readable reason out.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Service = Literal["police", "disaster", "ambulance"]
ENTITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class InvalidMessage(ValueError):
    """The message cannot be accepted; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def storable(value: Any) -> Any:
    """Refuse what no database column can hold: NaN and infinities, and text with a NUL character
    (PostgreSQL refuses it in text and JSON; it used to surface as a 500 or a retried "bug")."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


class Payload(BaseModel):
    # Unknown fields are ignored so newer firmware can add fields without being dead-lettered.
    model_config = ConfigDict(extra="ignore", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value)


def decode_json_object(payload: bytes) -> dict[str, Any]:
    """Decode UTF-8 JSON that must be an object; raises InvalidMessage otherwise."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidMessage("payload is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidMessage(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"payload must be a JSON object, got {type(data).__name__}")
    return data


def validate(model: type[Payload], data: dict[str, Any]) -> Payload:
    """Validate a decoded payload, turning pydantic's errors into one readable reason."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidMessage(f"invalid {model.__doc__ or model.__name__}: {problems}") from None
