"""Is the phone provider answering? One outage record per failing channel, shared by every process.

The outbox reports each attempt's result here. The first transient failure on a channel
opens an outage (a ``provider_outages`` row: the console's banner and the incident
timelines read "Twilio unreachable since 20:30:27, retrying"); the first success closes
it. The auditor closes outages whose process died before it saw the success, and tells
the supervisors about long ones through a channel that still works.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dispatch import timeline
from dispatch.metrics import Metrics
from dispatch.models import Notification, ProviderOutage
from responders.models import Supervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelState:
    channel: str
    down_since: datetime | None
    last_error: str | None


class ProviderHealth:
    """This process's view of each channel, and the transitions it writes to the database.

    Thread-safe: the outbox's sender threads report concurrently. Only transitions (up to
    down, down to up) and one row update per failure touch the database.
    """

    def __init__(self, provider: str, metrics: Metrics | None = None) -> None:
        self.provider = provider
        self._metrics = metrics
        self._lock = threading.Lock()
        self._down_since: dict[str, datetime] = {}
        self._last_error: dict[str, str] = {}

    def snapshot(self) -> list[ChannelState]:
        with self._lock:
            return [
                ChannelState(channel, since, self._last_error.get(channel))
                for channel, since in sorted(self._down_since.items())
            ]

    def down_since(self, channel: str) -> datetime | None:
        with self._lock:
            return self._down_since.get(channel)

    def failed(self, session: Session, channel: str, detail: str, now: datetime, incident_id: int | None) -> datetime:
        """Record a transient failure in the caller's transaction; returns when the outage began."""
        with self._lock:
            since = self._down_since.setdefault(channel, now)
            self._last_error[channel] = detail
        if self._metrics is not None:
            self._metrics.provider_up.labels(self.provider, channel).set(0)
            self._metrics.provider_failures.labels(self.provider, channel, "transient").inc()
        open_row = session.execute(
            select(ProviderOutage)
            .where(
                ProviderOutage.provider == self.provider,
                ProviderOutage.channel == channel,
                ProviderOutage.ended_at.is_(None),
            )
            .order_by(ProviderOutage.started_at)
            .limit(1)
        ).scalar_one_or_none()
        if open_row is None:
            session.add(
                ProviderOutage(
                    provider=self.provider,
                    channel=channel,
                    started_at=since,
                    last_failure_at=now,
                    last_error=detail,
                    failures=1,
                    first_incident_id=incident_id,
                )
            )
            log.error("%s %s unreachable since %s: %s", self.provider, channel, since.isoformat(), detail)
            return since
        open_row.last_failure_at = max(open_row.last_failure_at, now)
        open_row.last_error = detail
        open_row.failures += 1
        return min(open_row.started_at, since)

    def in_doubt(self, count: int = 1) -> None:
        """Pages whose request may have reached the provider unanswered (a metric only)."""
        if self._metrics is not None and count:
            self._metrics.notifications_in_doubt.inc(count)

    def permanent_failure(self, channel: str) -> None:
        if self._metrics is not None:
            self._metrics.provider_failures.labels(self.provider, channel, "permanent").inc()

    def succeeded(self, session: Session, channel: str, now: datetime) -> None:
        """A request on ``channel`` was answered: close this process's outage, if it saw one."""
        with self._lock:
            since = self._down_since.pop(channel, None)
            self._last_error.pop(channel, None)
        if self._metrics is not None:
            self._metrics.provider_up.labels(self.provider, channel).set(1)
        if since is None:
            return
        session.execute(
            update(ProviderOutage)
            .where(
                ProviderOutage.provider == self.provider,
                ProviderOutage.channel == channel,
                ProviderOutage.ended_at.is_(None),
            )
            .values(ended_at=now)
        )
        log.warning("%s %s answering again (unreachable since %s)", self.provider, channel, since.isoformat())


def close_recovered(session: Session, now: datetime) -> int:
    """Close outages after which a page went out on the same channel (its process may have died)."""
    closed = 0
    for outage in session.execute(select(ProviderOutage).where(ProviderOutage.ended_at.is_(None))).scalars():
        sent_after = session.execute(
            select(func.max(Notification.sent_at)).where(
                Notification.channel == outage.channel, Notification.sent_at > outage.last_failure_at
            )
        ).scalar_one_or_none()
        if sent_after is not None:
            outage.ended_at = sent_after
            closed += 1
    return closed


@dataclass(frozen=True)
class OutageAlert:
    """A warning to one supervisor about one outage, through a channel that still works."""

    outage: ProviderOutage
    supervisor: Supervisor
    channel: str
    waiting: int


def alerts_due(session: Session, now: datetime, after_s: float, channels: tuple[str, ...]) -> list[OutageAlert]:
    """Outages older than ``after_s`` whose supervisors were not told yet, and how to tell them.

    Marks each such outage alerted in the caller's transaction. An outage with no other
    working channel is left unmarked (and logged): it is tried again at the next audit.
    """
    open_outages = list(session.execute(select(ProviderOutage).where(ProviderOutage.ended_at.is_(None))).scalars())
    failing = {outage.channel for outage in open_outages}
    working = [channel for channel in channels if channel not in failing]
    due: list[OutageAlert] = []
    for outage in open_outages:
        if outage.supervisors_alerted_at is not None or outage.started_at > now - timedelta(seconds=after_s):
            continue
        if not working or outage.first_incident_id is None:
            log.critical(
                "%s %s down since %s and no other channel works: supervisors cannot be paged; watch the console",
                outage.provider,
                outage.channel,
                outage.started_at.isoformat(),
            )
            continue
        waiting = int(
            session.execute(
                select(func.count())
                .select_from(Notification)
                .where(Notification.channel == outage.channel, Notification.state.in_(("pending", "sending")))
            ).scalar_one()
        )
        supervisors = session.execute(select(Supervisor).where(Supervisor.active.is_(True))).scalars().all()
        outage.supervisors_alerted_at = now
        timeline.record(
            session,
            "provider_outage_alerted",
            actor="system",
            incident_id=outage.first_incident_id,
            at=now,
            provider=outage.provider,
            channel=outage.channel,
            since=outage.started_at.isoformat(),
            supervisors=len(supervisors),
            through=working[0],
            waiting=waiting,
        )
        due.extend(OutageAlert(outage, supervisor, working[0], waiting) for supervisor in supervisors)
    return due
