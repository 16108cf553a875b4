"""Device supervision: raise an alert once per episode when a button goes silent or runs low."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.models import Device
from dispatch import timeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthPolicy:
    supervision_interval_s: float
    low_battery_pct: int


def is_silent(device: Device, now: datetime, policy: HealthPolicy) -> bool:
    """Silent: nothing heard for longer than its supervision interval (since registration if never)."""
    interval = device.supervision_interval_s or policy.supervision_interval_s
    last = device.last_seen_at or device.created_at
    return (now - last).total_seconds() > interval


def is_low_battery(device: Device, policy: HealthPolicy) -> bool:
    return device.battery is not None and device.battery <= policy.low_battery_pct


def check_devices(session: Session, now: datetime, policy: HealthPolicy) -> list[str]:
    """Raise or clear alerts in the caller's transaction; returns the alert kinds raised."""
    raised: list[str] = []
    # Row locks make concurrent checks (several workers) and heartbeats take turns, so an alert is
    # raised once per episode and never lands after the recovery that ended it. A device locked by
    # someone else is skipped, not waited for: its holder is intake hearing from it right now (so
    # it is not silent; the next check sees its battery) or another check. Waiting would deadlock
    # with an intake batch that locks several buttons in the order their messages came.
    devices = select(Device).where(Device.active.is_(True)).order_by(Device.id).with_for_update(skip_locked=True)
    for device in session.execute(devices).scalars():
        silent = is_silent(device, now, policy)
        if silent and device.silent_alert_at is None:
            device.silent_alert_at = now
            _alert(session, device, "device_silent", now, last_seen_at=_iso(device.last_seen_at))
            raised.append(f"{device.id}:silent")
        low = is_low_battery(device, policy)
        if low and device.low_battery_alert_at is None:
            device.low_battery_alert_at = now
            _alert(session, device, "device_low_battery", now, battery=device.battery)
            raised.append(f"{device.id}:low_battery")
        elif not low and device.low_battery_alert_at is not None:
            device.low_battery_alert_at = None
            timeline.record(
                session,
                "device_battery_ok",
                actor="system",
                device_id=device.id,
                at=now,
                battery=device.battery,
            )
    return raised


def _alert(session: Session, device: Device, kind: str, now: datetime, **data: Any) -> None:
    timeline.record(session, kind, actor="system", device_id=device.id, at=now, **data)
    log.warning("device-health alert %s for device %s %s", kind, device.id, data)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
