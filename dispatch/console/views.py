"""The console's pages and form actions, under /console.

Pages are rendered on the server (Jinja); small vanilla scripts in dispatch/web/static/console/
re-fetch the live parts when the event stream (/console/events) says something changed.
Every change goes through the engine's own code (dispatch.actions, CallDesk), in one
transaction with the incident row locked, exactly as the HTTP API does.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import secrets
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, cast

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from geopy.distance import geodesic
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from dispatch import actions, status
from dispatch.auth import MIN_PASSWORD, attempt_login, clear_login_blocks, hash_password
from dispatch.calls import CallRecord
from dispatch.console import board as board_order
from dispatch.console import i18n, queries, sentences, stats
from dispatch.console.live import ChangeWatch
from dispatch.console.security import (
    LANGUAGES,
    ConsoleUser,
    csrf_token,
    csrf_valid,
    current_user,
    end_sessions,
    load_user,
    log_in,
    log_out,
    requires,
    safe_next,
    security_headers,
)
from dispatch.models import ROLES, ApiToken, Incident, User
from dispatch.web import api_models as m
from dispatch.web import i18n as web_i18n
from dispatch.web.context import WebContext
from foundation.db import transaction
from responders.messages import Language, format_distance

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")

SANDBOX_BLUEPRINT = "twilio_sandbox"
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
ALARM_EVERY_S = 10  # the board repeats an unanswered incident's alarm this often until someone owns it
Run = Callable[[Session, WebContext, Incident, datetime], list[tuple[str, bytes]]]


def _context() -> WebContext:
    context: WebContext = current_app.extensions["dispatch"]
    return context


def _user() -> ConsoleUser:
    user = current_user()
    assert user is not None, "views behind @requires always have a user"
    return user


def _actor() -> str:
    return f"user:{_user().username}"


def _language() -> str:
    user = current_user()
    if user is not None:
        return user.language
    chosen = session.get("lang")
    return chosen if chosen in LANGUAGES else "id"


def _t(key: str, **params: Any) -> str:
    return i18n.translate(_language(), key, **params)


def _watch() -> ChangeWatch:
    # One poller per app (per process); created on first use so nothing runs at import.
    watch: ChangeWatch | None = current_app.extensions.get("dispatch.console.watch")
    if watch is None:
        watch = ChangeWatch(_context().sessions, stopping=_context().stopping)
        current_app.extensions["dispatch.console.watch"] = watch
    return watch


def demo_phones_url() -> str | None:
    """The sandbox phone simulator's page, in demo mode (no Twilio account) only."""
    if SANDBOX_BLUEPRINT in current_app.blueprints:
        return url_for(f"{SANDBOX_BLUEPRINT}.phones_page")
    return None


@bp.before_request
def _load_and_check() -> Any:
    g.console_user = load_user(_context())
    web_i18n.use(_language())
    if request.method not in ("GET", "HEAD", "OPTIONS") and not csrf_valid():
        # Also for the login form: a forged login would put the victim into the attacker's account.
        return render_template("console/error.html", code=400, message=_t("error.csrf")), 400
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    return security_headers(response, _context().settings.console.tile_url)


@bp.app_template_filter("local")
def _local_filter(moment: datetime | None, fmt: str = "%H:%M:%S") -> str:
    if moment is None:
        return ""
    return moment.astimezone(_context().settings.local_zone).strftime(fmt)


@bp.app_template_filter("duration")
def _duration_filter(seconds: float | None) -> str:
    return i18n.duration(seconds)


@bp.app_template_filter("distance")
def _distance_filter(metres: float | None) -> str:
    return i18n.distance(metres)


@bp.app_template_filter("seconds")
def _seconds_filter(value: float | None) -> str:
    return i18n.seconds(value)


@bp.app_template_filter("details")
def _details_filter(data: dict[str, Any] | None) -> str:
    """A timeline event's data as ``key: value`` pairs (the columns already shown are left out)."""
    shown = []
    for key, value in (data or {}).items():
        if key in ("channel", "channels") or value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else _compact(_rounded(key, value))
        shown.append(f"{key}: {text}")
    return " · ".join(shown)


