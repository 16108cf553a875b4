"""Server-sent events for the console: "something changed, fetch again".

The database is the source of truth (several workers may write to it), so a change is a new
row in ``timeline_events``: every press, page, reply and action writes one. One poller thread
per process reads ``max(timeline_events.id)`` a few times a second and wakes every open stream;
N open consoles cost one cheap query per poll, not N. On SQLite every transaction takes the
write lock (BEGIN IMMEDIATE), which is one more reason to poll once per process.

Streams are capped per login session and per process (``web.event_streams_per_session``,
``web.event_streams_total``); over a cap the answer is 429 with a JSON body saying to poll
instead, which console.js does. The web server serves them from their own thread pool
(dispatch/service.py), so open consoles never take a thread from Twilio's webhooks or the API.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass

from flask import abort, current_app, jsonify, session
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
# Over a cap: how often the page re-fetches instead, and when it tries a stream again.
FALLBACK_POLL_S = 10
RETRY_STREAM_S = 60


@dataclass(frozen=True)
class StreamLimits:
    total: int = 64
    per_session: int = 8


class EventStream:
    """The SSE body of one admitted stream; ``close`` (called by the WSGI server) frees its slot.

    A class rather than a bare generator: a generator that was never started does not run its
    ``finally`` on close, and the slot would be lost.
    """

    def __init__(self, events: Generator[str, None, None], release: Callable[[], None]) -> None:
        self._events = events
        self._release = release
        self._closed = False

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> str:
        return next(self._events)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._events.close()
            self._release()


class ChangeWatch:
    """Polls the newest timeline event id and lets any number of streams wait for a change."""

    # Every watch of this process (tests wait for a service's streams to end before stopping it).
    instances: weakref.WeakSet[ChangeWatch] = weakref.WeakSet()

    def __init__(
        self,
        sessions: sessionmaker[Session],
        poll_s: float = POLL_S,
        stopping: threading.Event | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        ChangeWatch.instances.add(self)
        self._stopping = stopping or threading.Event()
        self.sessions = sessions
        self._sessions = sessions
        self._poll_s = poll_s
        self._limits = limits
        self._changed = threading.Condition()
        self._latest: int | None = None
        self._listeners = 0
        self._per_session: dict[str, int] = {}
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

    def stream(self, disconnected: Callable[[], bool] | None = None) -> EventStream:
        """Admit one stream for the current request's login session, or abort with 429.

        Call from the view (in the request context), so that the refusal is a real HTTP answer.
        """
        limits = self._limits or _configured_limits()
        # The CSRF token is made at login and lives as long as the login session: one key per
        # session (hashed, so the token itself never sits in this process's bookkeeping).
        key = hashlib.sha256(str(session.get("csrf") or session.get("uid")).encode()).hexdigest()
        with self._changed:
            over_total = self._listeners >= limits.total
            over_session = self._per_session.get(key, 0) >= limits.per_session
            if not (over_total or over_session):
                self._listeners += 1
                self._per_session[key] = self._per_session.get(key, 0) + 1
                self._ensure_running()
        if over_total or over_session:
            log.warning(
                "event stream refused: %s (%d open)",
                "process cap" if over_total else "session cap",
                self._listeners,
            )
            refusal = jsonify(
                error="too_many_streams",
                limit="total" if over_total else "per_session",
                poll_s=FALLBACK_POLL_S,
                retry_s=RETRY_STREAM_S,
            )
            refusal.status_code = 429
            refusal.headers["Retry-After"] = str(RETRY_STREAM_S)
            abort(refusal)
        return EventStream(self._events(disconnected), lambda: self._release(key))

    def _release(self, key: str) -> None:
        with self._changed:
            self._listeners -= 1
            self._last_listener = time.monotonic()
            left = self._per_session.get(key, 1) - 1
            if left > 0:
                self._per_session[key] = left
            else:
                self._per_session.pop(key, None)

    def _events(self, disconnected: Callable[[], bool] | None) -> Generator[str, None, None]:
        """SSE text: a ``change`` event with the newest id at start and on every change, heartbeats between."""
        started = last_write = time.monotonic()
        sent: int | None = None
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


def _configured_limits() -> StreamLimits:
    web = current_app.extensions["dispatch"].settings.web
    return StreamLimits(total=web.event_streams_total, per_session=web.event_streams_per_session)
