"""112 call records: one schema for the MQTT feed and the HTTP API, one way into incidents.

A call is idempotent by ``call_id``. Only ``normal`` calls are dispatched, one
assignment per requested service; ``ghost``, ``prank`` and ``info`` calls are
recorded with their class and closed. A call whose address cannot be geocoded
is flagged "location needed" for the call-taker instead of guessing; an
operator's location always wins over any geocode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from geopy.exc import GeopyError
from geopy.geocoders.base import Geocoder
from pydantic import AwareDatetime, Field, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch import status, timeline
from dispatch.escalation import fence_off, schedule
from dispatch.escalation_policy import StepRef
from dispatch.geocoding import GeocodeResult, geocode_address
from dispatch.intake import Outcome
from dispatch.models import Assignment, Incident
from foundation.db import insert_for
from foundation.settings import Settings
from foundation.wire import Latitude, Longitude, Payload, Service

log = logging.getLogger(__name__)

E164 = Annotated[str, Field(pattern=r"^\+[1-9]\d{6,14}$")]
REPEAT_PRANK_THRESHOLD = 2  # earlier prank calls from the same number before the flag shows


class CallRecord(Payload):
    """calls/112 and POST /api/calls"""

    # Part of the status topic calls/112/status/{call_id}: no MQTT wildcard, level separator or
    # control character (one used to be committed, then fail to publish: a 500 after the fact).
    call_id: str = Field(min_length=1, max_length=128, pattern=r"^[^+#/\x00-\x1f\x7f]+$")
    ts: AwareDatetime | None = None
    caller_number: E164 | None = None
    call_taker: str | None = Field(default=None, max_length=100)
    services: list[Service] = Field(default_factory=list, max_length=3)
    priority: Literal[1, 2, 3] = 2
    classification: Literal["normal", "ghost", "prank", "info"] = "normal"
    lat: Latitude | None = None
    lon: Longitude | None = None
    accuracy_m: float | None = Field(default=None, ge=0)
    address: str | None = Field(default=None, max_length=500)
    description: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _consistent(self) -> CallRecord:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon must be given together")
        if self.classification == "normal" and not self.services:
            raise ValueError("a normal call needs at least one service")
        if len(set(self.services)) != len(self.services):
            raise ValueError("services must not repeat")
        return self


@dataclass(frozen=True)
class Geocoded:
    """The outcome of looking up a call's address, decided before the transaction."""

    result: GeocodeResult | None
    error: str | None = None


