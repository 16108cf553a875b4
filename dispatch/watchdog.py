"""Noticing a process that looks alive but does nothing: messages arrive and nothing commits, or a job stops.

Every scheduler job beats when it starts, when it makes progress and when it ends; the MQTT
gateway says how long a received message has waited with nothing finishing. Either
standing still past ``watchdog.stall_after_s`` is a stall: ``/healthz`` answers 503 and the
log says so once when it starts and once when it ends. A stall is not a slow job: a job
that keeps beating (a sender waiting on a slow provider finishes a request at least every
request timeout) is working.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Watchdog:
    """Heartbeats of the scheduler jobs and the gateway's backlog, checked against one limit."""

    def __init__(self, stall_after_s: float, gateway_stalled_for: Callable[[], float]) -> None:
        self.stall_after_s = stall_after_s
        self._gateway_stalled_for = gateway_stalled_for
        self._beats: dict[str, float] = {}
        self._every: dict[str, float] = {}
        self._lock = threading.Lock()
        self._reported: frozenset[str] = frozenset()

    def watch(self, job: str, every_s: float) -> None:
        """Expect ``job`` to start at least every ``every_s`` (counted from now)."""
        with self._lock:
            self._every[job] = every_s
            self._beats[job] = time.monotonic()

    def beat(self, job: str) -> None:
        with self._lock:
            if job in self._every:
                self._beats[job] = time.monotonic()

    def stalls(self) -> dict[str, str]:
        """What stands still, and for how long; empty when everything moves."""
        now = time.monotonic()
        limit = self.stall_after_s
        with self._lock:
            beats = {job: (last, self._every[job]) for job, last in self._beats.items()}
        found = {
            f"job {job}": f"no progress for {now - last:.0f}s"
            for job, (last, every_s) in beats.items()
            if now - last > every_s + limit
        }
        waited = self._gateway_stalled_for()
        if waited > limit:
            found["mqtt handler"] = f"messages waiting with nothing committed for {waited:.0f}s"
        return found

    def check_and_log(self) -> dict[str, str]:
        """``stalls()``, logged when a stall starts and when it ends (not on every check)."""
        found = self.stalls()
        names = frozenset(found)
        for name in sorted(names - self._reported):
            log.error("watchdog: %s: %s", name, found[name])
        for name in sorted(self._reported - names):
            log.warning("watchdog: %s moves again", name)
        self._reported = names
        return found

    def run(self, stopping: threading.Event, every_s: float = 5.0) -> None:
        """The watchdog's own thread: it must not depend on the scheduler it watches."""
        while not stopping.wait(every_s):
            try:
                self.check_and_log()
            except Exception:
                log.exception("watchdog check failed")
