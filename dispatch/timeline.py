"""Appending to the incident timeline: the one way events are recorded.

Events are written when the transaction that recorded them commits, all of them in one INSERT,
not one INSERT each: every query in between would otherwise autoflush the last event on its
own (seven INSERTs per press). They commit with the effects they record; a savepoint that rolls
back takes the events recorded inside it with it, and only those. Savepoints are opened with
``with session.begin_nested()`` (never committed past), so the transaction that commits last
is the outermost one, and it writes every event still standing.

An event may name a row that is not written yet (``Later``): its id is read when the events are.
Intake adds the message's log row only once it knows the outcome, one INSERT instead of an
INSERT and an UPDATE, yet the press's event names it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session, SessionTransaction

from dispatch.models import TimelineEvent
from foundation.clock import utcnow

log = logging.getLogger(__name__)

# session.info keys: [(the innermost transaction when recorded, the row)] not yet written; and
# whether the transaction now ending committed (after_commit, then after_transaction_end).
_PENDING = "dispatch.timeline.pending"
_COMMITTED = "dispatch.timeline.committed"


@dataclass(frozen=True)
class Later:
    """An event's value known only after the transaction's last flush (a new row's id)."""

    read: Callable[[], Any]


def record(
    session: Session,
    kind: str,
    *,
    actor: str,
    incident_id: int | None = None,
    device_id: str | None = None,
    unit_id: str | None = None,
    source_ts: datetime | None = None,
    at: datetime | None = None,
    **data: Any,
) -> None:
    """Add one event in the caller's transaction; it commits (or not) with the effect it records."""
    row = {
        "kind": kind,
        "actor": actor,
        "incident_id": incident_id,
        "device_id": device_id,
        "unit_id": unit_id,
        "source_ts": source_ts,
        "at": at or utcnow(),
        "data": {k: v for k, v in data.items() if v is not None},
    }
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "before_commit", _write_pending)
        event.listen(session, "after_commit", _committed)
        event.listen(session, "after_transaction_end", _forget_rolled_back)
    pending.append((session.get_nested_transaction() or session.get_transaction(), row))


def _write_pending(session: Session) -> None:
    """Before the outermost transaction commits: every event still standing, in recorded order."""
    if session.get_nested_transaction() is not None:
        return  # a savepoint is released: its events wait for the transaction (which may roll back)
    pending = session.info[_PENDING]
    if pending:
        rows = [row for _transaction, row in pending]
        pending.clear()  # before the INSERT: if it fails, the transaction rolls back without them
        if any(isinstance(value, Later) for row in rows for value in row["data"].values()):
            session.flush()  # the rows a Later names get their ids
            for row in rows:
                row["data"] = _resolved(row["data"])
        session.execute(insert(TimelineEvent).execution_options(render_nulls=True), rows)


def _resolved(data: dict[str, Any]) -> dict[str, Any]:
    values = {k: v.read() if isinstance(v, Later) else v for k, v in data.items()}
    return {k: v for k, v in values.items() if v is not None}


def _committed(session: Session) -> None:
    session.info[_COMMITTED] = True


def _forget_rolled_back(session: Session, ended: SessionTransaction) -> None:
    """A savepoint or transaction that rolled back: the events recorded inside it never happened."""
    committed = session.info.pop(_COMMITTED, False)
    pending = session.info[_PENDING]
    if ended.parent is None:
        if committed and pending:  # a savepoint left open past the commit: see the module docstring
            log.error("%d timeline events were not written: their savepoint outlived the commit", len(pending))
        pending.clear()
    elif not committed:
        pending[:] = [(transaction, row) for transaction, row in pending if not _within(transaction, ended)]


def _within(transaction: SessionTransaction | None, ended: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is ended:
            return True
        transaction = transaction.parent
    return False
