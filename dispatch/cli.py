"""The ``dispatch`` command line: serve, demo, database, roster and a button simulator."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import click

from foundation.logsafe import configure_logging
from foundation.settings import Settings, SettingsError, load_settings

EXAMPLE_ROSTER = Path(__file__).resolve().parent.parent / "config" / "roster.example.yaml"
log = logging.getLogger("dispatch")


def _settings(overrides: dict[str, Any] | None = None) -> Settings:
    try:
        return load_settings(overrides=overrides)
    except SettingsError as exc:
        click.echo(f"dispatch: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING, ERROR")
def main(log_level: str) -> None:
    """Emergency dispatch and panic-button backend."""
    configure_logging(log_level.upper())


def _web_overrides(host: str | None, port: int | None) -> dict[str, Any]:
    web: dict[str, Any] = {}
    if host is not None:
        web["host"] = host
    if port is not None:
        web["port"] = port
    return {"web": web} if web else {}


@main.command()
@click.option("--host", default=None, help="Web bind address (default: web.host setting)")
@click.option("--port", type=int, default=None, help="Web port (default: web.port setting)")
@click.option(
    "--sandbox",
    is_flag=True,
    help="Use the built-in Twilio sandbox and phone simulator instead of Twilio (never in production)",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Run this many identical processes (PostgreSQL and an external broker; see README, Several workers)",
)
@click.option("--worker", type=click.IntRange(1, 64), default=None, hidden=True)  # a child of --workers
def serve(host: str | None, port: int | None, sandbox: bool, workers: int, worker: int | None) -> None:
    """Run the MQTT gateway, the scheduler and the web app in one process (or N with --workers)."""
    overrides = _web_overrides(host, port)
    if sandbox:
        overrides["twilio"] = {"sandbox": True}
    if worker is not None:
        from dispatch.workers import worker_overrides

        overrides.update(worker_overrides(_settings(overrides).mqtt, worker))
        _serve(_settings(overrides), roster=None, worker=True)
    elif workers > 1:
        sys.exit(_supervise(_settings(overrides), workers))
    else:
        _serve(_settings(overrides), roster=None)


def _supervise(settings: Settings, workers: int) -> int:
    from dispatch.service import ConfigurationError, check_phone_provider
    from dispatch.workers import Supervisor, child_command, prepare

    try:
        check_phone_provider(settings)
        settings, port = prepare(settings, workers)
    except (ConfigurationError, ValueError) as exc:
        click.echo(f"dispatch: {exc}", err=True)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    click.echo(f"dispatch: {workers} workers on http://{settings.web.host}:{port}/healthz", err=True)
    return Supervisor(lambda index: child_command(settings, index), workers).run(stop)


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def demo(host: str | None, port: int | None) -> None:
    """Serve with the example roster loaded (embedded broker, SQLite and Twilio sandbox unless configured).

    With the Twilio sandbox and no SMS_GATEWAY_URL, an SMS Gateway for Android stand-in runs
    beside it, so +62 responders are paged, and reply, by two-way SMS through the "gateway";
    and without a WhatsApp sender, WhatsApp runs on the sandbox too (AMB-01 prefers it).
    """
    from responders import whatsapp

    overrides = _web_overrides(host, port)
    configured = _settings(overrides)
    if configured.twilio.account_sid is None:
        overrides["twilio"] = {"sandbox": True}
        if configured.sms_gateway.url is None:
            overrides["sms_gateway"] = {"sandbox": True}
        if configured.whatsapp.from_number is None:
            overrides["whatsapp"] = {"from_number": whatsapp.SANDBOX_SENDER, "templates": whatsapp.SANDBOX_TEMPLATES}
    _serve(_settings(overrides), roster=EXAMPLE_ROSTER)


def _serve(settings: Settings, roster: Path | None, *, worker: bool = False) -> None:
    """One process; ``worker``: a child of --workers (migrated already, sharing the web port)."""
    from dispatch.service import ConfigurationError, DispatchService, check_phone_provider

    try:
        check_phone_provider(settings)  # before anything starts: one line, nothing touched
    except ConfigurationError as exc:
        click.echo(f"dispatch: {exc}", err=True)
        sys.exit(2)
    service = DispatchService(settings, migrate=not worker, reuse_port=worker)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        service.start()
        if roster is not None:
            _import_roster(service.sessions, roster)
        click.echo(f"dispatch is running: http://{settings.web.host}:{service.web_port}/healthz", err=True)
        stop.wait()
    finally:
        log.info("shutting down")
        service.stop()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations (serve does this too)."""
    from dispatch import database
    from foundation.db import make_engine

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    database.upgrade(engine)
    click.echo(f"database at revision {database.current_revision(engine)}")


