"""Wiring one dispatch process: database, broker, MQTT gateway, engine, scheduler and web server.

Everything is created here and passed down explicitly; nothing connects at import.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from flask import Blueprint
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from waitress.server import create_server

from devices.broker import EmbeddedBroker
from devices.gateway import MqttGateway
from dispatch import database
from dispatch.auditor import audit
from dispatch.calls import CallDesk
from dispatch.device_health import HealthPolicy, check_devices
from dispatch.escalation import EscalationEngine
from dispatch.geocoding import make_geocoder
from dispatch.inbound import SUBSCRIPTIONS, InboundRouter
from dispatch.metrics import Metrics
from dispatch.outbox import Outbox
from dispatch.retention import Purged, RetentionPolicy, purge_inbound
from dispatch.web import WebContext, create_app
from foundation.clock import utcnow
from foundation.db import make_engine, make_session_factory, transaction
from foundation.settings import Settings
from responders.channels import TwilioChannels
from responders.sandbox import SandboxStore, create_sandbox_blueprint
from responders.twilio_client import make_twilio_client

log = logging.getLogger(__name__)

SANDBOX_PREFIX = "/sandbox/twilio"
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
    engine: Engine = field(init=False)
    sessions: sessionmaker[Session] = field(init=False)
    broker: EmbeddedBroker | None = field(init=False, default=None)
    gateway: MqttGateway = field(init=False)
    escalation: EscalationEngine = field(init=False)
    outbox: Outbox = field(init=False)
    calls: CallDesk = field(init=False)
    scheduler: BackgroundScheduler = field(init=False)
    sandbox: SandboxStore | None = field(init=False, default=None)
    twilio_auth_token: str = field(init=False, default="")  # validates webhook signatures
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)
    web_port: int = field(init=False, default=0)
    web_server: Any = field(init=False, default=None)
    _web_thread: threading.Thread | None = field(init=False, default=None)

    @property
    def public_base(self) -> str:
        return self.settings.public_base(self.web_port)

    def start(self) -> None:
        """Migrate, connect, schedule and serve. Returns once everything is started."""
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.database_url)
        database.upgrade(self.engine)
        self.sessions = make_session_factory(self.engine)
        self.web_port = settings.web.port or _free_port(settings.web.host)

        channels, self.twilio_auth_token, extra_blueprints = self._phone_provider()
        self.escalation = EscalationEngine(self.sessions, settings, self._publish, lambda: self.public_base)
        self.outbox = Outbox(self.sessions, channels, settings, lambda: self.public_base)

        mqtt_url = settings.mqtt.url
        if mqtt_url is None:
            self.broker = EmbeddedBroker(settings.data_dir, settings.mqtt.embedded_port)
            mqtt_url = self.broker.start()
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
        )

        # The web server also hosts the Twilio webhooks (and the sandbox in demo mode).
        context = WebContext(
            settings=settings,
            engine=self.engine,
            sessions=self.sessions,
            metrics=self.metrics,
            mqtt_connected=lambda: self.gateway.connected,
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
        # Each open console holds one thread for its event stream (/console/events), so there are
        # threads to spare for them; the lookahead lets waitress notice a closed browser tab.
        self.web_server = create_server(
            app,
            host=settings.web.host,
            port=self.web_port,
            threads=32,
            channel_request_lookahead=1,
            # Behind the reverse proxy the peer is always the proxy; the client is what it forwards.
            trusted_proxy=settings.web.trusted_proxy,
            trusted_proxy_headers={"x-forwarded-for"} if settings.web.trusted_proxy else set(),
        )
        self._web_thread = threading.Thread(target=self._serve_web, name="web", daemon=True)
        self._web_thread.start()
        log.info("web console and API on http://%s:%s", settings.web.host, self.web_port)

        self.gateway.start()
        # APScheduler is only a clock: every due step and message is a row in our own tables,
        # and no APScheduler job store is shared between processes.
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
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

    def _phone_provider(self) -> tuple[TwilioChannels, str, list[tuple[Blueprint, str]]]:
        """Real Twilio when an account is configured, the built-in sandbox only when asked for; same SDK path.

        Raises ConfigurationError with neither: the sandbox publishes every page with its live
        one-tap links, so it is never the silent fallback of a production server.
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
            blueprint = create_sandbox_blueprint(
                self.sandbox,
                account_sid=account_sid,
                auth_token=token,
                webhook_base=lambda: self.public_base,
                twilio_number=twilio.from_number,
                stop_event=self._stopping,
            )
            blueprints.append((blueprint, SANDBOX_PREFIX))
            log.warning("twilio.sandbox: using the built-in Twilio sandbox (phones at %s/phones)", api_base)
        channels = TwilioChannels(
            partial(make_twilio_client, account_sid, token, api_base, timeout_s=twilio.timeout_s),
            twilio.from_number,
            sms_validity_s=twilio.sms_validity_s,
        )
        return channels, token, blueprints

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
        try:
            if self.escalation.run_due_steps():
                self._wake_at("outbox", utcnow())
        except Exception:
            log.exception("escalation steps failed; retrying at the next tick")
        finally:
            self._wake_at("steps", self.escalation.next_due_at())

    def send_notifications(self) -> None:
        """Outbox job: send due SMS and calls."""
        try:
            self.outbox.send_due()
        except Exception:
            log.exception("sending failed; retrying at the next tick")
        finally:
            self._wake_at("outbox", self.outbox.next_due_at())

    def wake(self) -> None:
        """Run both jobs now (after a commit that created due work)."""
        now = utcnow()
        self._wake_at("steps", now)
        self._wake_at("outbox", now)

    def _wake_at(self, job_id: str, when: datetime | None) -> None:
        # The "date job at the next due time": pull the job forward when work is due before it.
        if when is None or not hasattr(self, "scheduler") or not self.scheduler.running:
            return
        job = self.scheduler.get_job(job_id)
        if job is not None and job.next_run_time is not None and when < job.next_run_time:
            job.modify(next_run_time=max(when, utcnow()))

    def audit(self) -> list[str]:
        """Auditor job: stranded assignments, overdue steps, abandoned sends."""
        try:
            self.outbox.recover_abandoned()
            with transaction(self.sessions) as session:
                return audit(session, utcnow(), self.settings.escalation.overdue_after_s)
        except Exception:
            log.exception("audit failed; will retry")
            return []

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


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