def _rounded(key: str, value: Any) -> Any:
    # Coordinates keep their precision (5 decimals is about a metre); other numbers are distances and ages.
    if isinstance(value, float):
        return round(value, 5) if key in ("lat", "lon") else round(value, 1)
    if isinstance(value, list | tuple):
        return [_rounded(key, v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(k, v) for k, v in value.items()}
    return value


def _compact(value: Any) -> str:
    text = value if isinstance(value, int | float) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(text)
    return text if len(text) <= 160 else text[:157] + "…"


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    language = _language()
    settings = _context().settings

    def translate(key: str, **params: Any) -> str:
        return i18n.translate(language, key, **params)

    return {
        "lang": language,
        "user": current_user(),
        "csrf_token": csrf_token,
        "demo_url": demo_phones_url(),
        "delivery_word": lambda state: sentences.delivery_word(state, translate),
        "review_reason": lambda reason: sentences.review_reason(reason, translate),
        "skip_reason": lambda reason: sentences.skip_reason(reason, translate),
        "who": lambda actor: sentences.who(actor, translate),
        "js_config": {
            "csrf": csrf_token(),
            "lang": language,
            "strings": i18n.js_strings(language),
            "tileUrl": settings.console.tile_url,
            "tileAttribution": settings.console.tile_attribution,
            "bounds": list(settings.geocoding.bounds),
            "eventsUrl": url_for("console.events"),
        },
    }


# -- login, logout, language ---------------------------------------------------------------


@bp.get("/login")
def login() -> Any:
    """The login form (in the language chosen with ?lang=, Indonesian by default)."""
    if request.args.get("lang") in LANGUAGES:
        session["lang"] = request.args["lang"]
        web_i18n.use(_language())
    if current_user() is not None:
        return redirect(url_for(".board"))
    return render_template("console/login.html", next=safe_next(request.args.get("next")))


@bp.post("/login")
def login_post() -> Any:
    """Check the password; a failure says nothing about which of the two was wrong."""
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    context = _context()
    # The peer's address; behind web.trusted_proxy, waitress has put the forwarded client's there.
    address = request.remote_addr or ""
    now = context.clock()
    with context.sessions() as db, db.begin():
        attempt = attempt_login(db, username, password, address, now)
        if attempt.user is not None:
            log_in(db, attempt.user, now)
    if attempt.user is None:
        seconds = math.ceil(attempt.retry_after.total_seconds())
        flash(_t("login.blocked", seconds=seconds) if seconds else _t("login.failed"), "error")
        page = render_template("console/login.html", next=safe_next(request.form.get("next")), username=username)
        if seconds:
            return page, 429, {"Retry-After": str(seconds)}
        return page, 401
    return redirect(safe_next(request.form.get("next")) or url_for(".board"), 303)


@bp.post("/logout")
def logout() -> Any:
    """End the session, on the server too: the cookie is worth nothing afterwards."""
    language = _language()
    context = _context()
    with transaction(context.sessions) as db:
        log_out(db, context.clock())
    session["lang"] = language
    return redirect(url_for(".login"), 303)


@bp.post("/language")
def language() -> Any:
    """Switch the console's language; stored on the user, so it follows them to any desk."""
    chosen = request.form.get("lang", "")
    if chosen not in LANGUAGES:
        return render_template("console/error.html", code=400, message=_t("error.bad_request")), 400
    user = current_user()
    if user is not None:
        with transaction(_context().sessions) as db:
            db.execute(update(User).where(User.id == user.id).values(language=chosen))
    session["lang"] = chosen
    return redirect(safe_next(request.form.get("next")) or url_for(".board"), 303)


# -- board, live updates, map ----------------------------------------------------------------


@bp.get("/")
@requires("call_taker")
def board() -> Any:
    """The live board of open incidents (the default page)."""
    return render_template("console/board.html", page="board", alarm_every_s=ALARM_EVERY_S, **_board())


def _board_rows() -> list[dict[str, Any]]:
    context = _context()
    with context.sessions() as db, db.begin():
        return queries.board_rows(db, context.settings, context.clock())


def _board() -> dict[str, Any]:
    """The board's rows grouped into its buckets, most urgent first (every bucket, with its count).

    Above them, every phone-provider channel failing right now: pages are held and retried, and
    the dispatchers must know before anyone asks why a unit has not answered.
    """
    rows = _board_rows()
    buckets = [(name, [r for r in rows if r["bucket"] == name]) for name in board_order.BUCKETS]
    context = _context()
    with context.sessions() as db:
        outages = queries.open_outages(db, context.settings)
    return {"buckets": buckets, "total": len(rows), "outages": outages}


@bp.get("/board.json")
@requires("call_taker")
def board_json() -> Any:
    """The board's rows as JSON (what the page shows)."""
    return jsonify(now=_context().clock().isoformat(), incidents=_board_rows())


@bp.get("/board/rows")
@requires("call_taker")
def board_rows() -> Any:
    """The board's table body, re-fetched by the page on every change."""
    return render_template("console/_board_rows.html", **_board())


@bp.get("/events")
@requires("call_taker")
def events() -> Any:
    """Server-sent events: ``change`` with the newest timeline event id whenever it moves."""
    disconnected = request.environ.get("waitress.client_disconnected")
    stream = _watch().stream(disconnected)
    return Response(
        stream,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.get("/map")
@requires("call_taker")
def map_page() -> Any:
    """Incidents, units and devices on one map."""
    return render_template("console/map.html", page="map")


@bp.get("/map.json")
@requires("call_taker")
def map_json() -> Any:
    """Open incidents, units (position and its age) and devices (health) for the map."""
    context = _context()
    now = context.clock()
    with context.sessions() as db, db.begin():
        return jsonify(
            incidents=queries.map_incidents(db),
            units=queries.unit_rows(db, context.settings, now),
            devices=queries.device_rows(db, context.settings, now),
        )


# -- incident page and actions -------------------------------------------------------------


def _incident_page(incident_id: int, status_code: int = 200) -> Any:
    context = _context()
    with context.sessions() as db, db.begin():
        detail = queries.incident_detail(db, incident_id)
        if detail is None:
            return render_template("console/error.html", code=404, message=_t("error.no_incident")), 404
        incident = detail["incident"]
        everyone = queries.unit_rows(db, context.settings, context.clock())
        units = queries.assign_choices(everyone, list(incident.services or []), incident.lat, incident.lon)
        involved = {a.unit_id for a in detail["assignments"]} | {a.accepted_unit_id for a in detail["assignments"]}
        map_units = [
            {"id": u["id"], "status": u["status"], "lat": u["lat"], "lon": u["lon"]}
            for u in everyone
            if u["id"] in involved
        ]
        detail["timeline_rows"] = _timeline(detail["events"])
        # Still waiting for a location because the address disagrees with itself: offer its places.
        geocode = incident.geocode or {}
        choose = _disagreement(geocode.get("candidates") or []) if incident.location_needed else None
        return (
            render_template(
                "console/incident.html",
                page="incident",
                units=units,
                map_units=map_units,
                dispositions=m.DISPOSITIONS,
                choose=choose,
                **detail,
            ),
            status_code,
        )


@bp.get("/incidents/<int:incident_id>")
@requires("call_taker")
def incident(incident_id: int) -> Any:
    """Everything about one incident, with the actions the user's role allows."""
    return _incident_page(incident_id)


@bp.get("/incidents/<int:incident_id>/live")
@requires("call_taker")
def incident_live(incident_id: int) -> Any:
    """The incident page's changing part (state, assignments, timeline, notifications)."""
    context = _context()
    with context.sessions() as db, db.begin():
        detail = queries.incident_detail(db, incident_id)
        if detail is None:
            return render_template("console/error.html", code=404, message=_t("error.no_incident")), 404
        return render_template("console/_incident_live.html", timeline_rows=_timeline(detail["events"]), **detail)


def _timeline(events: list[Any]) -> list[sentences.Row]:
    """The incident's timeline as sentences in the user's language."""
    language = _language()
    return sentences.timeline(
        events,
        lambda key, **params: i18n.translate(language, key, **params),
        lambda key: i18n.has(language, key),
        i18n.distance,
        _local_filter,
    )


def _act(incident_id: int, run: Run, done: str) -> Any:
    """Run one action with the incident row locked; publish after commit (as the API's _act)."""
    try:
        _context().act_on_incident(incident_id, run)
    except actions.ActionError as exc:
        if exc.reason == "no_incident":
            return render_template("console/error.html", code=404, message=_t("error.no_incident")), 404
        flash(_t("action.refused", reason=_refusal(exc)), "error")
        return _incident_page(incident_id, exc.status)
    flash(done, "ok")
    if request.form.get("back") == "board":  # an inline action on the board returns there
        return redirect(url_for(".board"), 303)
    return redirect(url_for(".incident", incident_id=incident_id), 303)


def _refusal(exc: actions.ActionError) -> str:
    """The refusal in the user's language, with states and services named as the console names them."""
    params = dict(exc.params)
    for key, prefix in (("state", "state"), ("service", "service"), ("unit_service", "service")):
        if params.get(key) is not None:
            params[key] = _t(f"{prefix}.{params[key]}")
    return _t(f"action.error.{exc.reason}", **params)


def _invalid(incident_id: int, error: ValidationError) -> Any:
    fields = ", ".join(str(e["loc"][0]) if e["loc"] else e["msg"] for e in error.errors())
    flash(_t("action.invalid", fields=fields), "error")
    return _incident_page(incident_id, 422)


def _form(name: str) -> str | None:
    value = request.form.get(name, "").strip()
    return value or None


@bp.post("/incidents/<int:incident_id>/assign")
@requires("dispatcher")
def assign(incident_id: int) -> Any:
    """Page another unit now (its service's assignment; replaces whoever is being paged)."""
    try:
        body = m.AssignIn(unit_id=_form("unit_id") or "", service=_form("service"))  # type: ignore[arg-type]
    except ValidationError as exc:
        return _invalid(incident_id, exc)
    return _act(
        incident_id,
        lambda s, c, i, now: actions.assign_unit(s, c.settings, i, body.unit_id, body.service, actor=_actor(), now=now),
        _t("action.assigned", unit=body.unit_id),
    )


@bp.post("/incidents/<int:incident_id>/escalate")
@requires("dispatcher")
def escalate(incident_id: int) -> Any:
    """Run the next escalation step now."""
    try:
        body = m.EscalateIn(service=_form("service"))  # type: ignore[arg-type]
    except ValidationError as exc:
        return _invalid(incident_id, exc)

    def run(s: Session, c: WebContext, i: Incident, now: datetime) -> list[tuple[str, bytes]]:
        actions.escalate_now(s, i, body.service, actor=_actor(), now=now)
        return []

    return _act(incident_id, run, _t("action.escalated"))


@bp.post("/incidents/<int:incident_id>/ownership")
@requires("dispatcher")
def take_ownership(incident_id: int) -> Any:
    """Take an unanswered or flagged incident in hand: the board's alarm for it stops."""

    def run(s: Session, c: WebContext, i: Incident, now: datetime) -> list[tuple[str, bytes]]:
        actions.take_ownership(s, i, actor=_actor(), now=now)
        return []

    return _act(incident_id, run, _t("action.owned", id=incident_id))


@bp.post("/incidents/<int:incident_id>/cancel")
@requires("dispatcher")
def cancel(incident_id: int) -> Any:
    """Cancel: paging stops and paged units are stood down by SMS."""
    try:
        body = m.CancelIn(reason=_form("reason") or "")
    except ValidationError as exc:
        return _invalid(incident_id, exc)
    return _act(
        incident_id,
        lambda s, c, i, now: actions.cancel(s, c.settings, i, body.reason, actor=_actor(), now=now),
        _t("action.cancelled"),
    )


@bp.post("/incidents/<int:incident_id>/close")
@requires("dispatcher")
def close(incident_id: int) -> Any:
    """Close with a disposition code."""
    try:
        body = m.CloseIn(disposition=_form("disposition") or "", note=_form("note"))
    except ValidationError as exc:
        return _invalid(incident_id, exc)
    return _act(
        incident_id,
        lambda s, c, i, now: actions.close(s, c.settings, i, body.disposition, body.note, actor=_actor(), now=now),
        _t("action.closed", disposition=_t(f"disposition.{body.disposition}")),
    )


@bp.post("/incidents/<int:incident_id>/location")
@requires("call_taker")
def move_pin(incident_id: int) -> Any:
    """Set the incident's location from the map pin; the operator's pin beats any geocode."""
    try:
        body = m.LocationIn(lat=_number("lat"), lon=_number("lon"), note=_form("note"))  # type: ignore[arg-type]
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            return _invalid(incident_id, exc)
        flash(_t("action.invalid", fields="lat, lon"), "error")
        return _incident_page(incident_id, 422)

    def run(s: Session, c: WebContext, i: Incident, now: datetime) -> list[tuple[str, bytes]]:
        c.calls.override_location(s, i, body.lat, body.lon, actor=_actor(), note=body.note, now=now)
        return [(p.topic, p.payload) for p in status.publications(i, now)]

    return _act(incident_id, run, _t("action.located"))  # allowed on closed incidents too


def _number(name: str) -> float | None:
    value = _form(name)
    return None if value is None else float(value.replace(",", "."))


# -- 112 call form -------------------------------------------------------------------------


def _new_call_id(now: datetime) -> str:
    # Made when the form is shown, so submitting the same form twice logs one call (call_id is unique).
    local = now.astimezone(_context().settings.local_zone)
    return f"112-{local:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


@bp.get("/calls/new")
@requires("call_taker")
def new_call() -> Any:
    """The form for logging a 112 call."""
    return render_template("console/call.html", page="call", form={"call_id": _new_call_id(_context().clock())})


@bp.post("/calls")
@requires("call_taker")
def log_call() -> Any:
    """Log the call (same record and path as POST /api/calls), then show its incident."""
    context = _context()
    form = request.form
    try:
        record = CallRecord(
            call_id=_form("call_id") or "",
            caller_number=_form("caller_number"),
            call_taker=_user().username,
            services=form.getlist("services"),  # type: ignore[arg-type]
            priority=int(form.get("priority") or 2),  # type: ignore[arg-type]
            classification=_form("classification") or "normal",  # type: ignore[arg-type]
            lat=_number("lat"),
            lon=_number("lon"),
            address=_form("address"),
            description=_form("description"),
        )
    except (ValidationError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors())
        else:
            problems = str(exc)
        flash(_t("call.invalid", problems=problems), "error")
        values: dict[str, Any] = {key: form.get(key) for key in form}
        values["services"] = form.getlist("services")
        return render_template("console/call.html", page="call", form=values), 422
    # A pin placed on the map is the operator's location, not the caller's handset fix: the record
    # goes in without it (the address is still geocoded, for the record) and the pin is passed as
    # the operator's choice, so the incident says "operator" and the timeline who set it.
    # Typed coordinates stay the handset's.
    pinned = form.get("pin_source") == "operator"
    pin = (record.lat, record.lon) if pinned and record.lat is not None and record.lon is not None else None
    if pin is not None:
        record = record.model_copy(update={"lat": None, "lon": None, "accuracy_m": None})
    geocoded = context.calls.geocode(record)
    with transaction(context.sessions) as db:
        outcome = context.calls.accept(db, record, geocoded, actor=_actor(), now=context.clock(), operator_pin=pin)
        incident_id = outcome.incident_id
    context.after_commit([(p.topic, p.payload) for p in outcome.publications])
    logged = (
        _t("call.logged", id=incident_id) if outcome.outcome == "accepted" else _t("call.duplicate", id=incident_id)
    )
    flash(logged, "ok")
    return redirect(url_for(".incident", incident_id=incident_id), 303)


@bp.get("/geocode.json")
@requires("call_taker")
def geocode_preview() -> Any:
    """Where the geocoder puts an address, before the call is logged (nothing is stored)."""
    address = request.args.get("address", "").strip()[:500]
    if not address:
        return jsonify(found=False, error="no address"), 400
    record = CallRecord(call_id="preview", services=["police"], address=address)
    geocoded = _context().calls.geocode(record)
    if geocoded is None or geocoded.result is None:
        return jsonify(found=False, error=(geocoded.error if geocoded else None) or "no match")
    result = geocoded.result
    return jsonify(
        found=True,
        lat=result.lat,
        lon=result.lon,
        display_name=result.display_name,
        source=result.source,
        confidence=round(result.confidence, 3),
        auto_dispatch=_context().calls.auto_dispatches(result),
        **(_disagreement(result.candidates) or {}),
    )


def _disagreement(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The places an address's disagreeing parts point to, for the call-taker to choose from.

    ``candidates``: the geocoder's pick first, then each area named with it that it is not in
    (``GeocodeResult.candidates``, also kept in an incident's ``geocode``). Each comes back with
    ``picked`` and ``apart_m`` (from the pick), with a warning in the user's language naming both.
    """
    if len(candidates) < 2:
        return None
    pick = candidates[0]
    choices = [
        {
            "name": c["name"],
            "kind": c.get("kind"),
            "lat": c["lat"],
            "lon": c["lon"],
            "area": c.get("area"),
            "picked": index == 0,
            "apart_m": round(geodesic((pick["lat"], pick["lon"]), (c["lat"], c["lon"])).meters),
        }
        for index, c in enumerate(candidates)
    ]
    named = choices[1]
    warning = _t(
        "geocode.disagree",
        street=pick["name"],
        area=pick.get("area") or "—",
        distance=format_distance(cast(Language, _language()), named["apart_m"]),
        named=named["name"],
    )
    return {"candidates": choices, "apart_m": named["apart_m"], "warning": warning}


# -- units, devices, statistics ------------------------------------------------------------


@bp.get("/units")
@requires("call_taker")
def units() -> Any:
    """Units board: status, position and its age, current incident."""
    context = _context()
    with context.sessions() as db, db.begin():
        rows = queries.unit_rows(db, context.settings, context.clock())
    template = "console/_units_table.html" if request.args.get("fragment") else "console/units.html"
    return render_template(template, units=rows, page="units")


@bp.get("/devices")
@requires("call_taker")
def devices() -> Any:
    """Device health: silent and low-battery panic buttons first."""
    context = _context()
    with context.sessions() as db, db.begin():
        rows = queries.device_rows(db, context.settings, context.clock())
    rows.sort(key=lambda d: (not (d["silent"] or d["low_battery"] or d["never_seen"]), d["id"]))
    template = "console/_devices_table.html" if request.args.get("fragment") else "console/devices.html"
    return render_template(template, devices=rows, page="devices", policy=context.settings.devices)


@bp.get("/stats")
@requires("call_taker")
def stats_page() -> Any:
    """Response times per service against NFPA 1225 (90 % of pages delivered within 60 s), for a range."""
    chosen = _stats_range()
    if isinstance(chosen, str):
        return render_template("console/error.html", code=400, message=chosen), 400
    choice, start, end = chosen
    context = _context()
    now = context.clock()
    with context.sessions() as db, db.begin():
        samples = queries.response_samples(db, start, end)
    intervals = stats.intervals(samples, now)
    charts = [
        (service, stats.histogram(r.to_delivered for r in intervals if r.service == service))
        for service in stats.SERVICES
    ]
    return render_template(
        "console/stats.html",
        page="stats",
        rows=stats.response_times(samples, now),
        failures=stats.failures(intervals),
        charts=charts,
        bins=stats.BINS,
        choice=choice,
        start=start,
        last_day=end - timedelta(days=1),
        total=len(stats.counted(samples)),
        target_pct=round(stats.NFPA_TARGET * 100),
        target_s=round(stats.NFPA_DISPATCH_S),
    )


@bp.get("/stats.csv")
@requires("call_taker")
def stats_csv() -> Any:
    """The per-incident intervals behind the statistics, as CSV (times in WIB, intervals in seconds)."""
    chosen = _stats_range()
    if isinstance(chosen, str):
        return Response(chosen + "\n", status=400, mimetype="text/plain")
    _, start, end = chosen
    context = _context()
    with context.sessions() as db, db.begin():
        samples = queries.response_samples(db, start, end)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["incident_id", "service", "opened_at_wib", "to_first_page_delivered_s", "to_accept_s",
                     "to_on_scene_s", "outcome"])  # fmt: skip
    for r in stats.intervals(samples, context.clock()):
        opened = r.opened_at.astimezone(context.settings.local_zone).strftime("%Y-%m-%d %H:%M:%S")
        seconds = [("" if v is None else f"{v:.1f}") for v in (r.to_delivered, r.to_accept, r.to_on_scene)]
        writer.writerow([r.incident_id, r.service, opened, *seconds, r.outcome])
    name = f"response-times-{start:%Y%m%d}-{end - timedelta(days=1):%Y%m%d}.csv"
    return Response(
        out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _stats_range() -> tuple[str, datetime, datetime] | str:
    """The range the statistics page asks for (?range=today|7d|30d|custom&from=&to=), or why it is bad."""
    choice = request.args.get("range", "today")
    try:
        first = date.fromisoformat(request.args["from"]) if request.args.get("from") else None
        last = date.fromisoformat(request.args["to"]) if request.args.get("to") else None
    except ValueError:
        return _t("stats.range_error.bad_date")
    try:
        start, end = stats.date_range(choice, _context().clock(), _context().settings.local_zone, first, last)
    except ValueError as exc:
        return _t(f"stats.range_error.{exc}", days=stats.MAX_CUSTOM_DAYS)
    return choice, start, end


# -- admin: users ------------------------------------------------------------------------------


@bp.get("/admin/users")
@requires("admin")
def admin_users() -> Any:
    """Users with role, language and state; add, reset a password, deactivate."""
    with _context().sessions() as db, db.begin():
        users = list(db.execute(select(User).order_by(User.active.desc(), User.username)).scalars())
        return render_template("console/admin_users.html", page="admin", users=users, roles=ROLES)


@bp.post("/admin/users")
@requires("admin")
def admin_add_user() -> Any:
    """Add a user with a password (the API token stays a CLI matter: it is shown once)."""
    username = _form("username") or ""
    name = _form("name") or username
    role = _form("role") or ""
    language = _form("language") or "id"
    password = request.form.get("password", "")
    if not USERNAME.match(username) or role not in ROLES or language not in LANGUAGES:
        flash(_t("admin.invalid"), "error")
        return redirect(url_for(".admin_users"), 303)
    if len(password) < MIN_PASSWORD:
        flash(_t("admin.short_password", n=MIN_PASSWORD), "error")
        return redirect(url_for(".admin_users"), 303)
    context = _context()
    with transaction(context.sessions) as db:
        if db.execute(select(User.id).where(User.username == username)).first() is not None:
            flash(_t("admin.exists", username=username), "error")
            return redirect(url_for(".admin_users"), 303)
        db.add(
            User(
                username=username,
                name=name[:200],
                role=role,
                language=language,
                password_hash=hash_password(password),
                active=True,
                created_at=context.clock(),
            )
        )
    flash(_t("admin.added", username=username), "ok")
    return redirect(url_for(".admin_users"), 303)


@bp.post("/admin/users/<int:user_id>/password")
@requires("admin")
def admin_reset_password(user_id: int) -> Any:
    """Set a new password: the user's console sessions end, and a login block on them is lifted."""
    password = request.form.get("password", "")
    if len(password) < MIN_PASSWORD:
        flash(_t("admin.short_password", n=MIN_PASSWORD), "error")
        return redirect(url_for(".admin_users"), 303)
    context = _context()
    now = context.clock()
    with transaction(context.sessions) as db:
        user = db.get(User, user_id)
        if user is None:
            return render_template("console/error.html", code=404, message=_t("error.not_found")), 404
        user.password_hash = hash_password(password)
        username = user.username
        end_sessions(db, user_id, now)
        clear_login_blocks(db, username)  # as `dispatch users add --password` does
        if user_id == _user().id:
            log_in(db, user, now)  # keep the admin who changed their own password logged in
    flash(_t("admin.password_set", username=username), "ok")
    return redirect(url_for(".admin_users"), 303)


@bp.post("/admin/users/<int:user_id>/active")
@requires("admin")
def admin_set_active(user_id: int) -> Any:
    """Deactivate (tokens revoked, sessions end at the next click) or reactivate a user."""
    active = request.form.get("active") == "1"
    if user_id == _user().id and not active:
        flash(_t("admin.not_yourself"), "error")
        return redirect(url_for(".admin_users"), 303)
    context = _context()
    with transaction(context.sessions) as db:
        user = db.get(User, user_id)
        if user is None:
            return render_template("console/error.html", code=404, message=_t("error.not_found")), 404
        user.active = active
        if not active:
            db.execute(
                update(ApiToken)
                .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=context.clock())
            )
        username = user.username
    flash(_t("admin.activated", username=username) if active else _t("admin.deactivated", username=username), "ok")
    return redirect(url_for(".admin_users"), 303)
