"""Wiring one dispatch process: database, broker, MQTT gateway, engine, scheduler and web server.

Everything is created here and passed down explicitly; nothing connects at import.
"""

from __future__ import annotations

import errno
import logging
import resource
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Blueprint
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher

from devices.broker import BrokerError, EmbeddedBroker
from devices.gateway import MqttGateway
from dispatch import database, routing
from dispatch.auditor import Backlog, audit, backlog, close_unconfirmed
from dispatch.calls import CallDesk
from dispatch.device_health import HealthPolicy, check_devices
from dispatch.escalation import EscalationEngine
from dispatch.geocoding import make_geocoder
from dispatch.inbound import SUBSCRIPTIONS, InboundRouter
from dispatch.metrics import Metrics
from dispatch.outbox import Outbox
from dispatch.retention import Purged, RetentionPolicy, purge_inbound
from dispatch.watchdog import Watchdog
from dispatch.web import WebContext, create_app, sms_gateway_hooks
from dispatch.workers import reuse_port_socket
from foundation.clock import as_utc, utcnow
from foundation.db import make_engine, make_session_factory, transaction
from foundation.private_files import private_dir
from foundation.settings import Settings, SmsGatewaySettings, WebSettings
from responders import whatsapp
from responders.channels import Channels, SendFailed, TwilioChannels
from responders.sandbox import SandboxStore, create_sandbox_blueprint
from responders.sandbox.sms_gateway import GatewayStore, create_sms_gateway_blueprint
from responders.sms_gateway import AndroidSmsGateway
from responders.twilio_client import make_twilio_client

log = logging.getLogger(__name__)

SANDBOX_PREFIX = "/sandbox/twilio"
SMS_GATEWAY_SANDBOX_PREFIX = "/sandbox/sms-gateway"
SANDBOX_ACCOUNT_SID = "AC" + "0" * 32


class ConfigurationError(Exception):
    """The settings cannot run a service (checked at start); the message says what to set."""


def check_phone_provider(settings: Settings) -> None:
    """Refuse to page through nothing: a Twilio account, or the sandbox asked for by name.

    The sandbox lists every page with its live one-tap links and takes unsigned posts, so it is
    never the silent fallback of a server whose credentials went missing.
    """
    if not settings.twilio.account_sid and not settings.twilio.sandbox:
        raise ConfigurationError(
            "no Twilio account: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, or try it out with "
            "`dispatch demo` or `dispatch serve --sandbox` (the built-in sandbox, never in production)"
        )


