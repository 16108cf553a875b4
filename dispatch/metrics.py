"""Prometheus metrics, one registry per service instance (no process-wide globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.inbound = Counter(
            "dispatch_inbound_messages",
            "MQTT messages handled, by topic kind and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.receive_to_commit = Histogram(
            "dispatch_receive_to_commit_seconds",
            "Time from receiving an MQTT message to committing its effect",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.provider_up = Gauge(
            "dispatch_provider_up",
            "1 while the phone provider answers on this channel, 0 while it fails (5xx, 429, timeouts)",
            ["provider", "channel"],
            registry=self.registry,
        )
        self.provider_failures = Counter(
            "dispatch_provider_failures",
            "Requests to the phone provider that failed, by kind (transient, permanent)",
            ["provider", "channel", "kind"],
            registry=self.registry,
        )
        self.notifications_in_doubt = Counter(
            "dispatch_notifications_in_doubt",
            "Pages whose request may have reached the provider without an answer (looked up before any resend)",
            registry=self.registry,
        )
        self.escalation_behind = Gauge(
            "dispatch_escalation_behind_seconds",
            "How late the oldest due escalation step is (0 when the engine keeps up), at the last audit",
            registry=self.registry,
        )
        self.escalation_steps_due = Gauge(
            "dispatch_escalation_steps_due",
            "Escalation steps due and not yet executed, at the last audit",
            registry=self.registry,
        )
        self.mqtt_sessions_lost = Counter(
            "dispatch_mqtt_sessions_lost",
            "Reconnects on which the broker had no session for us: presses published meanwhile may be lost",
            registry=self.registry,
        )
