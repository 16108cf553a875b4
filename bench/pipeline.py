"""Pipeline benchmark: a press published over MQTT -> the SMS request at the provider's server.

The provider is the Twilio-compatible server (default), the SMS Gateway for Android stand-in
(``--provider sms_gateway``: the gateway carries SMS to the roster's +62 numbers, as in the
demo), or both, one run after the other (``--provider both``), each printed, then side by side.

Each run first measures the FLOOR at the same rate: a bare paho subscriber that POSTs each press
to a Twilio-compatible server, in a process of its own (the least any MQTT -> SMS service can
do on this machine, now). Then the project: a full dispatch service (MQTT gateway, engine,
scheduler, web app for the status callbacks) in this process, with the example roster and a
one-step policy for every service ``[{after_s: 0, action: notify_unit, channels: [sms]}]``,
``repeat: 0``, talking to the provider's server -- in a process of its own -- through the real
SDK. The presses come from one paho client (QoS 1) in a process of its own, rotating over the
12 example buttons, each with a unique ``press_id``; so this process runs only the service, and
its CPU time is the service's. See bench/harness.py for the clocks.

Printed: floor and project p50/p90/p99 and their ratio, the achieved rate, presses fully paged
per second, SQL statements and commits per press in the service (engine events, divided by the
presses), CPU seconds per press of the service, the load average, and exactly-once counts.

Usage:
    python bench/pipeline.py                       # SQLite file + embedded broker, 50/s for 30 s
    python bench/pipeline.py --rate 20 --seconds 10
    python bench/pipeline.py --rate 5 --seconds 30 --provider both
    python bench/pipeline.py --channel chat          # the step on `chat`: WhatsApp template alerts
    python bench/pipeline.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test \
                             --mqtt mqtt://127.0.0.1:1883

``--database postgresql...`` DROPS and recreates the schema ``public`` of that database first.
"""

from __future__ import annotations

from dataclasses import dataclass

import harness


@dataclass
class Result:
    floor: list[float]
    project: list[float]


def run(
    database: str | None,
    mqtt_url: str | None,
    rate: float,
    seconds: float,
    floor_seconds: float,
    settle_s: float,
    provider: str,
    channel: str = "sms",
) -> Result:
    """One run through ``provider`` ("twilio" or "sms_gateway") on ``channel``; floor and project latencies (ms)."""
    count = max(1, round(rate * seconds))
    with harness.environment(database, mqtt_url) as env:
        print(
            f"backend={env.backend} broker={env.broker_label} rate={rate:g}/s for {seconds:g}s"
            f" ({count} presses over {len(harness.DEVICES)} buttons); load average {harness.load_average()}"
        )
        floor = harness.run_floor(env.mqtt_url, rate, max(1, round(rate * floor_seconds)), settle_s)
        run = harness.run_service(
            env, count, "pipe", rate=rate, channel=channel, provider=provider, timeout_s=settle_s, progress_every_s=10
        )
    project = report(run, settle_s)
    print(f"  floor:   {harness.summary(floor)}")
    print(f"  project: {harness.summary(project)}")
    if floor and project:
        ratios = (
            f"p{q} {harness.percentile(project, q) / max(harness.percentile(floor, q), 1e-9):.1f}x"
            for q in (50, 90, 99)
        )
        print(f"  ratio project/floor: {', '.join(ratios)}")
    print(f"  load average at the end: {harness.load_average()}")
    return Result(floor, project)


