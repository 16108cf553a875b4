"""SQLite's one write lock is taken in turn: a busy writer never starves the others in its process."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from foundation.db import WriteTurns, make_engine, make_session_factory, reading


def test_a_release_hands_the_lock_to_the_longest_waiter_not_back_to_the_thread_that_released() -> None:
    turns = WriteTurns()
    assert turns.acquire(1)
    order: list[str] = []
    waiting = []
    for name in ("first", "second"):
        started = threading.Event()

        def wait_for_turn(name: str = name, started: threading.Event = started) -> None:
            started.set()
            assert turns.acquire(5)
            order.append(name)
            turns.release()

        thread = threading.Thread(target=wait_for_turn)
        thread.start()
        started.wait()
        waiting.append(thread)
        threading.Event().wait(0.05)  # queued in this order
    turns.release()
    assert turns.acquire(5)  # the releasing thread queues behind both
    order.append("releaser")
    turns.release()
    for thread in waiting:
        thread.join()
    assert order == ["first", "second", "releaser"]


def test_a_waiter_that_runs_out_of_time_leaves_the_queue_and_the_next_still_gets_its_turn() -> None:
    turns = WriteTurns()
    assert turns.acquire(1)
    assert not turns.acquire(0.05)  # gave up: no longer in line
    got_it = threading.Event()

    def wait_for_turn() -> None:
        if turns.acquire(5):
            got_it.set()

    later = threading.Thread(target=wait_for_turn)
    later.start()
    turns.release()
    later.join()
    assert got_it.is_set()


def test_a_thread_that_commits_and_begins_again_at_once_lets_a_waiting_writer_in_at_its_next_commit(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/turns.sqlite3")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE writes (seq INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT)"))
    busy_started = threading.Event()

    def busy_writer() -> None:
        for _ in range(200):
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO writes (who) VALUES ('busy')"))
                busy_started.set()
                threading.Event().wait(0.002)

    busy = threading.Thread(target=busy_writer)
    busy.start()
    busy_started.wait()
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO writes (who) VALUES ('waiting')"))
    busy.join()
    with engine.connect() as connection:
        seq = connection.execute(text("SELECT seq FROM writes WHERE who = 'waiting'")).scalar_one()
    assert seq <= 3  # right after the busy writer's transaction that was open when it asked
    engine.dispose()


def test_a_reading_session_sees_the_last_commit_without_waiting_for_a_writer_in_the_middle_of_its_work(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/reads.sqlite3")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE pages (id INTEGER PRIMARY KEY)"))
        connection.execute(text("INSERT INTO pages (id) VALUES (1)"))
    writing, done = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO pages (id) VALUES (2)"))
            writing.set()
            done.wait(10)

    writer = threading.Thread(target=slow_writer)
    writer.start()
    writing.wait()
    try:
        with reading(make_session_factory(engine)) as session:  # would wait 15 s for the turn otherwise
            assert session.execute(text("SELECT count(*) FROM pages")).scalar_one() == 1
        assert writer.is_alive()  # the writer was still at work: the read did not wait for it
    finally:
        done.set()
        writer.join()
    engine.dispose()
