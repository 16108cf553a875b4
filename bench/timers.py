"""Timers benchmark: many pending escalation steps -> each fires on time, its SMS soon after.

Issue 11, goal 5: with 10,000 steps pending, a step fires <= 1 s after it is due (p99) and its SMS
reaches the Twilio-compatible server <= 1 s after the step ran.

A full service runs in this process (the Twilio-compatible server in a process of its own, see
bench/harness.py) with the one-step policy of bench/pipeline.py. Incidents are written straight
into the database through the engine's own ``EscalationEngine.start``: ``--steps`` steps pending
(default 10,000), of which ``--due`` (default 600) come due during the run at ``--rate`` per
second (default 10/s), the first ``--lead`` seconds after they are all written; the others are
due an hour later and only wait, as a city's timers do. Nothing but the scheduler's clock tells
the service that a step came due (no wake-up from intake): this measures the timers, not the
press path.

Printed for the steps that came due: due -> fired (the step's ``done_at``), fired -> SMS request
at the server, and due -> SMS; the ratios are to the scheduler's own tick (``escalation.tick_s``,
1 s: a step written without a wake-up may wait up to one tick).

Usage:
    python bench/timers.py --steps 2000 --due 300 --rate 20
    python bench/timers.py --database postgresql+psycopg://postgres@127.0.0.1:5432/bench \
                           --mqtt mqtt://127.0.0.1:1883

``--database postgresql...`` DROPS and recreates the schema ``public`` of that database first.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import harness
from sqlalchemy import func, select

from dispatch.models import EscalationStep, Incident, Notification
from foundation.db import transaction

# Incidents spread over the example roster's city (Probolinggo), so the matcher has real choices.
CENTRE = (-7.7543, 113.2159)
LATER_S = 3600  # the steps that only wait: due after the run


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument("--steps", type=int, default=10_000, help="pending steps (default 10,000)")
    parser.add_argument("--due", type=int, default=600, help="of those, how many come due during the run (600)")
    parser.add_argument("--rate", type=float, default=10, help="steps coming due per second (default 10)")
    parser.add_argument("--lead", type=float, default=5, help="seconds between the last write and the first due step")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for every SMS (default 600)")
    args = parser.parse_args()
    if args.steps < 1 or args.rate <= 0 or not 1 <= args.due <= args.steps:
        parser.error("--steps and --rate must be positive, --due between 1 and --steps")

    with harness.environment(args.database, args.mqtt) as env:
        web_port = harness.free_port()
        public_url = f"http://127.0.0.1:{web_port}"
        server = harness.ProviderServer("twilio", webhook_base=public_url)
        service = None
        try:
            settings = harness.service_settings(env, [server], "sms", public_url)
            service = harness.InProcessService(env, settings, web_port)
            service.start()
            print(
                f"backend={env.backend} broker={env.broker_label} steps pending={args.steps},"
                f" {args.due} of them due at {args.rate:g}/s"
            )
            print(f"  load average at the start: {harness.load_average()}")
            write_steps(service, args.steps, args.due, args.rate, args.lead)
            written = service.sql.read() if service.sql else (0, 0)  # our own writes are not the service's
            span = args.due / args.rate
            print(
                f"  {args.steps} steps pending; the first due at +{args.lead:g} s, the {args.due}th {span:.0f} s later"
            )
            complete = wait_for_pages(service, args.due, args.lead + span + args.timeout)
            report(service, server, complete, written)
        finally:
            if service is not None:
                service.stop()
            server.stop()


def write_steps(service: harness.InProcessService, count: int, due: int, rate: float, lead_s: float) -> datetime:
    """Incidents with their first step pending: ``due`` of them coming due one after another, the rest an hour on."""
    engine = service.service.escalation
    started = time.monotonic()
    first_due: datetime | None = None
    batch = 500
    for offset in range(0, count, batch):
        with transaction(service.service.sessions) as session:
            incidents = []
            for i in range(offset, min(count, offset + batch)):
                # Spread over ~3 km: a grid of points around the centre.
                lat = CENTRE[0] + ((i % 50) - 25) * 0.001
                lon = CENTRE[1] + ((i // 50 % 50) - 25) * 0.001
                incidents.append(
                    Incident(
                        source="press",
                        device_id=None,
                        press_id=f"timer-{i}",
                        service=harness.SERVICES[i % len(harness.SERVICES)],
                        state="received",
                        lat=lat,
                        lon=lon,
                        location_source="device_gps",
                        needs_review=False,
                        opened_at=datetime.now(UTC),
                    )
                )
            session.add_all(incidents)
            session.flush()
            if first_due is None:
                # Leave time for every write: the steps must all be pending before the first is due.
                write_s = (time.monotonic() - started) * count / len(incidents) + lead_s
                first_due = datetime.now(UTC) + timedelta(seconds=write_s)
            for i, incident in enumerate(incidents, start=offset):
                later = i / rate if i < due else LATER_S + i / rate
                engine.start(session, incident, first_due + timedelta(seconds=later))
    assert first_due is not None
    return first_due


def wait_for_pages(service: harness.InProcessService, steps: int, timeout_s: float) -> bool:
    """Until every step's SMS went out (the database, not the server: a shared broker brings others' presses)."""
    deadline = time.monotonic() + timeout_s
    shown = time.monotonic()
    while True:
        with service.service.sessions() as session:
            sent = session.execute(
                select(func.count(Notification.id))
                .join(Incident, Incident.id == Notification.incident_id)
                .where(Incident.press_id.like("timer-%"), Notification.provider_sid.is_not(None))
            ).scalar_one()
        if sent >= steps:
            return True
        now = time.monotonic()
        if now > deadline:
            return False
        if now - shown >= 10:
            shown = now
            print(f"    ... {sent}/{steps} SMS sent", flush=True)
        time.sleep(0.2)


def report(
    service: harness.InProcessService, server: harness.ProviderServer, complete: bool, written: tuple[int, int]
) -> None:
    arrivals = {arrival.key: arrival.at.wall for arrival in server.arrivals()}
    with service.service.sessions() as session:
        rows = session.execute(
            select(
                EscalationStep.due_at,
                EscalationStep.done_at,
                Notification.provider_sid,
                Notification.created_at,
                Notification.claimed_at,
            )
            .join(Incident, Incident.id == EscalationStep.incident_id)
            .outerjoin(Notification, Notification.step_id == EscalationStep.id)
            .where(Incident.press_id.like("timer-%"))
        ).all()
    now = datetime.now(UTC)
    rows = [row for row in rows if row[0] <= now]  # the steps that came due; the others only waited
    fired = [(done - due).total_seconds() * 1000 for due, done, *_ in rows if done is not None]
    to_sms = [
        (arrivals[sid] - done.timestamp()) * 1000 for _, done, sid, *_ in rows if done is not None and sid in arrivals
    ]
    due_to_sms = [(arrivals[sid] - due.timestamp()) * 1000 for due, _, sid, *_ in rows if sid in arrivals]
    # The stages of fired -> SMS: the page committed (written), a sender took it, the server had it.
    to_page = [(created - done).total_seconds() * 1000 for _, done, _, created, _ in rows if created and done]
    claimed = [(claim - created).total_seconds() * 1000 for *_, created, claim in rows if created and claim]
    tick_ms = service.service.settings.escalation.tick_s * 1000
    print(f"  every SMS arrived: {complete}; steps fired {len(fired)}/{len(rows)}, SMS matched {len(to_sms)}")
    stages = (
        ("due -> fired", fired),
        ("fired -> SMS at server", to_sms),
        ("  fired -> page written", to_page),
        ("  written -> claimed", claimed),
        ("due -> SMS", due_to_sms),
    )
    for label, values in stages:
        if values:
            p99 = harness.percentile(values, 99)
            print(f"    {label:24} {harness.summary(values)}  (p99 = {p99 / tick_ms:.2f} x the {tick_ms:.0f} ms tick)")
    late = sum(1 for value in fired if value > 1000)
    print(f"  steps fired more than 1 s after due: {late}")
    print(f"  in the service, per step: {service_per_step(service, len(rows), written)}")
    print(f"  load average at the end: {harness.load_average()}")


def service_per_step(service: harness.InProcessService, steps: int, written: tuple[int, int]) -> str:
    """Statements and commits since the steps were written, per step (CPU includes the writing)."""
    if service.sql is None or steps == 0:
        return "not counted"
    statements, commits = service.sql.read()
    statements, commits = statements - written[0], commits - written[1]
    cpu_ms = service.cpu_seconds() / steps * 1000
    return f"{statements / steps:.1f} SQL statements, {commits / steps:.2f} commits, {cpu_ms:.1f} ms CPU"


if __name__ == "__main__":
    main()
