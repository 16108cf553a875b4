"""Scale-out benchmark: 1, 2 and 4 ``dispatch serve`` processes at one offered load above one's capacity.

For each process count (``--processes 1,2,4``) on a fresh database and one broker: that many real
``python -m dispatch serve`` processes with a shared subscription (``mqtt.shared_group``, a
distinct ``mqtt.client_id`` each), the one-step policy of bench/pipeline.py, the Twilio-compatible
server in a process of its own, and presses published at ``--rate`` for ``--seconds`` from
``--clients`` paho clients (QoS 1, a process each). The rate must be above what one process
pages per second, or every count shows the offered rate: the script says so when it sees it.

Printed per process count: presses fully paged per second (paged presses / first publish -> last
first SMS), CPU per press of all the processes, exactly-once counts; then throughput relative to
one process (issue 11's goal: 2 processes >= 1.7x one).

Usage:
    python bench/scaleout.py --rate 50 --seconds 4          # SQLite file + embedded broker (a smoke run)
    python bench/scaleout.py --database postgresql+psycopg://postgresql@127.0.0.1:5432/bench \
                             --mqtt mqtt://127.0.0.1:1883 --rate 400 --seconds 10

``--database postgresql...`` DROPS and recreates the schema ``public`` of that database before each count.
"""

from __future__ import annotations

import harness


def main() -> None:
    parser = harness.arguments(__doc__)
    parser.add_argument("--processes", default="1,2,4", help="process counts to run, comma-separated (default 1,2,4)")
    parser.add_argument("--rate", type=float, default=400, help="offered presses per second (default 400)")
    parser.add_argument("--seconds", type=float, default=10, help="how long to publish (default 10)")
    harness.add_load_arguments(parser, timeout_s=600)
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    if args.rate <= 0 or args.seconds <= 0 or min(counts) < 1 or args.clients < 1:
        parser.error("--rate, --seconds, --clients and every process count must be positive")
    presses = max(1, round(args.rate * args.seconds))
    throughput: dict[int, float] = {}
    for processes in counts:
        run = harness.fresh_run(
            args.database,
            args.mqtt,
            presses,
            f"[{processes} process(es)] {presses} presses offered at {args.rate:g}/s",
            prefix="scale",
            rate=args.rate,
            clients=args.clients,
            processes=processes,
            timeout_s=args.timeout,
            progress_every_s=args.progress,
        )
        throughput[processes] = harness.throughput(run.outcome, run.published)
        print(
            f"  presses fully paged per second: {throughput[processes]:.1f}"
            f" (offered: achieved publish rate {run.published.achieved_rate:.1f}/s; all within the timeout:"
            f" {run.complete})"
        )
        if throughput[processes] >= 0.9 * run.published.achieved_rate:
            print("  NOTE: this kept up with the offered load; raise --rate to measure capacity")
        print(f"  exactly once: {run.exactly_once()}")
        print(f"  per press: {run.per_press()}; load average at the end {harness.load_average()}", flush=True)
    print("presses fully paged per second by process count:")
    base = throughput.get(1)
    for processes, value in throughput.items():
        ratio = f"  {value / base:.2f}x one process" if base else ""
        print(f"  {processes} process(es): {value:7.1f}/s{ratio}")
    if base and 2 in throughput:
        print(f"ratio 2-proc/1-proc: {throughput[2] / base:.2f} (issue 11's goal: >= 1.7)")


if __name__ == "__main__":
    main()
