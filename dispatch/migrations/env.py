"""Alembic environment: runs on the connection or URL handed in by dispatch.database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import devices.models  # noqa: F401  (registers tables on the shared metadata)
import dispatch.models  # noqa: F401
import responders.models  # noqa: F401
from foundation.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
