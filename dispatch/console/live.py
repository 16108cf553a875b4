"""Server-sent events for the console: "something changed, fetch again".

The database is the source of truth (several workers may write to it), so a change is a new
row in ``timeline_events``: every press, page, reply and action writes one. One poller thread
per process reads ``max(timeline_events.id)`` a few times a second and wakes every open stream;
N open consoles cost one cheap query per poll, not N. On SQLite every transaction takes the
write lock (BEGIN IMMEDIATE), which is one more reason to poll once per process.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dispatch.models import TimelineEvent

log = logging.getLogger(__name__)

POLL_S = 0.3
HEARTBEAT_S = 15.0
# A stream ends after this long and the browser's EventSource reconnects at once. This bounds
# how long a thread can be held by a client that vanished without closing its socket.
MAX_STREAM_S = 300.0
IDLE_STOP_S = 30.0  # the poller stops when nobody has listened for this long


class ChangeWatch:
    """Polls the newest timeline event id and lets any number of streams wait for a change."""

    # Every watch of this process (tests wait for a service's streams to end before stopping it).
    instances: weakref.WeakSet[ChangeWatch] = weakref.WeakSet()

    def __init__(
        self, sessions: sessionmaker[Session], poll_s: float = POLL_S, stopping: threading.Event | None = None
    ) -> None:
        ChangeWatch.instances.add(self)
        self._stopping = stopping or threading.Event()
        self.sessions = sessions
        self._sessions = sessions
        self._poll_s = poll_s
        self._changed = threading.Condition()
        self._latest: int | None = None
        self._listeners = 0
        self._last_listener = time.monotonic()
        self._thread: threading.Thread | None = None
        self._failed = False

    @property
    def listeners(self) -> int:
        """How many event streams are open now."""
        return self._listeners

    def latest(self) -> int | None:
        """The newest event id seen by the poller (None before its first poll)."""
        return self._latest

    def _read(self) -> int:
        with self._sessions() as session, session.begin():
            return int(session.execute(select(func.coalesce(func.max(TimelineEvent.id), 0))).scalar_one())

    def _ensure_running(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="console-changes", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._changed:
                if self._listeners == 0 and time.monotonic() - self._last_listener > IDLE_STOP_S:
                    self._thread = None
                    return
            try:
                value: int | None = self._read()
                self._failed = False
            except Exception:  # the database is down or going away: streams say so, we retry
                if not self._failed:
                    log.warning("console change poll failed; retrying", exc_info=True)
                self._failed = True
                value = None
            with self._changed:
                if value is not None and value != self._latest:
                    self._latest = value
                    self._changed.notify_all()
            time.sleep(self._poll_s)

    def stream(self, disconnected: Callable[[], bool] | None = None) -> Iterator[str]:
        """SSE text: a ``change`` event with the newest id at start and on every change, heartbeats between."""
        with self._changed:
            self._listeners += 1
            self._ensure_running()
        started = last_write = time.monotonic()
        sent: int | None = None
        try:
            yield "retry: 1000\n\n"
            if self._latest is None:
                try:
                    with self._changed:
                        self._latest = self._read()
                except Exception:
                    return
            while time.monotonic() - started < MAX_STREAM_S and not self._stopping.is_set():
                if disconnected is not None and disconnected():
                    return
                with self._changed:
                    if self._latest == sent:
                        self._changed.wait(timeout=1.0)
                    latest = self._latest
                if latest != sent and latest is not None:
                    sent = latest
                    last_write = time.monotonic()
                    yield f"event: change\nid: {latest}\ndata: {latest}\n\n"
                elif time.monotonic() - last_write >= HEARTBEAT_S:
                    last_write = time.monotonic()
                    yield ": keepalive\n\n"  # a comment: keeps proxies open and finds dead clients
        finally:
            with self._changed:
                self._listeners -= 1
                self._last_listener = time.monotonic()
