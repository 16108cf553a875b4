"""How fast Twilio's webhook and /healthz answer while consoles stream and slow clients linger.

Run from the repository root:  python bench/web_capacity.py [--streams 200] [--half-sent 300]

Starts one real service (SQLite and the embedded broker in a temporary directory), opens the
given number of console event streams for one logged-in user (the stream caps are raised to
that number), then that many half-sent requests, and times ten signed `POST /twilio/sms` and
ten `GET /healthz` at each stage.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# Run as a plain script, so the repository root is not on sys.path by default.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dispatch.auth import hash_password
from dispatch.models import User
from dispatch.service import DispatchService
from foundation.db import transaction
from foundation.settings import load_settings
from tests.conftest import free_port
from tests.test_web_capacity import PASSWORD, healthz, login, open_stream, signed_sms


def sample(label: str, service: DispatchService) -> None:
    def times(probe: Callable[[DispatchService], tuple[int, float]]) -> str:
        seconds = [probe(service)[1] * 1000 for _ in range(10)]
        return f"median {statistics.median(seconds):.0f} ms, max {max(seconds):.0f} ms"

    print(f"{label}: POST /twilio/sms {times(signed_sms)}; GET /healthz {times(healthz)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--half-sent", type=int, default=300)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    settings = load_settings(
        environ={},
        overrides={
            "data_dir": str(data_dir),
            "mqtt": {"embedded_port": free_port()},
            "web": {"port": 0, "event_streams_total": args.streams, "event_streams_per_session": args.streams},
        },
    )
    service = DispatchService(settings)
    service.start()
    opened: list[socket.socket] = []
    try:
        with transaction(service.sessions) as session:
            session.add(User(username="bench", name="Bench", role="call_taker", password_hash=hash_password(PASSWORD)))
        sample("idle", service)
        cookie = login(service, "bench")
        for _ in range(args.streams):
            stream, head = open_stream(service, cookie)
            opened.append(stream)
            assert head.startswith("HTTP/1.1 200"), head[:80]
        sample(f"{args.streams} open event streams", service)
        for _ in range(args.half_sent):
            slow = socket.create_connection(("127.0.0.1", service.web_port))
            slow.sendall(b"POST /twilio/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nFrom")
            opened.append(slow)
        sample(f"{args.streams} streams + {args.half_sent} half-sent requests", service)
    finally:
        for connection in opened:
            connection.close()
        service.stop(forget_mqtt_session=True)


if __name__ == "__main__":
    main()
