"""Typed settings: defaults file, optional overlay file, then environment overrides.

Precedence (later wins): ``config/default.yaml`` -> the file named by
``DISPATCH_CONFIG`` -> ``DISPATCH__SECTION__KEY`` variables -> the named
shortcuts ``DISPATCH_DATABASE_URL`` and ``DISPATCH_MQTT_URL``.
A bad value raises :class:`SettingsError` naming the key and the value, so the
program stops at start-up instead of failing at 3 a.m. on first use.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from foundation.private_files import create_private_file, private_dir

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
ENV_PREFIX = "DISPATCH__"
SHORTCUTS = {
    "DISPATCH_DATABASE_URL": ("database", "url"),
    "DISPATCH_MQTT_URL": ("mqtt", "url"),
    "DISPATCH_PUBLIC_URL": ("public_url",),
    "DISPATCH_SECRET_KEY": ("secret_key",),
    "TWILIO_ACCOUNT_SID": ("twilio", "account_sid"),
    "TWILIO_AUTH_TOKEN": ("twilio", "auth_token"),
    "TWILIO_FROM_NUMBER": ("twilio", "from_number"),
    "TWILIO_API_BASE": ("twilio", "api_base"),
    "SMS_GATEWAY_URL": ("sms_gateway", "url"),
    "SMS_GATEWAY_USERNAME": ("sms_gateway", "username"),
    "SMS_GATEWAY_PASSWORD": ("sms_gateway", "password"),
    "SMS_GATEWAY_SIGNING_KEY": ("sms_gateway", "signing_key"),
    "WHATSAPP_FROM_NUMBER": ("whatsapp", "from_number"),
}
Service = Literal["police", "disaster", "ambulance"]


class SettingsError(Exception):
    """A setting is missing, unknown or invalid; the message names key and value."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        return value


