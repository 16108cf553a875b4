"""Request and response bodies of the HTTP API (they generate /api/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from foundation.wire import storable

Service = Literal["police", "disaster", "ambulance"]
DISPOSITIONS = (
    "resolved",
    "false_alarm",
    "duplicate",
    "no_action_needed",
    "handled_by_other_agency",
    "prank",
    "unreachable",
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value)


class Problem(BaseModel):
    error: str


class CallLogged(BaseModel):
    incident_id: int
    created: bool
    state: str
    location_needed: bool
    prank_count: int = Field(description="earlier calls from this number classified as prank")
    repeat_prank: bool = Field(description="shown to call-takers; a number is never blocked automatically")


class IncidentQuery(BaseModel):
    state: str | None = Field(default=None, max_length=16)
    service: Service | None = None
    open: bool | None = Field(default=None, description="only open (true) or only closed (false) incidents")
    source: Literal["press", "call"] | None = None
    limit: int = Field(default=50, ge=1, le=500)
    # Bounded like every id in a path (dispatch.web.hardening.LARGEST_ID): beyond, a 422, not an overflow.
    before_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="page backwards from this incident id")

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable(value)


class AssignmentOut(BaseModel):
    id: int
    service: str
    state: str
    unit_id: str | None
    accepted_unit_id: str | None
    round: int
    dispatched_at: datetime | None
    accepted_at: datetime | None
    explanation: dict[str, Any]


class IncidentOut(BaseModel):
    id: int
    source: str
    state: str
    service: str | None
    services: list[str]
    priority: int | None
    classification: str | None
    device_id: str | None
    press_id: str | None
    call_id: str | None
    caller_number: str | None
    call_taker: str | None
    lat: float | None
    lon: float | None
    location_source: str | None
    location_needed: bool
    address_text: str | None
    description: str | None
    needs_review: bool
    review_reason: str | None
    disposition: str | None
    opened_at: datetime
    opened_at_local: str
    closed_at: datetime | None
    prank_count: int
    assignments: list[AssignmentOut]


class IncidentList(BaseModel):
    incidents: list[IncidentOut]


class EventOut(BaseModel):
    id: int
    at: datetime
    at_local: str
    source_ts: datetime | None
    actor: str
    kind: str
    unit_id: str | None
    data: dict[str, Any]


class NotificationOut(BaseModel):
    id: int
    assignment_id: int | None
    recipient_kind: str
    recipient_id: str
    channel: str
    alert_code: int | None
    state: str
    attempts: int
    error_code: int | None
    created_at: datetime
    sent_at: datetime | None


class IncidentDetail(IncidentOut):
    geocode: dict[str, Any]
    timeline: list[EventOut]
    notifications: list[NotificationOut]


class AssignIn(_Body):
    unit_id: str = Field(min_length=1, max_length=64)
    service: Service | None = Field(default=None, description="which assignment; default: the unit's service")


class EscalateIn(_Body):
    service: Service | None = None


class CancelIn(_Body):
    reason: str = Field(min_length=1, max_length=500)


class CloseIn(_Body):
    disposition: Literal[DISPOSITIONS] = Field(description="the closing disposition code")  # type: ignore[valid-type]
    note: str | None = Field(default=None, max_length=1000)


class LocationIn(_Body):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    note: str | None = Field(default=None, max_length=500)


class ActionDone(BaseModel):
    incident_id: int
    state: str
    detail: str


class UnitOut(BaseModel):
    id: str
    service: str
    name: str
    status: str
    language: str
    station_lat: float
    station_lon: float
    fix_lat: float | None
    fix_lon: float | None
    fix_age_s: float | None
    current_incident_id: int | None
    active: bool


class UnitList(BaseModel):
    units: list[UnitOut]


class DeviceOut(BaseModel):
    id: str
    service: str
    owner_name: str
    address: str | None
    lat: float
    lon: float
    last_seen_at: datetime | None
    battery: int | None
    rssi: int | None
    silent: bool
    low_battery: bool
    active: bool


class DeviceList(BaseModel):
    devices: list[DeviceOut]
