"""Tables owned by the responders package: field units and service supervisors."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from foundation.clock import utcnow
from foundation.db import Base


class Unit(Base):
    """A field unit (patrol car, BPBD rescue team, PSC 119 ambulance) with one phone."""

    __tablename__ = "units"
    __table_args__ = (
        CheckConstraint("service IN ('police','disaster','ambulance')", name="service"),
        CheckConstraint("status IN ('available','busy','off_duty')", name="status"),
        CheckConstraint("language IN ('id','en')", name="language"),
        # The matcher reads only the units near an incident (dispatch/escalation.py roster_rows): one
        # latitude range scan per place a unit can be, longitude checked inside the index.
        Index("ix_units_service_station", "service", "station_lat", "station_lon"),
        Index("ix_units_service_fix", "service", "fix_lat", "fix_lon"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(2), default="id")
    # How to reach the unit, best first (sms_gateway, sms, voice); empty: the country rule decides.
    channels: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    station_lat: Mapped[float]
    station_lon: Mapped[float]
    active: Mapped[bool] = mapped_column(default=True)

    # Reported over MQTT (responders/{unit_id}/status and /location); the roster never overwrites them.
    status: Mapped[str] = mapped_column(String(16), default="available")
    status_at: Mapped[datetime | None]
    fix_lat: Mapped[float | None]
    fix_lon: Mapped[float | None]
    fix_accuracy_m: Mapped[float | None]
    fix_at: Mapped[datetime | None]
    # The incident this unit accepted; set and cleared by the dispatch engine.
    current_incident_id: Mapped[int | None]

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def take(self, incident_id: int, now: datetime) -> None:
        """The unit accepted an incident: busy until it releases it."""
        self.status, self.status_at, self.current_incident_id = "busy", now, incident_id

    def release(self, now: datetime) -> None:
        """The unit is free again (resolved, declined after accepting, or stood down)."""
        self.status, self.status_at, self.current_incident_id = "available", now, None


class Supervisor(Base):
    """The person who is paged when a service's units do not answer."""

    __tablename__ = "supervisors"
    __table_args__ = (
        CheckConstraint("service IN ('police','disaster','ambulance')", name="service"),
        CheckConstraint("language IN ('id','en')", name="language"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(2), default="id")
    channels: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