class MqttSettings(_Section):
    url: str | None = None
    # Unset: the username in ``url`` (the shipped Mosquitto config makes the client id the
    # username anyway), else "dispatch-1".
    client_id: str = Field(default="dispatch-1", min_length=1, max_length=64)
    shared_group: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=600)
    connect_timeout_s: float = Field(default=10, gt=0, le=120)
    reconnect_min_s: float = Field(default=1, gt=0)
    reconnect_max_s: float = Field(default=30, gt=0)
    max_payload_bytes: int = Field(default=65536, ge=1024)
    embedded_port: int = Field(default=18830, ge=1, le=65535)
    handler_attempts: int = Field(default=3, ge=1, le=10)
    # Messages already waiting are handled in one transaction (one commit), up to this many;
    # 1 = one transaction per message. Never waits for more to arrive.
    batch_max: int = Field(default=32, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _mqtt_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must look like mqtt://[user:pass@]host[:port] or mqtts://...")
        return value

    @model_validator(mode="before")
    @classmethod
    def _client_id_from_user(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("client_id") is None:
            url = data.get("url")
            user = urlsplit(url).username if isinstance(url, str) else None
            data = {**data, "client_id": unquote(user) if user else "dispatch-1"}
        return data


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Larger request bodies get 413 (webhooks, API calls and console forms are a few kB).
    max_content_length: int = Field(default=1_048_576, ge=1024)
    # Request threads for webhooks, the API and pages; console event streams have their own.
    threads: int = Field(default=16, ge=2, le=256)
    # Open connections beyond this wait in the listen backlog (bounded by the open-file limit).
    connection_limit: int = Field(default=1000, ge=10)
    # A connection silent this long with no request in service (e.g. half-sent) is closed.
    channel_timeout_s: int = Field(default=30, ge=1)
    cleanup_interval_s: int = Field(default=5, ge=1)
    # Console event streams (/console/events): per login session and per process; over a cap
    # the console polls instead. Each open stream holds one thread of its own pool.
    event_streams_per_session: int = Field(default=8, ge=1)
    event_streams_total: int = Field(default=64, ge=1, le=1000)
    # The reverse proxy in front (its address, e.g. 127.0.0.1): only from it is X-Forwarded-For
    # believed for the client's address (the login throttle counts per client address).
    trusted_proxy: str | None = None


class IntakeSettings(_Section):
    cancel_grace_s: float = Field(default=30, ge=0)


class DeviceSettings(_Section):
    supervision_interval_s: float = Field(default=900, gt=0)
    low_battery_pct: int = Field(default=20, ge=0, le=100)
    health_check_every_s: float = Field(default=60, gt=0)


class RetentionSettings(_Section):
    # Inbound MQTT log rows not linked to an incident (heartbeats, GPS fixes, unit status).
    routine_days: int = Field(default=14, ge=0)
    # Dead letters not linked to an incident; 0 keeps them forever.
    dead_letter_days: int = Field(default=90, ge=0)
    run_every_s: float = Field(default=3600, gt=0)


class WatchdogSettings(_Section):
    # A scheduler job, or the MQTT handler with messages waiting, that makes no progress for
    # this long is stalled: /healthz answers 503 and the log says so.
    stall_after_s: float = Field(default=60, gt=0)
    # A lost MQTT session keeps /healthz "degraded" this long, so monitoring sees it.
    session_lost_alarm_s: float = Field(default=3600, ge=0)


class TwilioSettings(_Section):
    """Twilio credentials come from the environment; the built-in sandbox only when asked for."""

    account_sid: str | None = Field(default=None, pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretStr | None = None
    from_number: str = Field(default="+15005550006", pattern=r"^\+[1-9]\d{6,14}$")
    api_base: str | None = None
    timeout_s: float = Field(default=10, gt=0, le=60)
    concurrency: int = Field(default=4, ge=1, le=32)  # API calls in flight at once from one process
    # Transient failures (429, 5xx, timeouts) are retried for as long as a page is useful
    # (sms_validity_s after it was written), waiting retry_backoff_s, doubling, at most
    # retry_max_backoff_s (with jitter), or longer when the provider says Retry-After.
    retry_backoff_s: float = Field(default=1, ge=0, le=60)
    retry_max_backoff_s: float = Field(default=4, gt=0, le=300)
    # A row claimed by a sender that has not reported back after this long belongs to a dead
    # sender: it is put in doubt (looked up before any resend). null: 2 x timeout_s + 10 s.
    claim_lease_s: float | None = Field(default=None, gt=0, le=3600)
    # A provider channel failing for this long gets the supervisors told through any channel
    # that still works (and the console's banner says so from the first failure).
    outage_alert_after_s: float = Field(default=60, gt=0)
    # A page still "queued"/"ringing"... this long after it went out lost its final callback:
    # the auditor marks it "unconfirmed" (true) rather than leave it ringing on the console.
    final_state_within_s: float = Field(default=1800, gt=0)
    sms_validity_s: int = Field(default=120, ge=1, le=36000)
    error_replies_per_hour: int = Field(default=5, ge=0)
    # The built-in Twilio-compatible API and phone simulator (``dispatch demo``, ``serve --sandbox``).
    # It lists every SMS with live one-tap links and accepts unsigned posts: never in production.
    sandbox: bool = False

    @property
    def lease_s(self) -> float:
        return self.claim_lease_s if self.claim_lease_s is not None else 2 * self.timeout_s + 10

    @model_validator(mode="after")
    def _both_or_neither(self) -> TwilioSettings:
        # Half a set of credentials used to fall back to the sandbox silently, in production.
        if self.account_sid and not self.auth_token:
            raise ValueError("TWILIO_AUTH_TOKEN is required when TWILIO_ACCOUNT_SID is set")
        if self.auth_token and not self.account_sid:
            raise ValueError("TWILIO_ACCOUNT_SID is required when TWILIO_AUTH_TOKEN is set")
        if self.sandbox and self.account_sid:
            raise ValueError("the built-in sandbox (twilio.sandbox) and a Twilio account exclude each other")
        return self


class SmsGatewaySettings(_Section):
    """SMS Gateway for Android (local-server mode): two-way SMS through a local SIM.

    Without a URL it is not used. Credentials and the webhook signing key come from the
    environment (SMS_GATEWAY_USERNAME, SMS_GATEWAY_PASSWORD, SMS_GATEWAY_SIGNING_KEY).
    """

    url: str | None = None  # e.g. http://192.168.1.20:8080 (what the app shows under "Local server")
    username: str | None = None
    password: SecretStr | None = None
    signing_key: SecretStr | None = None
    timeout_s: float = Field(default=10, gt=0, le=60)
    # A webhook whose X-Timestamp is further than this from our clock is refused (replays).
    max_clock_skew_s: float = Field(default=300, gt=0)
    # Country rule: SMS to numbers starting with these go through the gateway first (then Twilio,
    # send-only, with the one-tap link); a responder's own `channels` in the roster come first.
    countries: tuple[str, ...] = ("+62",)
    # Register our webhook URLs on the gateway at start (else register them by hand, see README).
    register_webhooks: bool = True
    # A local stand-in for the app, mounted beside the Twilio sandbox's phone simulator
    # (``dispatch demo``): credentials and signing key generated at start. Never in production.
    sandbox: bool = False

    @model_validator(mode="after")
    def _complete(self) -> SmsGatewaySettings:
        if self.sandbox and self.url:
            raise ValueError("the SMS gateway stand-in (sms_gateway.sandbox) and SMS_GATEWAY_URL exclude each other")
        if self.url and not (self.username and self.password and self.signing_key):
            raise ValueError(
                "SMS_GATEWAY_USERNAME, SMS_GATEWAY_PASSWORD and SMS_GATEWAY_SIGNING_KEY "
                "are required with SMS_GATEWAY_URL"
            )
        return self


class WhatsAppSettings(_Section):
    """WhatsApp through the Twilio account (same credentials): used only when ``from_number`` is set.

    A first alert must be the template WhatsApp approved (README "Responders in Indonesia"):
    its Content SID per responder language.
    """

    from_number: str | None = Field(default=None, pattern=r"^\+[1-9]\d{6,14}$")  # the WhatsApp sender
    templates: dict[str, str] = {}  # language (id, en) -> Content SID (HX...) of the alert template

    @model_validator(mode="after")
    def _templates_for_both(self) -> WhatsAppSettings:
        if set(self.templates) - {"id", "en"}:
            raise ValueError("whatsapp.templates: only the languages id and en")
        if self.from_number and set(self.templates) != {"id", "en"}:
            raise ValueError("whatsapp.templates needs the alert template's Content SID for id and en")
        return self


class EscalationStep(_Section):
    after_s: float = Field(ge=0)
    action: Literal["notify_unit", "next_unit", "supervisor"]
    channels: tuple[Literal["sms", "chat", "voice"], ...] = Field(default=("sms",), min_length=1)


class EscalationSettings(_Section):
    tick_s: float = Field(default=1, gt=0, le=1)
    batch_size: int = Field(default=20, ge=1, le=500)
    repeat: int = Field(default=1, ge=0, le=10)
    round_gap_s: float = Field(default=30, ge=0)
    auditor_every_s: float = Field(default=10, gt=0)
    overdue_after_s: float = Field(default=10, gt=0)
    max_fix_age_s: float = Field(default=120, gt=0)
    link_ttl_s: float = Field(default=3600, gt=0)
    resident_sms: bool = False
    policies: dict[Service, tuple[EscalationStep, ...]] = {}

    @field_validator("policies")
    @classmethod
    def _ordered(cls, policies: dict[str, tuple[EscalationStep, ...]]) -> dict[str, tuple[EscalationStep, ...]]:
        for service, steps in policies.items():
            if not steps:
                raise ValueError(f"{service}: a policy needs at least one step")
            if any(b.after_s < a.after_s for a, b in itertools.pairwise(steps)):
                raise ValueError(f"{service}: steps must be in order of after_s")
        return policies


class GeocodingSettings(_Section):
    """Where free-text addresses from 112 calls get coordinates."""

    kind: Literal["gazetteer", "nominatim"] = "gazetteer"
    gazetteer_path: Path = Path(__file__).resolve().parent.parent / "config" / "gazetteer.yaml"
    nominatim_domain: str | None = None  # e.g. nominatim.pemkot.example:8080 (self-hosted)
    nominatim_scheme: Literal["http", "https"] = "https"
    user_agent: str = "probolinggo-dispatch"
    timeout_s: float = Field(default=5, gt=0, le=30)
    attempts: int = Field(default=3, ge=1, le=5)
    # south, west, north, east: a result outside is treated as "not found", never guessed.
    bounds: tuple[float, float, float, float] = (-7.86, 113.13, -7.68, 113.29)
    # A gazetteer match less sure than this (ambiguous, or parts of the address that disagree)
    # is not dispatched automatically: the call waits for a call-taker to set the location.
    auto_dispatch_min_confidence: float = Field(default=0.6, ge=0, le=1)

    @model_validator(mode="after")
    def _domain_for_nominatim(self) -> GeocodingSettings:
        if self.kind == "nominatim" and not self.nominatim_domain:
            raise ValueError("geocoding.nominatim_domain is required when geocoding.kind is nominatim")
        return self


OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'


class ConsoleSettings(_Section):
    """The web console's map: OpenStreetMap's standard tiles unless a (self-hosted) tile server is set;
    null or "" means markers on a plain grid (no network needed)."""

    tile_url: str | None = OSM_TILES  # e.g. https://tiles.pemkot.example/{z}/{x}/{y}.png (self-hosted)
    tile_attribution: str = OSM_ATTRIBUTION


class Settings(_Section):
    """All settings of one dispatch process."""

    data_dir: Path = Path("./var")
    timezone: str = "Asia/Jakarta"
    public_url: str | None = None
    # Signs one-tap links and console sessions (DISPATCH_SECRET_KEY). Without one, a random key
    # is generated once and kept in data_dir/secret_key (fine for one machine, not for a cluster).
    secret_key: SecretStr | None = None
    database: DatabaseSettings = DatabaseSettings()
    mqtt: MqttSettings = MqttSettings()
    web: WebSettings = WebSettings()
    intake: IntakeSettings = IntakeSettings()
    devices: DeviceSettings = DeviceSettings()
    retention: RetentionSettings = RetentionSettings()
    watchdog: WatchdogSettings = WatchdogSettings()
    twilio: TwilioSettings = TwilioSettings()
    sms_gateway: SmsGatewaySettings = SmsGatewaySettings()
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    escalation: EscalationSettings = EscalationSettings()
    geocoding: GeocodingSettings = GeocodingSettings()
    console: ConsoleSettings = ConsoleSettings()

    @model_validator(mode="after")
    def _stand_ins_together(self) -> Settings:
        # The gateway stand-in lives in the phone simulator: a server paging real phones never gets it.
        if self.sms_gateway.sandbox and not self.twilio.sandbox:
            raise ValueError("sms_gateway.sandbox needs the built-in Twilio sandbox (dispatch demo)")
        return self

    @property
    def outbox(self) -> TwilioSettings:
        """The outbox's knobs (concurrency, timeouts, retries, lease, validity), for every provider.

        They are read from the ``twilio:`` section, where existing configuration files have them.
        """
        return self.twilio

    @property
    def local_sms_countries(self) -> tuple[str, ...]:
        """The country rule of dispatch/routing.py: numbers whose SMS go through the local gateway first."""
        return self.sms_gateway.countries

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("timezone")
    @classmethod
    def _real_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown IANA time zone") from exc
        return value

    @property
    def database_url(self) -> str:
        """The configured database URL, or the default SQLite file in ``data_dir``."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'dispatch.sqlite3').resolve()}"

    @property
    def local_zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def signing_key(self) -> bytes:
        """The secret for links and sessions; generated once into data_dir when not configured."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        path = private_dir(self.data_dir) / "secret_key"
        # Created 0600 in one step (never readable by others, not even for a moment); when two
        # processes race, the second reads what the first wrote.
        create_private_file(path, secrets.token_hex(32))
        return path.read_text().strip().encode()

    def public_base(self, bound_port: int | None = None) -> str:
        """Base of every callback URL and of webhook signature checks."""
        if self.public_url:
            return self.public_url
        return f"http://{self.web.host}:{bound_port or self.web.port}"


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build validated settings from files and environment.

    ``overrides`` (nested dict) wins over everything; tests and the CLI use it.
    """
    env = os.environ if environ is None else environ
    merged: dict[str, Any] = _read_yaml(DEFAULTS_FILE)
    overlay = env.get("DISPATCH_CONFIG")
    if overlay:
        _deep_merge(merged, _read_yaml(Path(overlay)))
    _deep_merge(merged, _from_environment(env))
    if overrides:
        _deep_merge(merged, dict(overrides))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, merged)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping at the top level")
    return data


def _from_environment(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part)
        if not path:
            continue
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        # An empty variable means "unset", so DISPATCH_MQTT_URL= falls back to the embedded broker.
        node[path[-1]] = value if value != "" else None
    # Shortcuts beat the generic form: apply them last.
    for name, path in SHORTCUTS.items():
        if name in env:
            node = tree
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = env[name] or None
    return tree


def _deep_merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


SECRET_WORDS = ("token", "password", "secret")


def _redact(key: str, value: Any) -> Any:
    """Keep secrets out of error messages (they end up in logs and terminals)."""
    if isinstance(value, Mapping):
        return {k: _redact(f"{key}.{k}", v) for k, v in value.items()}
    if value is not None and any(word in key.lower() for word in SECRET_WORDS):
        return "***"
    if isinstance(value, str) and "://" in value and "@" in value:
        parts = urlsplit(value)
        if parts.password:
            return value.replace(f":{parts.password}@", ":***@")
    return value


def _describe(exc: ValidationError, merged: Mapping[str, Any]) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        value = _redact(key, error.get("input", _lookup(merged, error["loc"])))
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key} = {value!r}")
        elif isinstance(value, Mapping):
            # A rule across a whole section: its message names the keys, the section's dump would bury it.
            lines.append(f"settings {key}: {error['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"setting {key} = {value!r}: {error['msg']}")
    if len(lines) == 1:
        return f"invalid settings: {lines[0]}"
    return "invalid settings:\n  " + "\n  ".join(lines)


def _lookup(tree: Mapping[str, Any], loc: tuple[int | str, ...]) -> Any:
    node: Any = tree
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