@main.group()
def roster() -> None:
    """Units, supervisors and devices."""


@roster.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def roster_import(file: Path) -> None:
    """Upsert every entry of FILE in one transaction (nothing is imported on any error)."""
    from dispatch import database
    from foundation.db import make_engine, make_session_factory

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    database.upgrade(engine)
    _import_roster(make_session_factory(engine), file)


def _import_roster(sessions: Any, file: Path) -> None:
    from dispatch.roster import RosterError, apply_roster, load_roster
    from foundation.db import transaction

    try:
        parsed = load_roster(file)
    except RosterError as exc:
        click.echo(f"dispatch: {exc}", err=True)
        sys.exit(2)
    with transaction(sessions) as session:
        counts = apply_roster(session, parsed)
    click.echo(
        f"roster {file.name}: {counts['units']} units, {counts['supervisors']} supervisors, "
        f"{counts['devices']} devices",
        err=True,
    )


@main.group()
def simulate() -> None:
    """Publish messages like a real device would (for demos and drills)."""


def _broker_url(url: str | None) -> str:
    settings = _settings()
    from devices.broker import embedded_url

    return url or settings.mqtt.url or embedded_url(settings.data_dir, settings.mqtt.embedded_port)


def _send(url: str, device_id: str, kind: str, body: dict[str, Any], *, wait_for: str | None) -> None:
    from devices.simulator import SimulatedDevice

    with SimulatedDevice(url, device_id, listen=wait_for is not None) as device:
        device.publish(kind, body)
        click.echo(f"published to devices/{device_id}/{kind}: {json.dumps(body)}")
        if wait_for is not None:
            try:
                click.echo(f"status: {json.dumps(device.wait_status(wait_for))}")
            except TimeoutError as exc:
                click.echo(f"no status yet: {exc}", err=True)
                sys.exit(1)


@simulate.command("press")
@click.option("--device", "device_id", required=True, help="Device id, e.g. BTN-0001")
@click.option("--press-id", default=None, help="Reuse to simulate a device retry (default: random)")
@click.option("--lat", type=float, default=None)
@click.option("--lon", type=float, default=None)
@click.option("--service", type=click.Choice(["police", "disaster", "ambulance"]), default=None)
@click.option("--battery", type=click.IntRange(0, 100), default=None)
@click.option("--url", default=None, help="Broker URL (default: the configured or embedded broker)")
@click.option("--no-wait", is_flag=True, help="Do not wait for the backend's status reply")
def simulate_press(
    device_id: str,
    press_id: str | None,
    lat: float | None,
    lon: float | None,
    service: str | None,
    battery: int | None,
    url: str | None,
    no_wait: bool,
) -> None:
    """Press the panic button of DEVICE and print the backend's status reply."""
    from foundation.clock import utcnow

    body: dict[str, Any] = {"press_id": press_id or uuid.uuid4().hex[:12], "ts": utcnow().isoformat()}
    extra = {"lat": lat, "lon": lon, "service": service, "battery": battery}
    body.update({k: v for k, v in extra.items() if v is not None})
    _send(_broker_url(url), device_id, "press", body, wait_for=None if no_wait else body["press_id"])


@simulate.command("cancel")
@click.option("--device", "device_id", required=True)
@click.option("--press-id", required=True)
@click.option("--url", default=None)
def simulate_cancel(device_id: str, press_id: str, url: str | None) -> None:
    """Cancel a press of DEVICE."""
    from foundation.clock import utcnow

    body = {"press_id": press_id, "ts": utcnow().isoformat()}
    _send(_broker_url(url), device_id, "cancel", body, wait_for=press_id)


@simulate.command("heartbeat")
@click.option("--device", "device_id", required=True)
@click.option("--battery", type=click.IntRange(0, 100), default=90)
@click.option("--rssi", type=int, default=-70)
@click.option("--url", default=None)
def simulate_heartbeat(device_id: str, battery: int, rssi: int, url: str | None) -> None:
    """Send a heartbeat from DEVICE."""
    from foundation.clock import utcnow

    body = {"ts": utcnow().isoformat(), "battery": battery, "rssi": rssi}
    _send(_broker_url(url), device_id, "heartbeat", body, wait_for=None)


