"""The timeline is written with the effects it records: at commit, in one INSERT, never for a rollback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from dispatch import timeline
from dispatch.models import TimelineEvent
from foundation.db import transaction


def kinds(sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(TimelineEvent.kind).order_by(TimelineEvent.id)))


@pytest.fixture
def timeline_inserts(engine: Engine) -> Iterator[list[str]]:
    """Every INSERT INTO timeline_events the engine sends, as sent (an executemany is one)."""
    sent: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO TIMELINE_EVENTS"):
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    yield sent
    event.remove(engine, "before_cursor_execute", seen)


def test_the_events_of_one_transaction_are_written_in_one_insert_in_the_order_recorded(
    sessions: sessionmaker[Session], timeline_inserts: list[str]
) -> None:
    with transaction(sessions) as session:
        for kind in ("press_received", "incident_opened", "unit_matched"):
            timeline.record(session, kind, actor="test", device_id="BTN-1", detail="x")
            session.execute(select(TimelineEvent.id)).all()  # a query between events flushes nothing of them
    assert kinds(sessions) == ["press_received", "incident_opened", "unit_matched"]
    assert len(timeline_inserts) == 1


def test_a_transaction_that_rolls_back_writes_none_of_its_events(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), transaction(sessions) as session:
        timeline.record(session, "press_received", actor="test", device_id="BTN-1")
        raise RuntimeError("the effect failed")
    with transaction(sessions) as session:
        timeline.record(session, "incident_opened", actor="test", device_id="BTN-1")
    assert kinds(sessions) == ["incident_opened"]


def test_a_savepoint_that_rolls_back_takes_only_its_own_events_with_it(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        timeline.record(session, "before", actor="test", device_id="BTN-1")
        with pytest.raises(RuntimeError), session.begin_nested():
            timeline.record(session, "inside_failed", actor="test", device_id="BTN-1")
            with session.begin_nested():
                timeline.record(session, "nested_in_failed", actor="test", device_id="BTN-1")
            raise RuntimeError("this message is retried alone")
        with session.begin_nested():
            timeline.record(session, "inside_released", actor="test", device_id="BTN-1")
        timeline.record(session, "after", actor="test", device_id="BTN-1")
    assert kinds(sessions) == ["before", "inside_released", "after"]


def test_events_of_a_released_savepoint_are_lost_when_the_transaction_rolls_back(
    sessions: sessionmaker[Session],
) -> None:
    with pytest.raises(RuntimeError), transaction(sessions) as session:
        with session.begin_nested():
            timeline.record(session, "inside_released", actor="test", device_id="BTN-1")
        raise RuntimeError("the batch failed")
    assert kinds(sessions) == []


def test_a_session_used_for_several_transactions_writes_each_ones_events_once(
    sessions: sessionmaker[Session], timeline_inserts: list[str]
) -> None:
    with sessions() as session:
        with session.begin():
            timeline.record(session, "first", actor="test", device_id="BTN-1")
        with session.begin():
            timeline.record(session, "rolled_back", actor="test", device_id="BTN-1")
            session.rollback()
        with session.begin():
            timeline.record(session, "second", actor="test", device_id="BTN-1")
    assert kinds(sessions) == ["first", "second"]
    assert len(timeline_inserts) == 2
