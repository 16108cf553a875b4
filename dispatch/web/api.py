"""The HTTP API for call-takers and dispatchers, under /api (OpenAPI at /api/openapi.json).

Authenticated with ``Authorization: Bearer <token>`` (``dispatch users token``).
Roles: call_taker reads and logs calls and moves location pins; dispatcher also
assigns, escalates, cancels and closes; admin can do everything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType
from sqlalchemy import select

from devices.models import Device
from dispatch import actions, calls, status
from dispatch.auth import require_role
from dispatch.calls import CallRecord
from dispatch.device_health import HealthPolicy, is_low_battery, is_silent
from dispatch.models import Assignment, Incident, Notification, TimelineEvent
from dispatch.web import api_models as m
from dispatch.web import limits
from dispatch.web.context import WebContext
from foundation.db import transaction
from responders.models import Unit

# What a view returns. Deliberately loose: spectree resolves view annotations at runtime,
# and Flask's ResponseReturnValue does not resolve outside Flask's own module.
Reply = Any


def make_spec() -> SpecTree:
    """The OpenAPI generator and request validator (422 with the field named on bad input)."""
    return SpecTree(
        "flask",
        title="Probolinggo emergency dispatch API",
        version="1",
        # spectree leaves out every route under its own path, so it must not be /api;
        # the document is served at /api/openapi.json by create_api_blueprint instead.
        path="_spectree",
        page_templates={},  # no documentation pages: they would load scripts from a CDN
        mode="strict",
        security_schemes=[
            SecurityScheme(name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer"))
        ],
        security={"bearer": []},
        # Our hooks: a 422 never echoes the body, and its log line names fields, not values.
        before=limits.before_validation,
        after=limits.after_validation,
    )


def _context() -> WebContext:
    context: WebContext = current_app.extensions["dispatch"]
    return context


def _actor() -> str:
    return f"user:{g.user['username']}"


def _local(context: WebContext, moment: datetime) -> str:
    return moment.astimezone(context.settings.local_zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def create_api_blueprint(spec: SpecTree) -> Blueprint:
    """A fresh blueprint with every route validated by ``spec`` (one per app: routes close over it)."""
    bp = Blueprint("api", __name__, url_prefix="/api")

    @bp.get("/openapi.json")
    def openapi() -> Reply:
        """The OpenAPI 3.1 document, generated from the routes and their pydantic models."""
        return jsonify(with_auth_answers(spec.spec))

    @bp.post("/calls")
    @require_role("call_taker")
    @spec.validate(
        json=CallRecord,
        resp=Response(HTTP_201=m.CallLogged, HTTP_200=m.CallLogged, HTTP_401=m.Problem, HTTP_403=m.Problem),
        tags=["calls"],
    )
    def log_call() -> Reply:
        """Log a 112 call (the same record as the calls/112 MQTT feed); idempotent by call_id."""
        context = _context()
        # Who took the call is whoever holds the token: a body cannot put it on someone else.
        record: CallRecord = _json().model_copy(update={"call_taker": g.user["username"]})
        geocoded = context.calls.geocode(record)
        now = context.clock()
        with transaction(context.sessions) as session:
            outcome = context.calls.accept(session, record, geocoded, actor=_actor(), now=now)
            incident = session.get_one(Incident, outcome.incident_id)
            pranks = calls.prank_count(session, incident.caller_number)
            body = m.CallLogged(
                incident_id=incident.id,
                created=outcome.outcome == "accepted",
                state=incident.state,
                location_needed=incident.location_needed,
                prank_count=pranks,
                repeat_prank=pranks >= calls.REPEAT_PRANK_THRESHOLD,
            )
        context.after_commit([(p.topic, p.payload) for p in outcome.publications])
        return jsonify(body.model_dump()), 201 if body.created else 200

    @bp.get("/incidents")
    @require_role("call_taker")
    @spec.validate(query=m.IncidentQuery, resp=Response(HTTP_200=m.IncidentList), tags=["incidents"])
    def list_incidents() -> Reply:
        """Incidents, newest first, filtered by state, service, open/closed and source."""
        context = _context()
        query: m.IncidentQuery = _query()
        statement = select(Incident).order_by(Incident.id.desc()).limit(query.limit)
        if query.state:
            statement = statement.where(Incident.state == query.state)
        if query.service:
            statement = statement.where(Incident.service == query.service)
        if query.source:
            statement = statement.where(Incident.source == query.source)
        if query.open is not None:
            closed = Incident.state.in_(("resolved", "cancelled"))
            statement = statement.where(~closed if query.open else closed)
        if query.before_id:
            statement = statement.where(Incident.id < query.before_id)
        with context.sessions() as session:
            rows = session.execute(statement).scalars().all()
            return jsonify(incidents=[_incident(session, context, i).model_dump(mode="json") for i in rows])

    @bp.get("/incidents/<int:incident_id>")
    @require_role("call_taker")
    @spec.validate(resp=Response(HTTP_200=m.IncidentDetail, HTTP_404=m.Problem), tags=["incidents"])
    def get_incident(incident_id: int) -> Reply:
        """One incident with its full timeline (who, what, when, which channel) and notifications."""
        context = _context()
        with context.sessions() as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                return jsonify(error=f"no incident {incident_id}"), 404
            events = session.execute(
                select(TimelineEvent).where(TimelineEvent.incident_id == incident_id).order_by(TimelineEvent.id)
            ).scalars()
            notes = session.execute(
                select(Notification).where(Notification.incident_id == incident_id).order_by(Notification.id)
            ).scalars()
            detail = m.IncidentDetail(
                **_incident(session, context, incident).model_dump(),
                geocode=incident.geocode or {},
                timeline=[
                    m.EventOut(
                        id=e.id,
                        at=e.at,
                        at_local=_local(context, e.at),
                        source_ts=e.source_ts,
                        actor=e.actor,
                        kind=e.kind,
                        unit_id=e.unit_id,
                        data=e.data or {},
                    )
                    for e in events
                ],
                notifications=[
                    m.NotificationOut(
                        id=n.id,
                        assignment_id=n.assignment_id,
                        recipient_kind=n.recipient_kind,
                        recipient_id=n.recipient_id,
                        channel=n.channel,
                        alert_code=n.alert_code,
                        state=n.state,
                        attempts=n.attempts,
                        error_code=n.error_code,
                        created_at=n.created_at,
                        sent_at=n.sent_at,
                    )
                    for n in notes
                ],
            )
            return jsonify(detail.model_dump(mode="json"))

    @bp.post("/incidents/<int:incident_id>/assign")
    @require_role("dispatcher")
    @spec.validate(
        json=m.AssignIn, resp=Response(HTTP_200=m.ActionDone, HTTP_404=m.Problem, HTTP_409=m.Problem), tags=["actions"]
    )
    def assign(incident_id: int) -> Reply:
        """Page a named unit for one service of the incident now."""
        body: m.AssignIn = _json()
        return _act(
            incident_id,
            lambda s, c, i, now: actions.assign_unit(
                s, c.settings, i, body.unit_id, body.service, actor=_actor(), now=now
            ),
            f"{body.unit_id} paged",
        )

    @bp.post("/incidents/<int:incident_id>/escalate")
    @require_role("dispatcher")
    @spec.validate(
        json=m.EscalateIn,
        resp=Response(HTTP_200=m.ActionDone, HTTP_404=m.Problem, HTTP_409=m.Problem),
        tags=["actions"],
    )
    def escalate(incident_id: int) -> Reply:
        """Run the next escalation step now instead of waiting for its timer."""
        body: m.EscalateIn = _json()

        def run(session: Any, context: WebContext, incident: Incident, now: datetime) -> list[tuple[str, bytes]]:
            actions.escalate_now(session, incident, body.service, actor=_actor(), now=now)
            return []

        return _act(incident_id, run, "next step due now")

    @bp.post("/incidents/<int:incident_id>/ownership")
    @require_role("dispatcher")
    @spec.validate(resp=Response(HTTP_200=m.ActionDone, HTTP_404=m.Problem, HTTP_409=m.Problem), tags=["actions"])
    def take_ownership(incident_id: int) -> Reply:
        """Take ownership of an unanswered or flagged incident (the console's alarm for it stops)."""

        def run(session: Any, context: WebContext, incident: Incident, now: datetime) -> list[tuple[str, bytes]]:
            actions.take_ownership(session, incident, actor=_actor(), now=now)
            return []

        return _act(incident_id, run, "ownership taken")

    @bp.post("/incidents/<int:incident_id>/cancel")
    @require_role("dispatcher")
    @spec.validate(
        json=m.CancelIn, resp=Response(HTTP_200=m.ActionDone, HTTP_404=m.Problem, HTTP_409=m.Problem), tags=["actions"]
    )
    def cancel(incident_id: int) -> Reply:
        """Cancel: paging stops and paged units are stood down."""
        body: m.CancelIn = _json()
        return _act(
            incident_id,
            lambda s, c, i, now: actions.cancel(s, c.settings, i, body.reason, actor=_actor(), now=now),
            "cancelled",
        )

    @bp.post("/incidents/<int:incident_id>/close")
    @require_role("dispatcher")
    @spec.validate(
        json=m.CloseIn, resp=Response(HTTP_200=m.ActionDone, HTTP_404=m.Problem, HTTP_409=m.Problem), tags=["actions"]
    )
    def close(incident_id: int) -> Reply:
        """Close with a disposition code."""
        body: m.CloseIn = _json()
        return _act(
            incident_id,
            lambda s, c, i, now: actions.close(s, c.settings, i, body.disposition, body.note, actor=_actor(), now=now),
            f"closed: {body.disposition}",
        )

    @bp.post("/incidents/<int:incident_id>/location")
    @require_role("call_taker")
    @spec.validate(json=m.LocationIn, resp=Response(HTTP_200=m.ActionDone, HTTP_404=m.Problem), tags=["actions"])
    def override_location(incident_id: int) -> Reply:
        """Move the incident's pin; the operator's location beats any geocode or device fix."""
        body: m.LocationIn = _json()

        def run(session: Any, context: WebContext, incident: Incident, now: datetime) -> list[tuple[str, bytes]]:
            context.calls.override_location(
                session, incident, body.lat, body.lon, actor=_actor(), note=body.note, now=now
            )
            return [(p.topic, p.payload) for p in status.publications(incident, now)]

        return _act(incident_id, run, "location set")

    @bp.get("/units")
    @require_role("call_taker")
    @spec.validate(resp=Response(HTTP_200=m.UnitList), tags=["units"])
    def list_units() -> Reply:
        """Every unit with its status, last position and age, and current incident."""
        context = _context()
        now = context.clock()
        with context.sessions() as session:
            units = session.execute(select(Unit).order_by(Unit.service, Unit.id)).scalars().all()
            return jsonify(
                units=[
                    m.UnitOut(
                        id=u.id,
                        service=u.service,
                        name=u.name,
                        status=u.status,
                        language=u.language,
                        station_lat=u.station_lat,
                        station_lon=u.station_lon,
                        fix_lat=u.fix_lat,
                        fix_lon=u.fix_lon,
                        fix_age_s=(now - u.fix_at).total_seconds() if u.fix_at else None,
                        current_incident_id=u.current_incident_id,
                        active=u.active,
                    ).model_dump(mode="json")
                    for u in units
                ]
            )

    @bp.get("/devices")
    @require_role("call_taker")
    @spec.validate(resp=Response(HTTP_200=m.DeviceList), tags=["devices"])
    def list_devices() -> Reply:
        """Every panic button with its health: silent, low battery, last seen."""
        context = _context()
        now = context.clock()
        policy = HealthPolicy(context.settings.devices.supervision_interval_s, context.settings.devices.low_battery_pct)
        with context.sessions() as session:
            devices = session.execute(select(Device).order_by(Device.id)).scalars().all()
            return jsonify(
                devices=[
                    m.DeviceOut(
                        id=d.id,
                        service=d.service,
                        owner_name=d.owner_name,
                        address=d.address,
                        lat=d.lat,
                        lon=d.lon,
                        last_seen_at=d.last_seen_at,
                        battery=d.battery,
                        rssi=d.rssi,
                        silent=is_silent(d, now, policy),
                        low_battery=is_low_battery(d, policy),
                        active=d.active,
                    ).model_dump(mode="json")
                    for d in devices
                ]
            )

    return bp


def with_auth_answers(document: dict[str, Any]) -> dict[str, Any]:
    """The document with 400, 401 and 403 on every operation: the edge (a NUL character in any query
    or form value, dispatch/web/hardening.py) and require_role answer them before spectree sees the
    request, so spectree cannot know about them."""
    problem = m.Problem.model_json_schema()
    answers = {
        "400": {
            "description": "input refused before validation (a NUL character)",
            "content": {"application/json": {"schema": problem}},
        },
        "401": {"description": "no valid bearer token", "content": {"application/json": {"schema": problem}}},
        "403": {
            "description": "the token's role is below the operation's",
            "content": {"application/json": {"schema": problem}},
        },
    }
    paths = {
        path: {method: {**op, "responses": {**answers, **op.get("responses", {})}} for method, op in ops.items()}
        for path, ops in document.get("paths", {}).items()
    }
    return {**document, "paths": paths}


def _json() -> Any:
    # spectree puts the validated models on request.context.
    return request.context.json  # type: ignore[attr-defined]


def _query() -> Any:
    return request.context.query  # type: ignore[attr-defined]


def _act(incident_id: int, run: Any, detail: str) -> Reply:
    try:
        state = _context().act_on_incident(incident_id, run)
    except actions.ActionError as exc:
        return jsonify(error=str(exc)), exc.status
    return jsonify(m.ActionDone(incident_id=incident_id, state=state, detail=detail).model_dump())


def _incident(session: Any, context: WebContext, incident: Incident) -> m.IncidentOut:
    assignments = session.execute(
        select(Assignment).where(Assignment.incident_id == incident.id).order_by(Assignment.id)
    ).scalars()
    return m.IncidentOut(
        id=incident.id,
        source=incident.source,
        state=incident.state,
        service=incident.service,
        services=list(incident.services or ([incident.service] if incident.service else [])),
        priority=incident.priority,
        classification=incident.classification,
        device_id=incident.device_id,
        press_id=incident.press_id,
        call_id=incident.call_id,
        caller_number=incident.caller_number,
        call_taker=incident.call_taker,
        lat=incident.lat,
        lon=incident.lon,
        location_source=incident.location_source,
        location_needed=incident.location_needed,
        address_text=incident.address_text,
        description=incident.description,
        needs_review=incident.needs_review,
        review_reason=incident.review_reason,
        disposition=incident.disposition,
        opened_at=incident.opened_at,
        opened_at_local=_local(context, incident.opened_at),
        closed_at=incident.closed_at,
        prank_count=calls.prank_count(session, incident.caller_number),
        assignments=[
            m.AssignmentOut(
                id=a.id,
                service=a.service,
                state=a.state,
                unit_id=a.unit_id,
                accepted_unit_id=a.accepted_unit_id,
                round=a.round,
                dispatched_at=a.dispatched_at,
                accepted_at=a.accepted_at,
                explanation=a.explanation or {},
            )
            for a in assignments
        ],
    )
