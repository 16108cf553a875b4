"""Roster import: units, supervisors and devices from one YAML file, all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.orm import Session

from devices.models import Device
from responders.models import Supervisor, Unit

E164 = Annotated[str, Field(pattern=r"^\+[1-9]\d{6,14}$", description="E.164, e.g. +6281234567890")]
Service = Literal["police", "disaster", "ambulance"]
Lat = Annotated[float, Field(ge=-90, le=90)]
Lon = Annotated[float, Field(ge=-180, le=180)]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


class RosterError(ValueError):
    """The roster file is invalid; nothing was imported."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


# How a responder is reached, best first: the local SMS gateway, WhatsApp (alerts as the approved
# template), Twilio SMS (send-only from +62, with the one-tap link), a voice call. Empty: the country
# rule (foundation.settings.SmsGatewaySettings). How policy channels resolve: dispatch/routing.py.
Channel = Literal["sms_gateway", "whatsapp", "sms", "voice"]


class UnitEntry(_Entry):
    id: Id
    service: Service
    name: str = Field(min_length=1, max_length=200)
    phone: E164
    language: Literal["id", "en"] = "id"
    channels: list[Channel] = []
    station: tuple[Lat, Lon]
    active: bool = True


class SupervisorEntry(_Entry):
    id: Id
    service: Service
    name: str = Field(min_length=1, max_length=200)
    phone: E164
    language: Literal["id", "en"] = "id"
    channels: list[Channel] = []
    active: bool = True


class ContactEntry(_Entry):
    name: str = Field(min_length=1)
    phone: E164
    relation: str | None = None


class DeviceEntry(_Entry):
    id: Id
    service: Service
    owner_name: str = Field(min_length=1, max_length=200)
    phone: E164 | None = None
    address: str | None = Field(default=None, max_length=500)
    location: tuple[Lat, Lon]
    emergency_contacts: list[ContactEntry] = []
    supervision_interval_s: float | None = Field(default=None, gt=0)
    active: bool = True


class Roster(_Entry):
    units: list[UnitEntry] = []
    supervisors: list[SupervisorEntry] = []
    devices: list[DeviceEntry] = []
    notice: str | None = None  # free text, e.g. "illustrative data"

    @model_validator(mode="after")
    def _unique_ids(self) -> Roster:
        for section in ("units", "supervisors", "devices"):
            seen: set[str] = set()
            for index, entry in enumerate(getattr(self, section)):
                if entry.id in seen:
                    raise ValueError(f"{section}[{index}] (id={entry.id}): duplicate id")
                seen.add(entry.id)
        return self


def load_roster(path: Path) -> Roster:
    """Parse and validate a roster file; errors name the entry and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RosterError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise RosterError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RosterError(f"{path}: the top level must be a mapping with units, supervisors, devices")
    try:
        return Roster.model_validate(raw)
    except ValidationError as exc:
        raise RosterError(_describe(exc, raw)) from None


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = ""
        if len(loc) >= 2 and isinstance(loc[1], int):
            section, index = loc[0], loc[1]
            entry = (raw.get(str(section)) or [None] * (index + 1))[index]
            entry_id = entry.get("id") if isinstance(entry, dict) else None
            field = ".".join(str(p) for p in loc[2:]) or "entry"
            where = f"{section}[{index}] (id={entry_id}).{field}"
        else:
            where = ".".join(str(p) for p in loc) or "roster"
        lines.append(f"{where}: {err['msg']}")
    return "invalid roster:\n  " + "\n  ".join(lines)


def apply_roster(session: Session, roster: Roster) -> dict[str, int]:
    """Upsert every entry in the caller's transaction; live status fields are left alone."""
    counts = {"units": 0, "supervisors": 0, "devices": 0}
    for u in roster.units:
        unit = session.get(Unit, u.id) or Unit(id=u.id, status="available")
        unit.service, unit.name, unit.phone, unit.language = u.service, u.name, u.phone, u.language
        unit.station_lat, unit.station_lon = u.station
        unit.channels = list(u.channels)
        unit.active = u.active
        session.add(unit)
        counts["units"] += 1
    for s in roster.supervisors:
        sup = session.get(Supervisor, s.id) or Supervisor(id=s.id)
        sup.service, sup.name, sup.phone, sup.language, sup.active = (
            s.service,
            s.name,
            s.phone,
            s.language,
            s.active,
        )
        sup.channels = list(s.channels)
        session.add(sup)
        counts["supervisors"] += 1
    for d in roster.devices:
        device = session.get(Device, d.id) or Device(id=d.id)
        device.service, device.owner_name, device.phone, device.address = (
            d.service,
            d.owner_name,
            d.phone,
            d.address,
        )
        device.lat, device.lon = d.location
        device.emergency_contacts = [c.model_dump(exclude_none=True) for c in d.emergency_contacts]
        device.supervision_interval_s = d.supervision_interval_s
        device.active = d.active
        session.add(device)
        counts["devices"] += 1
    return counts