@main.group()
def users() -> None:
    """Console and API users: call-takers, dispatchers, admins."""


def _sessions() -> Any:
    from dispatch import database
    from foundation.db import make_engine, make_session_factory

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    database.upgrade(engine)
    return make_session_factory(engine)


@users.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["call_taker", "dispatcher", "admin", "metrics"]),
    required=True,
    help="metrics: reads /metrics and nothing else (a Prometheus scraper)",
)
@click.option("--name", default=None, help="Full name (default: the username)")
@click.option("--language", type=click.Choice(["id", "en"]), default="id", show_default=True)
@click.option("--password", default=None, help="Console password; prompted for when --prompt-password is given")
@click.option("--prompt-password", is_flag=True, help="Ask for the password without echo")
def users_add(
    username: str, role: str, name: str | None, language: str, password: str | None, prompt_password: bool
) -> None:
    """Add (or update the role of) USERNAME."""
    from sqlalchemy import select

    from dispatch.auth import clear_login_blocks, hash_password, password_problem
    from dispatch.console.security import end_sessions
    from dispatch.models import User
    from foundation.clock import utcnow
    from foundation.db import transaction

    if prompt_password:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if password is not None and (problem := password_problem(password)):
        click.echo(f"dispatch: {problem}; user {username} not changed", err=True)
        sys.exit(2)
    with transaction(_sessions()) as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        user = user or User(username=username)
        user.name, user.role, user.language, user.active = name or user.name or username, role, language, True
        session.add(user)
        if password:
            user.password_hash = hash_password(password)
            session.flush()
            end_sessions(session, user.id, utcnow())
            # A new password is also how an admin lets a blocked user back in at once.
            clear_login_blocks(session, username)
    click.echo(f"user {username}: {role}")


@users.command("remove")
@click.argument("username")
def users_remove(username: str) -> None:
    """Deactivate USERNAME and revoke every token (the audit trail keeps the name)."""
    from sqlalchemy import select, update

    from dispatch.models import ApiToken, User
    from foundation.clock import utcnow
    from foundation.db import transaction

    with transaction(_sessions()) as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is None:
            click.echo(f"dispatch: no user {username!r}", err=True)
            sys.exit(2)
        user.active = False
        session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    click.echo(f"user {username} deactivated, tokens revoked")


@users.command("token")
@click.argument("username")
@click.option("--label", default=None, help="What the token is for, e.g. the call-center integration")
def users_token(username: str, label: str | None) -> None:
    """Issue a new API token for USERNAME; it is printed once and stored only as a hash."""
    from sqlalchemy import select

    from dispatch.auth import issue_token
    from dispatch.models import User
    from foundation.clock import utcnow
    from foundation.db import transaction

    with transaction(_sessions()) as session:
        user = session.execute(
            select(User).where(User.username == username, User.active.is_(True))
        ).scalar_one_or_none()
        if user is None:
            click.echo(f"dispatch: no active user {username!r}", err=True)
            sys.exit(2)
        token = issue_token(session, user, label, utcnow())
    click.echo(token)


@users.command("list")
def users_list() -> None:
    """Every user with role and state."""
    from sqlalchemy import select

    from dispatch.models import User

    with _sessions()() as session:
        for user in session.execute(select(User).order_by(User.username)).scalars():
            click.echo(f"{user.username}\t{user.role}\t{'active' if user.active else 'removed'}\t{user.name}")


@main.command("dead-letters")
@click.option("--limit", default=20, show_default=True)
def dead_letters(limit: int) -> None:
    """Show the most recent dead letters with their reasons."""
    from sqlalchemy import select

    from dispatch.models import InboundMessage
    from foundation.db import make_engine, make_session_factory

    settings = _settings()
    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        rows = session.execute(
            select(InboundMessage)
            .where(InboundMessage.outcome == "dead_letter")
            .order_by(InboundMessage.id.desc())
            .limit(limit)
        ).scalars()
        for row in rows:
            click.echo(f"{row.received_at.isoformat()} {row.topic} ({row.payload_size} B): {row.reason}")


if __name__ == "__main__":
    main()
