"""Schema management: Alembic migrations run programmatically (no alembic.ini needed)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision (no-op when already there).

    SQLite changes a constraint by rebuilding the table (Alembic's batch mode), and dropping
    a table that others reference fails while foreign keys are enforced. So, as SQLite's
    own procedure for schema changes says, enforcement is off during the migrations (it can
    only be switched outside a transaction) and every reference is checked before commit.
    """
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        # On the driver's connection: through SQLAlchemy the pragma would open a transaction.
        raw = connection.connection.dbapi_connection
        if sqlite and raw is not None:
            raw.cursor().execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            if sqlite and raw is not None:
                raw.cursor().execute("PRAGMA foreign_keys=ON")
    log.info("database schema at %s", current_revision(engine))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    return current_revision(engine) == head