def report(run: harness.Run, settle_s: float) -> list[float]:
    """Print one project run; its press -> SMS latencies (ms)."""
    published, outcome = run.published, run.outcome
    mono, wall = harness.latencies(outcome, published)
    where = "the Twilio server" if run.server_kind == "twilio" else "the SMS gateway stand-in"
    print(
        f"  presses published: {len(published.sent)} (PUBACKed {published.acked}),"
        f" achieved rate {published.achieved_rate:.2f}/s, worst publish {published.max_behind_ms:.1f} ms"
        f" behind schedule"
    )
    print(f"  exactly once: {run.exactly_once()}")
    print(f"  all SMS at {where} within {settle_s:g}s: {run.complete}")
    print(
        f"  presses fully paged per second: {harness.throughput(outcome, published):.1f}"
        f" (offered {published.achieved_rate:.1f}/s)"
    )
    print(f"  in the service, per press: {run.per_press()}")
    if mono:
        print(f"  press publish -> SMS request at {where}: {harness.summary(mono)}")
        for name, values in stage_latencies(outcome, published).items():
            if values:
                print(
                    f"    {name:<24} p50 {harness.percentile(values, 50):7.1f}"
                    f"  p90 {harness.percentile(values, 90):7.1f}  p99 {harness.percentile(values, 99):7.1f}"
                    f"  max {max(values):7.1f} ms"
                )
        skew = [abs(m - w) for m, w in zip(mono, wall, strict=True)]
        created = [(a.at.wall - a.created) * 1000 for p in outcome.presses.values() for a in p.arrivals]
        end = harness.last_arrival(outcome) or published.last
        print(
            f"  last SMS {(end - published.last) * 1000:.0f} ms after the last publish; clocks: monotonic vs wall"
            f" latency differ by at most {max(skew):.2f} ms; server hook - its created_at p50"
            f" {harness.percentile(created, 50):.2f} ms, max {max(created):.2f} ms"
        )
    failed = sum(not 200 <= s < 300 for s in run.callbacks)
    print(f"  status callbacks to the service: {len(run.callbacks)} ({failed} not 2xx)")
    return mono


def stage_latencies(outcome: harness.Outcome, published: harness.Published) -> dict[str, list[float]]:
    """Where the time goes, from the database's wall-clock timestamps."""
    stages: dict[str, list[float]] = {
        "publish->receive": [],
        "receive->page written": [],
        "written->claimed": [],
        "claimed->SMS at server": [],
    }
    for press_id, press in outcome.presses.items():
        first = outcome.first_arrival(press_id)
        if first is None or press.opened is None:
            continue
        stages["publish->receive"].append((press.opened - published.sent[press_id].wall) * 1000)
        if press.written is not None and press.claimed is not None:
            stages["receive->page written"].append((press.written - press.opened) * 1000)
            stages["written->claimed"].append((press.claimed - press.written) * 1000)
            stages["claimed->SMS at server"].append((first.at.wall - press.claimed) * 1000)
    return stages


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument("--rate", type=float, default=50, help="presses per second (default 50)")
    parser.add_argument("--seconds", type=float, default=30, help="how long to publish (default 30)")
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=None,
        help="how long the floor publishes (default: --seconds, at most 10)",
    )
    parser.add_argument("--channel", choices=("sms", "chat"), default="sms", help="the step's channel (chat: WhatsApp)")
    parser.add_argument("--settle", type=float, default=120, help="seconds to wait after the last press for every SMS")
    parser.add_argument(
        "--provider",
        choices=("twilio", "sms_gateway", "both"),
        default="twilio",
        help="where the SMS go: the Twilio-compatible server, the SMS gateway stand-in, or one run each",
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    floor_seconds = args.floor_seconds if args.floor_seconds is not None else min(args.seconds, 10)
    providers = ("twilio", "sms_gateway") if args.provider == "both" else (args.provider,)
    results = {}
    for provider in providers:
        print(f"[provider {provider}]")
        results[provider] = run(
            args.database, args.mqtt, args.rate, args.seconds, floor_seconds, args.settle, provider, args.channel
        )
    if len(results) > 1:
        print("press publish -> first alert SMS at the provider, per provider:")
        for provider, result in results.items():
            print(f"  {provider:<12} {harness.summary(result.project)} (floor {harness.summary(result.floor)})")


if __name__ == "__main__":
    main()
