"""Burst benchmark: N presses published at once -> every first SMS at a Twilio-compatible server.

The disaster case of issue 11: 10,000 presses (``--presses``) published as fast as one or more
paho clients go (``--clients``, QoS 1, each in a process of its own), onto a service with the
one-step policy of bench/pipeline.py (one SMS to the chosen unit, ``repeat: 0``). The service
runs in this process (default: its SQL statements and commits are counted) or as
``--processes P`` real ``python -m dispatch serve`` processes on one database and one broker with
a shared subscription (``mqtt.shared_group``, a distinct ``mqtt.client_id`` each). The
Twilio-compatible server runs in a process of its own.

Printed: how long the broker took to have every press (the last PUBACK), from the last publish to
the last first SMS at the server, presses fully paged per second, and exactly-once counts --
LOST (presses without an incident, incidents without a first SMS) and DUPLICATES (presses with
more than one incident, incidents with more than one first SMS). Progress is printed while the
SMS arrive; ``--timeout`` bounds the wait.

Usage:
    python bench/burst.py --presses 500                     # SQLite file + embedded broker
    python bench/burst.py --database postgresql+psycopg://postgres@127.0.0.1:5432/bench \
                          --mqtt mqtt://127.0.0.1:1883 --processes 2 --clients 2

``--database postgresql...`` DROPS and recreates the schema ``public`` of that database first.
A broker with Mosquitto's default ``max_queued_messages 1000`` (Debian's /etc/mosquitto) DROPS
the presses queued beyond 1,000 for a subscriber that is behind: they never reach the service and
are counted LOST here. Use the embedded broker (no ``--mqtt``) or a Mosquitto run with
config/mosquitto.conf (``max_queued_messages 0``), as in production.
Several processes on one SQLite file work but are not what SQLite is for: use PostgreSQL.
"""

from __future__ import annotations

import harness


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument("--presses", type=int, default=10_000, help="presses in the burst (default 10,000)")
    parser.add_argument(
        "--processes", type=int, default=0, help="dispatch serve processes (default 0: the service in this process)"
    )
    harness.add_load_arguments(parser, timeout_s=900)
    args = parser.parse_args()
    if args.presses < 1 or args.clients < 1 or args.processes < 0:
        parser.error("--presses and --clients must be positive, --processes not negative")
    where = f"{args.processes} dispatch serve processes" if args.processes else "the service in this process"
    run = harness.fresh_run(
        args.database,
        args.mqtt,
        args.presses,
        f"{args.presses} presses from {args.clients} client(s) to {where}",
        prefix="burst",
        clients=args.clients,
        processes=args.processes,
        timeout_s=args.timeout,
        progress_every_s=args.progress,
    )
    published, outcome = run.published, run.outcome
    end = harness.last_arrival(outcome)
    print(
        f"  the broker had them all (last PUBACK) {published.broker_had_all - published.first:.2f} s after the first"
        f" publish ({published.acked}/{run.presses} PUBACKed; publishing took {published.last - published.first:.2f} s)"
    )
    if end is not None:
        print(f"  last publish -> last first SMS at the Twilio server: {end - published.last:.1f} s")
    print(f"  every SMS within the {args.timeout:g} s timeout: {run.complete}")
    print(f"  presses fully paged per second: {harness.throughput(outcome, published):.1f}")
    print(f"  exactly once: {run.exactly_once()}")
    print(f"  in the service, per press: {run.per_press()}")
    print(f"  load average at the end: {harness.load_average()}")


if __name__ == "__main__":
    main()
