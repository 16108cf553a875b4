"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

import dispatch.models  # noqa: F401  (registers the dispatch tables on the metadata)
import responders.models  # noqa: F401
from dispatch import database
from foundation.db import Base


def test_the_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_upgrading_twice_changes_nothing(engine: Engine) -> None:
    before = database.current_revision(engine)
    database.upgrade(engine)
    assert database.current_revision(engine) == before and database.is_current(engine)