class CallDesk:
    """Turns call records into incidents. Geocoding happens outside any transaction."""

    def __init__(
        self,
        settings: Settings,
        geocoder: Geocoder,
        start_escalation: Callable[[Session, Incident, datetime], object],
    ) -> None:
        self._settings = settings
        self._geocoder = geocoder
        self._start = start_escalation

    def geocode(self, record: CallRecord) -> Geocoded | None:
        """Look the address up when the handset gave no position (None: nothing to look up)."""
        if record.lat is not None or not record.address or record.classification != "normal":
            return None
        settings = self._settings.geocoding
        try:
            result = geocode_address(
                self._geocoder,
                record.address,
                timeout_s=settings.timeout_s,
                attempts=settings.attempts,
                bounded_to=settings.bounds,
            )
        except GeopyError as exc:
            log.warning("geocoder failed for call %s: %s", record.call_id, type(exc).__name__)
            return Geocoded(None, f"{type(exc).__name__}: {exc}"[:300])
        return Geocoded(result)

    def auto_dispatches(self, result: GeocodeResult) -> bool:
        """Whether a call may be dispatched to this geocode without a person confirming it.

        Only the gazetteer's confidence is a match score; Nominatim's ``importance`` is how
        well-known a place is, so it is not held against this threshold.
        """
        threshold = self._settings.geocoding.auto_dispatch_min_confidence
        return result.source != "gazetteer" or result.confidence >= threshold

    def accept(
        self,
        session: Session,
        record: CallRecord,
        geocoded: Geocoded | None,
        *,
        actor: str,
        now: datetime,
        operator_pin: tuple[float, float] | None = None,
    ) -> Outcome:
        """Open the incident for this call (or recognise it), in the caller's transaction.

        ``operator_pin``: where the call-taker put the pin while logging the call; it beats
        the handset and the geocoder, and is recorded as the operator's choice.
        """
        lat, lon, accuracy, source = (
            record.lat,
            record.lon,
            record.accuracy_m,
            "handset" if record.lat else None,
        )
        geocode: dict[str, Any] = {}
        if geocoded is not None and geocoded.result is not None:
            found = geocoded.result
            geocode = {
                "source": found.source,
                "confidence": round(found.confidence, 3),
                "display_name": found.display_name,
                "query": found.query,
                "conflicts": found.conflicts or None,
                "candidates": found.candidates or None,
            }
            if self.auto_dispatches(found):
                lat, lon, source = found.lat, found.lon, "geocoded"
            else:
                # Not sure enough to send anyone there: shown to the call-taker, who chooses.
                geocode.update(auto_dispatch=False, lat=found.lat, lon=found.lon)
            geocode = {key: value for key, value in geocode.items() if value is not None}
        elif geocoded is not None:
            geocode = {"error": geocoded.error or "no match", "query": record.address}
        located = {"lat": lat, "lon": lon, "source": source}
        if operator_pin is not None:
            (lat, lon), accuracy, source = operator_pin, None, "operator"
        normal = record.classification == "normal"
        location_needed = normal and lat is None
        inserted = session.execute(
            insert_for(session, Incident.__table__)
            .values(
                source="call",
                call_id=record.call_id,
                caller_number=record.caller_number,
                call_taker=record.call_taker,
                priority=record.priority,
                classification=record.classification,
                description=record.description,
                services=list(record.services),
                service=record.services[0] if record.services else None,
                state="received" if normal else "resolved",
                closed_at=None if normal else now,
                disposition=None if normal else record.classification,
                lat=lat,
                lon=lon,
                accuracy_m=accuracy,
                location_source=source,
                address_text=record.address,
                geocode=geocode,
                location_needed=location_needed,
                needs_review=location_needed,
                review_reason="location needed" if location_needed else None,
                opened_at=now,
                source_ts=record.ts,
            )
            .on_conflict_do_nothing(index_elements=["call_id"])
            .returning(Incident.__table__.c.id)
        ).scalar_one_or_none()
        if inserted is None:
            incident = session.execute(select(Incident).where(Incident.call_id == record.call_id)).scalar_one()
            return Outcome("duplicate", "call already recorded", incident.id, status.publications(incident, now))
        incident = session.get_one(Incident, inserted)
        timeline.record(
            session,
            "call_logged",
            actor=actor,
            incident_id=incident.id,
            source_ts=record.ts,
            at=now,
            call_id=record.call_id,
            classification=record.classification,
            services=list(record.services),
            priority=record.priority,
            call_taker=record.call_taker,
        )
        if geocode:
            timeline.record(
                session,
                _geocode_kind(geocode),
                actor="system",
                incident_id=incident.id,
                at=now,
                **geocode,
            )
        if operator_pin is not None:
            _record_override(session, incident, located, actor, "pin set while logging the call", now)
        if location_needed:
            timeline.record(
                session,
                "flagged_for_review",
                actor="system",
                incident_id=incident.id,
                at=now,
                reason="location needed",
                auto_dispatch=False,
                # Found, but not sure enough to send anyone (e.g. the address's parts disagree).
                geocode_confidence=geocode.get("confidence") if geocode.get("auto_dispatch") is False else None,
            )
        if normal and not location_needed:
            self._start(session, incident, now)
        return Outcome("accepted", None, incident.id, status.publications(incident, now), opened=incident)

    def override_location(
        self,
        session: Session,
        incident: Incident,
        lat: float,
        lon: float,
        *,
        actor: str,
        note: str | None,
        now: datetime,
    ) -> bool:
        """The operator's pin wins. Dispatch starts, or re-matches units not yet accepted.

        Returns whether any paging was (re)started.
        """
        previous = {"lat": incident.lat, "lon": incident.lon, "source": incident.location_source}
        incident.lat, incident.lon, incident.location_source, incident.accuracy_m = lat, lon, "operator", None
        waiting = incident.location_needed
        incident.location_needed = False
        if incident.review_reason == "location needed":
            incident.needs_review, incident.review_reason = False, None
        _record_override(session, incident, previous, actor, note, now)
        if incident.state in ("resolved", "cancelled"):
            return False
        assignments = session.execute(select(Assignment).where(Assignment.incident_id == incident.id)).scalars().all()
        if not assignments:
            if waiting or incident.classification in (None, "normal"):
                self._start(session, incident, now)
                return True
            return False
        restarted = False
        for assignment in assignments:
            if assignment.state in ("active", "exhausted"):
                fence_off(session, assignment, now)
                assignment.state, assignment.unit_id = "active", None
                policy = self._settings.escalation.policies[assignment.service]  # type: ignore[index]
                schedule(session, assignment, StepRef(assignment.round, 0), policy[0].action, now)
                restarted = True
        return restarted


def _record_override(
    session: Session, incident: Incident, previous: dict[str, Any], actor: str, note: str | None, now: datetime
) -> None:
    timeline.record(
        session,
        "location_overridden",
        actor=actor,
        incident_id=incident.id,
        at=now,
        lat=incident.lat,
        lon=incident.lon,
        previous=previous,
        note=note,
    )


def prank_count(session: Session, caller_number: str | None) -> int:
    """How many earlier calls from this number were classified as pranks (never blocks anything)."""
    if not caller_number:
        return 0
    return int(
        session.execute(
            select(func.count())
            .select_from(Incident)
            .where(Incident.caller_number == caller_number, Incident.classification == "prank")
        ).scalar_one()
    )


def _geocode_kind(geocode: dict[str, Any]) -> str:
    """The timeline's word for a lookup: found, found too loosely to send anyone (a person chooses), or not."""
    if "error" in geocode:
        return "geocode_failed"
    return "geocoded_uncertain" if geocode.get("auto_dispatch") is False else "geocoded"