@dataclass
class DispatchService:
    """One running process. ``start`` brings every part up; ``stop`` takes them down."""

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    # A child of ``dispatch serve --workers N`` (dispatch/workers.py): its supervisor migrated the
    # database before starting it, and every child listens on the same web port.
    migrate: bool = True
    reuse_port: bool = False
    engine: Engine = field(init=False)
    sessions: sessionmaker[Session] = field(init=False)
    broker: EmbeddedBroker | None = field(init=False, default=None)
    gateway: MqttGateway = field(init=False)
    escalation: EscalationEngine = field(init=False)
    outbox: Outbox = field(init=False)
    calls: CallDesk = field(init=False)
    scheduler: BackgroundScheduler = field(init=False)
    sandbox: SandboxStore | None = field(init=False, default=None)
    sms_gateway_sandbox: GatewayStore | None = field(init=False, default=None)  # the demo's stand-in
    twilio_auth_token: str = field(init=False, default="")  # validates webhook signatures
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)
    # Set first in stop(): a job that reruns itself ends after its pass, though work keeps coming.
    _jobs_stopping: threading.Event = field(init=False, default_factory=threading.Event)
    web_port: int = field(init=False, default=0)
    web_server: Any = field(init=False, default=None)
    _web_thread: threading.Thread | None = field(init=False, default=None)
    watchdog: Watchdog = field(init=False)
    # Scheduler jobs running now, and those asked to run again as soon as they finish: a running
    # job is never pulled forward (APScheduler would skip it and warn).
    _running: set[str] = field(init=False, default_factory=set)
    _rerun: set[str] = field(init=False, default_factory=set)
    _jobs_lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    escalation_behind: Backlog = field(init=False, default=Backlog(due=0, behind_s=0.0))

    @property
    def public_base(self) -> str:
        return self.settings.public_base(self.web_port)

    def start(self) -> None:
        """Migrate, connect, schedule and serve. Returns once everything is started."""
        settings = self.settings
        private_dir(settings.data_dir)  # SQLite file, secret key, broker password: this user's only
        self.engine = make_engine(settings.database_url)
        if self.migrate:
            database.upgrade(self.engine)
        self.sessions = make_session_factory(self.engine)
        self.web_port = settings.web.port or _free_port(settings.web.host)

        providers, self.twilio_auth_token, extra_blueprints = self._phone_providers()
        settings = self.settings  # with the gateway stand-in's generated settings, in the demo
        self.escalation = EscalationEngine(self.sessions, settings, self._publish, lambda: self.public_base)
        self.watchdog = Watchdog(settings.watchdog.stall_after_s, lambda: self.gateway.stalled_for())
        self.outbox = Outbox(
            self.sessions,
            providers,
            settings,
            worker_id=settings.mqtt.client_id,
            metrics=self.metrics,
            progress=lambda: self.watchdog.beat("outbox"),
        )
        # Our own rows left mid-send by this worker's previous life: look them up now, not after the lease.
        self.outbox.recover_abandoned(at_start=True)

        mqtt_url = settings.mqtt.url
        if mqtt_url is None:
            self.broker = EmbeddedBroker(settings.data_dir, settings.mqtt.embedded_port)
            try:
                mqtt_url = self.broker.start()
            except BrokerError as exc:
                raise StartupError(f"dispatch: {exc}") from None
        geo = settings.geocoding
        geocoder = make_geocoder(
            geo.kind,
            gazetteer_path=str(geo.gazetteer_path),
            nominatim_domain=geo.nominatim_domain,
            nominatim_scheme=geo.nominatim_scheme,
            user_agent=geo.user_agent,
        )
        self.calls = CallDesk(settings, geocoder, self.escalation.start)
        router = InboundRouter(
            self.sessions,
            self._publish,
            settings,
            self.metrics,
            on_opened=self.escalation.start,
            wake=self.wake,
            calls=self.calls,
        )
        self.gateway = MqttGateway(
            url=mqtt_url,
            client_id=settings.mqtt.client_id,
            subscriptions=SUBSCRIPTIONS,
            handler=router,
            on_failure=router.record_failure,
            shared_group=settings.mqtt.shared_group,
            keepalive_s=settings.mqtt.keepalive_s,
            connect_timeout_s=settings.mqtt.connect_timeout_s,
            reconnect_min_s=settings.mqtt.reconnect_min_s,
            reconnect_max_s=settings.mqtt.reconnect_max_s,
            handler_attempts=settings.mqtt.handler_attempts,
            on_session_lost=self.metrics.mqtt_sessions_lost.inc,
            batch_handler=router.handle_batch,
            batch_max=settings.mqtt.batch_max,
        )

        # The web server also hosts the Twilio webhooks (and the sandbox in demo mode).
        context = WebContext(
            settings=settings,
            engine=self.engine,
            sessions=self.sessions,
            metrics=self.metrics,
            mqtt_connected=lambda: self.gateway.connected,
            health_details=self.health_details,
            public_base=lambda: self.public_base,
            twilio_auth_token=self.twilio_auth_token,
            signing_key=settings.signing_key(),
            clock=utcnow,
            publish=self._publish,
            wake=self.wake,
            calls=self.calls,
            stopping=self._stopping,
        )
        app = create_app(context, *extra_blueprints)
        self.web_server = make_web_server(app, settings.web, self.web_port, reuse_port=self.reuse_port)
        self._web_thread = threading.Thread(target=self._serve_web, name="web", daemon=True)
        self._web_thread.start()
        log.info("web console and API on http://%s:%s", settings.web.host, self.web_port)

        self._register_sms_gateway_webhooks()
        self.gateway.start()
        tick = settings.escalation.tick_s
        for job_id, every_s in (("steps", tick), ("outbox", tick), ("auditor", settings.escalation.auditor_every_s)):
            self.watchdog.watch(job_id, every_s)
        every_s = min(5.0, settings.watchdog.stall_after_s / 2)
        threading.Thread(target=self.watchdog.run, args=(self._stopping, every_s), name="watchdog", daemon=True).start()
        # APScheduler is only a clock: every due step and message is a row in our own tables,
        # and no APScheduler job store is shared between processes.
        self.scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1}, logger=_scheduler_log()
        )
        # Steps and sending are separate jobs so a burst of steps never starves the sending of
        # the pages they wrote (each job still runs one instance at a time).
        for job_id, job in (("steps", self.run_steps), ("outbox", self.send_notifications)):
            self.scheduler.add_job(
                job, "interval", seconds=settings.escalation.tick_s, id=job_id, next_run_time=utcnow()
            )
        self.scheduler.add_job(self.audit, "interval", seconds=settings.escalation.auditor_every_s, id="auditor")
        self.scheduler.add_job(
            self.check_device_health,
            "interval",
            seconds=settings.devices.health_check_every_s,
            id="device-health",
            next_run_time=utcnow(),
        )
        self.scheduler.add_job(
            self.purge_old_messages, "interval", seconds=settings.retention.run_every_s, id="retention"
        )
        self.scheduler.start()

    def _phone_providers(self) -> tuple[dict[str, Channels], str, list[tuple[Blueprint, str]]]:
        """The providers by key (dispatch/routing.py), Twilio's auth token, and blueprints to mount.

        Twilio: the real account when configured, the built-in sandbox only when asked for; same
        SDK path. Raises ConfigurationError with neither: the sandbox publishes every page with its
        live one-tap links, so it is never the silent fallback of a production server.
        The SMS gateway: when ``sms_gateway.url`` is set, or its stand-in beside the Twilio
        sandbox when ``sms_gateway.sandbox`` (the demo). WhatsApp: through the same Twilio
        account (or sandbox, which renders the alert template), when ``whatsapp.from_number`` is set.
        """
        twilio = self.settings.twilio
        blueprints: list[tuple[Blueprint, str]] = []
        if twilio.account_sid and twilio.auth_token:
            account_sid, token, api_base = (
                twilio.account_sid,
                twilio.auth_token.get_secret_value(),
                twilio.api_base,
            )
        else:
            check_phone_provider(self.settings)
            account_sid, token = SANDBOX_ACCOUNT_SID, secrets.token_hex(16)
            api_base = f"http://127.0.0.1:{self.web_port}{SANDBOX_PREFIX}"
            # Kept in the data dir: the phone simulator still shows every phone after a restart.
            self.sandbox = SandboxStore(self.settings.data_dir / "sandbox-twilio.json")
            if self.settings.sms_gateway.sandbox:
                blueprints.append((self._sms_gateway_stand_in(), SMS_GATEWAY_SANDBOX_PREFIX))
            blueprint = create_sandbox_blueprint(
                self.sandbox,
                account_sid=account_sid,
                auth_token=token,
                webhook_base=lambda: self.public_base,
                twilio_number=twilio.from_number,
                stop_event=self._stopping,
                sms_gateway_path=SMS_GATEWAY_SANDBOX_PREFIX if self.sms_gateway_sandbox is not None else None,
                send_only_prefixes=self.settings.sms_gateway.countries,
                content_templates=whatsapp.sandbox_templates(self.settings.whatsapp.templates),
            )
            blueprints.append((blueprint, SANDBOX_PREFIX))
            log.warning("twilio.sandbox: using the built-in Twilio sandbox (phones at %s/phones)", api_base)
        make_client = partial(make_twilio_client, account_sid, token, api_base, timeout_s=twilio.timeout_s)
        providers: dict[str, Channels] = {
            routing.TWILIO: TwilioChannels(make_client, twilio.from_number, lambda: self.public_base)
        }
        chat = self.settings.whatsapp
        if chat.from_number:
            providers[routing.WHATSAPP] = whatsapp.TwilioWhatsApp(
                make_client, chat.from_number, chat.templates, lambda: self.public_base
            )
        gateway = self.settings.sms_gateway
        if gateway.url and gateway.username and gateway.password:
            providers[routing.GATEWAY] = AndroidSmsGateway(
                gateway.url, gateway.username, gateway.password.get_secret_value(), timeout_s=gateway.timeout_s
            )
        return providers, token, blueprints

    def _sms_gateway_stand_in(self) -> Blueprint:
        """The demo's SMS Gateway for Android, on our own web server, with credentials made up now.

        The settings are rewritten as if SMS_GATEWAY_URL/USERNAME/PASSWORD/SIGNING_KEY pointed at
        it, so the provider, the webhook registration and the webhook's signature check are the
        production code paths. The secrets live as long as the process (never logged or written);
        the stand-in's message log is kept in the data dir (0600), like the Twilio sandbox's.
        """
        username, password, signing_key = (
            "demo-" + secrets.token_hex(4),
            secrets.token_urlsafe(18),
            secrets.token_urlsafe(32),
        )
        self.sms_gateway_sandbox = GatewayStore(path=self.settings.data_dir / "sandbox-sms-gateway.json")
        gateway: SmsGatewaySettings = self.settings.sms_gateway.model_copy(
            update={
                "url": f"http://127.0.0.1:{self.web_port}{SMS_GATEWAY_SANDBOX_PREFIX}",
                "username": username,
                "password": SecretStr(password),
                "signing_key": SecretStr(signing_key),
            }
        )
        self.settings = self.settings.model_copy(update={"sms_gateway": gateway})
        log.warning("sms_gateway.sandbox: using the SMS Gateway for Android stand-in at %s", gateway.url)
        return create_sms_gateway_blueprint(
            self.sms_gateway_sandbox,
            username=username,
            password=password,
            signing_key=signing_key,
            stop_event=self._stopping,
        )

    def _register_sms_gateway_webhooks(self) -> None:
        """Tell the SMS gateway where replies and delivery reports go (sms_gateway.register_webhooks)."""
        provider = self.outbox.provider(routing.GATEWAY)
        if not isinstance(provider, AndroidSmsGateway) or not self.settings.sms_gateway.register_webhooks:
            return
        url = f"{self.public_base}/sms-gateway/events"
        try:
            provider.register_webhooks(url, sms_gateway_hooks.EVENTS)
        except SendFailed as failure:
            log.error("could not register the SMS gateway webhooks at %s (%s): register them by hand", url, failure)

    def _serve_web(self) -> None:
        try:
            self.web_server.run()
        except OSError:
            # waitress's loop sees its sockets closed under it when stop() closes the server.
            if not self._stopping.is_set():
                raise

    # -- scheduler jobs (each guarded: an exception must never stop the clock) --

    def run_steps(self) -> None:
        """Steps job: execute due escalation steps, then wake the sender for what they wrote."""

        def once() -> bool:
            # The sender starts on each batch's pages as soon as that batch commits.
            return bool(self.escalation.run_due_steps(committed=lambda: self._wake_at("outbox", utcnow())))

        self._run_job("steps", once, self.escalation.next_due_at, "escalation steps failed; retrying at the next tick")

    def send_notifications(self) -> None:
        """Outbox job: send due SMS and calls."""

        def once() -> bool:
            return bool(self.outbox.send_due())

        self._run_job("outbox", once, self.outbox.next_due_at, "sending failed; retrying at the next tick")

    def _run_job(
        self, job_id: str, once: Callable[[], bool], next_due: Callable[[], datetime | None], failed: str
    ) -> None:
        """Run ``once`` again while it is asked to (a wake came) or its pass did work and more is due.

        The job reruns itself rather than asking the scheduler: APScheduler counts this run
        until the function has returned, so a run requested from inside it would be skipped
        (with a warning) and the work would wait for the next interval tick, up to ``tick_s``.
        A pass that did nothing is not repeated at once (a step whose incident is busy, say,
        stays due): the interval tick runs it again, so a stuck row never spins the job.
        """
        with self._jobs_lock:
            self._running.add(job_id)
        due: datetime | None = None
        try:
            while not self._jobs_stopping.is_set():
                self.watchdog.beat(job_id)
                try:
                    progressed = once()
                except Exception:
                    log.exception(failed)
                    progressed = False
                self.watchdog.beat(job_id)
                due = self._next_due(next_due)
                more_due = progressed and due is not None and as_utc(due) <= utcnow()
                with self._jobs_lock:
                    again = job_id in self._rerun or more_due
                    self._rerun.discard(job_id)
                    if not again:  # in the lock: a wake from now on goes to the scheduler
                        self._running.discard(job_id)
                        break
        finally:
            with self._jobs_lock:
                self._running.discard(job_id)
        if due is not None and as_utc(due) > utcnow():
            self._wake_at(job_id, due)  # a time in the future: this run has returned by then

    @contextmanager
    def _job(self, job_id: str) -> Iterator[None]:
        """Beat the watchdog when a job that does not rerun itself (the auditor) starts and ends."""
        self.watchdog.beat(job_id)
        try:
            yield
        finally:
            self.watchdog.beat(job_id)

    def _next_due(self, read: Callable[[], datetime | None]) -> datetime | None:
        try:
            return read()
        except Exception:
            return None  # the database is down: the interval trigger tries again within tick_s

    def wake(self) -> None:
        """Run both jobs now (after a commit that created due work)."""
        now = utcnow()
        self._wake_at("steps", now)
        self._wake_at("outbox", now)

    def _wake_at(self, job_id: str, when: datetime | None) -> None:
        # The "date job at the next due time": pull the job forward when work is due before it.
        if when is None or not hasattr(self, "scheduler") or not self.scheduler.running:
            return
        with self._jobs_lock:
            if job_id in self._running:
                if as_utc(when) <= utcnow():
                    self._rerun.add(job_id)  # it runs again the moment it finishes
                return
        job = self.scheduler.get_job(job_id)
        if job is not None and job.next_run_time is not None and when < job.next_run_time:
            job.modify(next_run_time=max(when, utcnow()))

    def audit(self) -> list[str]:
        """Auditor job: stranded assignments, overdue steps, abandoned sends, provider outages."""
        with self._job("auditor"):
            try:
                self.outbox.recover_abandoned()
                if self.outbox.alert_outages():
                    self._wake_at("outbox", utcnow())
                with transaction(self.sessions) as session:
                    now = utcnow()
                    close_unconfirmed(session, now, self.settings.twilio.final_state_within_s)
                    self._report_backlog(backlog(session, now))
                    return audit(session, now, self.settings.escalation.overdue_after_s)
            except Exception:
                log.exception("audit failed; will retry")
                return []

    def _report_backlog(self, behind: Backlog) -> None:
        """One alarm for the whole service when escalation runs late (a burst), not one per step."""
        self.metrics.escalation_behind.set(behind.behind_s)
        self.metrics.escalation_steps_due.set(behind.due)
        self.escalation_behind = behind
        if behind.behind_s > self.settings.escalation.overdue_after_s:
            log.warning("escalation is behind by %.0f s: %d steps due, not yet run", behind.behind_s, behind.due)

    def health_details(self) -> tuple[dict[str, str], dict[str, str]]:
        """(failing, degraded): what makes /healthz 503, and what it reports while still answering 200."""
        failing = self.watchdog.stalls() if hasattr(self, "watchdog") else {}
        degraded: dict[str, str] = {}
        if hasattr(self, "outbox"):
            for health in self.outbox.healths.values():
                for state in health.snapshot():
                    if state.down_since is not None:
                        since = state.down_since.astimezone(self.settings.local_zone).strftime("%H:%M:%S")
                        degraded[f"{health.provider} {state.channel}"] = f"unreachable since {since}, retrying"
            if self.outbox.unsaved:
                degraded["outbox"] = f"{self.outbox.unsaved} results waiting for the database"
        behind = self.escalation_behind
        if behind.behind_s > self.settings.escalation.overdue_after_s:
            degraded["escalation"] = f"behind by {behind.behind_s:.0f} s ({behind.due} steps due)"
        lost = self.gateway.session_lost_at if hasattr(self, "gateway") else None
        if lost is not None and (utcnow() - lost).total_seconds() < self.settings.watchdog.session_lost_alarm_s:
            local = lost.astimezone(self.settings.local_zone).strftime("%H:%M:%S")
            degraded["mqtt session"] = f"lost at {local}: presses published while disconnected may be lost"
        return failing, degraded

    def check_device_health(self) -> list[str]:
        """Device-health job: raise alerts for silent or low-battery buttons."""
        policy = HealthPolicy(self.settings.devices.supervision_interval_s, self.settings.devices.low_battery_pct)
        try:
            with transaction(self.sessions) as session:
                return check_devices(session, utcnow(), policy)
        except Exception:
            log.exception("device-health check failed; will retry at the next tick")
            return []

    def purge_old_messages(self) -> Purged:
        """Retention job: drop expired routine rows and dead letters from the inbound log."""
        retention = self.settings.retention
        try:
            return purge_inbound(
                self.sessions, utcnow(), RetentionPolicy(retention.routine_days, retention.dead_letter_days)
            )
        except Exception:
            log.exception("retention job failed; will retry at its next run")
            return Purged(0, 0)

    def stop(self, *, forget_mqtt_session: bool = False) -> None:
        """Stop the clock (finishing running jobs), then MQTT, then the web server and the broker.

        ``forget_mqtt_session`` also removes our session from the broker; only for
        tests and decommissioning, since a kept session is what holds messages
        for us while we are down.
        """
        # Jobs first, while the broker connection and the web server (Twilio's callbacks, the
        # sandbox) are still up for the work they finish; then stop taking new messages.
        self._jobs_stopping.set()  # the pass under way finishes; what is still due waits in the database
        if hasattr(self, "scheduler") and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if hasattr(self, "outbox"):
            self.outbox.close()
        if hasattr(self, "gateway"):
            self.gateway.stop(forget_session=forget_mqtt_session)
        self._stopping.set()  # ends event streams and the sandbox's callback retries
        if self.web_server is not None:
            # Let request threads finish before the sockets close: a thread finishing after close()
            # would write to a file descriptor that may already belong to something else.
            self.web_server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            self.web_server.close()
            if self._web_thread is not None:
                self._web_thread.join(timeout=5)
        if self.broker is not None:
            self.broker.stop()
        if hasattr(self, "engine"):
            self.engine.dispose()

    def _publish(self, topic: str, payload: bytes) -> None:
        self.gateway.publish(topic, payload, qos=1)


class StreamRoutingDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool for requests, with console event streams sent to a pool of their own.

    An event stream holds its thread for minutes; in one shared pool 32 of them starved Twilio's
    webhooks and /healthz (issue 12). waitress hands a connection to the dispatcher once a
    request on it is complete, so the request line decides the pool before any thread runs.
    """

    def __init__(self, threads: int, stream_threads: int) -> None:
        super().__init__()
        self.streams = ThreadedTaskDispatcher()
        self.streams.set_thread_count(stream_threads)
        self.set_thread_count(threads)

    def add_task(self, task: Any) -> None:
        requests = getattr(task, "requests", None)
        if requests and requests[0].command == "GET" and requests[0].path in STREAM_PATHS:
            self.streams.add_task(task)
        else:
            super().add_task(task)

    def shutdown(self, cancel_pending: bool = True, timeout: int = 5) -> bool:
        streams_done = self.streams.shutdown(cancel_pending=cancel_pending, timeout=timeout)
        return bool(super().shutdown(cancel_pending=cancel_pending, timeout=timeout)) and bool(streams_done)


STREAM_PATHS = frozenset({"/console/events"})
# Threads of the stream pool beyond the cap: they answer the refusals (429) at once.
SPARE_STREAM_THREADS = 4


def make_web_server(app: Any, web: WebSettings, port: int, *, reuse_port: bool = False) -> Any:
    """waitress for ``app`` with connection limits and timeouts from settings (see README, reverse proxy).

    ``reuse_port``: several worker processes listen on the same port (SO_REUSEPORT, Linux); the
    kernel spreads new connections across them.
    """
    # Every connection is a file descriptor: never allow more than the process may open.
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    connection_limit = web.connection_limit
    if soft_limit != resource.RLIM_INFINITY and connection_limit > soft_limit - 100:
        connection_limit = max(10, soft_limit - 100)
        log.warning(
            "web.connection_limit %d lowered to %d: the open-file limit is %d (ulimit -n)",
            web.connection_limit,
            connection_limit,
            soft_limit,
        )
    dispatcher = StreamRoutingDispatcher(web.threads, web.event_streams_total + SPARE_STREAM_THREADS)
    try:
        where: dict[str, Any] = (
            {"sockets": [reuse_port_socket(web.host, port)]} if reuse_port else {"host": web.host, "port": port}
        )
        return create_server(
            app,
            **where,
            _dispatcher=dispatcher,
            threads=web.threads,
            connection_limit=connection_limit,
            channel_timeout=web.channel_timeout_s,
            cleanup_interval=web.cleanup_interval_s,
            # waitress refuses (plain 413) what is far too large before buffering it; the app
            # refuses (JSON under /api) what is over web.max_content_length.
            max_request_body_size=2 * web.max_content_length,
            max_request_header_size=64 * 1024,
            # select() cannot watch descriptors above 1024; poll() can.
            asyncore_use_poll=True,
            # Reading the next request while one is served lets waitress notice a closed tab.
            channel_request_lookahead=1,
            # Behind the reverse proxy the peer is always the proxy; the client is what it forwards.
            trusted_proxy=web.trusted_proxy,
            trusted_proxy_headers={"x-forwarded-for"} if web.trusted_proxy else set(),
        )
    except OSError as exc:
        dispatcher.shutdown(timeout=1)
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"dispatch: port {port} on {web.host} is already in use; "
                "set web.port (or --port) to a free port or stop the other program"
            ) from None
        raise


class StartupError(SystemExit):
    """The service cannot start (a port is taken): one line for the operator, not a traceback.

    A SystemExit so that the command line prints exactly this message (exit status 1).
    """


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# The jobs that rerun themselves while work is due (DispatchService._run_job): the interval tick
# that finds one running is expected, and under load came every second as a WARNING.
_SELF_RERUNNING_JOBS = frozenset({"steps", "outbox"})
_SKIPPED_RUNNING = 'Execution of job "%s" skipped: maximum number of running instances'


class _ExpectedSkips(logging.Filter):
    """Drops APScheduler's "skipped: maximum number of running instances" for the self-rerunning jobs.

    A job that is stuck, rather than busy, is the watchdog's to report (/healthz 503).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_SKIPPED_RUNNING) or not isinstance(record.args, tuple):
            return True
        job = record.args[0] if record.args else None
        return getattr(job, "id", None) not in _SELF_RERUNNING_JOBS


def _scheduler_log() -> logging.Logger:
    """APScheduler's own logger, one level down, with the expected skips filtered out."""
    logger = logging.getLogger("apscheduler.scheduler.dispatch")
    if not any(isinstance(f, _ExpectedSkips) for f in logger.filters):
        logger.addFilter(_ExpectedSkips())
    return logger
