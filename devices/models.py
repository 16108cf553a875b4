"""Tables owned by the devices package: registered panic buttons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from foundation.clock import utcnow
from foundation.db import Base

SERVICES = ("police", "disaster", "ambulance")


class Device(Base):
    """A resident's panic button, registered by the roster."""

    __tablename__ = "devices"
    __table_args__ = (CheckConstraint("service IN ('police','disaster','ambulance')", name="service"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service: Mapped[str] = mapped_column(String(16))
    owner_name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(20))
    address: Mapped[str | None] = mapped_column(String(500))
    lat: Mapped[float]
    lon: Mapped[float]
    emergency_contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Per-device override of devices.supervision_interval_s (None: use the setting).
    supervision_interval_s: Mapped[float | None]
    active: Mapped[bool] = mapped_column(default=True)

    last_seen_at: Mapped[datetime | None]
    battery: Mapped[int | None]
    rssi: Mapped[int | None]
    # Set when a health alert is raised, cleared when the device recovers, so an
    # alert is raised once per episode rather than on every check.
    silent_alert_at: Mapped[datetime | None]
    low_battery_alert_at: Mapped[datetime | None]

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
