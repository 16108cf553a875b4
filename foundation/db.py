"""Database foundations shared by every package: the declarative base and engines.

The database is the source of truth for all state (incidents, timers, outbox);
processes hold no state that a restart could lose.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from foundation.clock import as_utc
from foundation.private_files import PRIVATE_FILE, create_private_file

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always aware UTC in Python, whatever the backend stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime; use foundation.clock.utcnow()")
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    """Declarative base for every table of the application."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    if url.startswith("sqlite"):
        _private_sqlite_files(url)
        engine = create_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so
        # "BEGIN IMMEDIATE" can take the write lock up front.
        turns = WriteTurns()
        event.listen(engine, "begin", lambda connection: _sqlite_begin(connection, turns))
        # These events come just before the COMMIT or ROLLBACK itself: the next in line meets
        # SQLite's lock for those last milliseconds, in the first, shortest waits of its busy handler.
        for done in ("commit", "rollback"):
            event.listen(engine, done, lambda connection: _end_turn(connection.info, turns))
        # Safety net: a connection going back to the pool never keeps the turn.
        event.listen(engine, "checkin", lambda _dbapi, record: _end_turn(record.info, turns))
        return engine
    # A database that is down or unreachable must fail fast, never hang a job or the MQTT
    # handler: libpq's connect timeout, and TCP keepalives for a peer that went silent.
    libpq = {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=libpq)


def _private_sqlite_files(url: str) -> None:
    """The database file 0600 from its creation: SQLite gives its -wal and -shm files the same mode."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        return  # SQLite will say so when it connects
    if not create_private_file(path, ""):
        for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                existing.chmod(PRIVATE_FILE)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


SQLITE_BUSY_TIMEOUT_S = 15
_TURN = "dispatch_write_turn"


class WriteTurns:
    """SQLite's one write lock, handed to this process's threads in the order they asked.

    SQLite itself is not fair: a thread waiting in its busy handler sleeps up to 100 ms between
    tries, so a job that commits and begins again at once (the steps job in a burst) could keep
    the lock for seconds while the sender's pages wait. Here each waiter queues, and a release
    hands the lock straight to the longest waiter. Other processes still meet SQLite's own
    busy timeout.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()

    def acquire(self, timeout_s: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout_s):
            return True
        with self._mutex:
            if turn.is_set():
                return True  # handed over just as the wait ran out
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()  # still held: now by the next in line
            else:
                self._held = False


def _sqlite_begin(connection: Any, turns: WriteTurns) -> None:
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")  # deferred: a reader in WAL mode never waits for the writer
        return
    # IMMEDIATE: take the write lock at BEGIN, so two writers queue on the lock
    # instead of failing with "database is locked" when upgrading a read lock.
    if not turns.acquire(SQLITE_BUSY_TIMEOUT_S):
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked (this process's writers)"))
    connection.info[_TURN] = True
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        _end_turn(connection.info, turns)
        raise


def _end_turn(info: dict[Any, Any], turns: WriteTurns) -> None:
    if info.pop(_TURN, False):
        turns.release()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (we log and publish from them)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session


READ_ONLY = "dispatch_read_only"


@contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that only reads: on SQLite it neither takes nor waits for the write lock.

    WAL lets a reader see the last commit while a writer works, so the polls that run all the
    time (when is the next step due, has the sender saved this SID yet) need not queue behind a
    burst's writes. Never write in it: a write would take SQLite's lock outside the turns.
    """
    with factory() as session:
        session.connection(execution_options={READ_ONLY: True})
        yield session


def insert_for(engine_or_session: Engine | Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """A dialect-specific INSERT that supports ``on_conflict_do_nothing``.

    Idempotency rests on unique constraints, never on check-then-insert, so the
    conflict clause must be the database's own.
    """
    bind = engine_or_session.get_bind() if isinstance(engine_or_session, Session) else engine_or_session
    if bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
