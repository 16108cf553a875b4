"""incidents.state may be 'unanswered': an escalation exhausted with nobody accepting

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 08:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

WITH = "state IN ('received','dispatched','unanswered','acknowledged','on_scene','resolved','cancelled')"
WITHOUT = "state IN ('received','dispatched','acknowledged','on_scene','resolved','cancelled')"


def _replace_state_check(condition: str) -> None:
    # On SQLite this rebuilds the table (dispatch.database.upgrade runs it with foreign keys
    # checked after the migration, since other tables reference incidents).
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint(op.f("ck_incidents_state"), type_="check")
        batch.create_check_constraint(op.f("ck_incidents_state"), condition)


def upgrade() -> None:
    _replace_state_check(WITH)


def downgrade() -> None:
    # An unanswered incident is still waiting for help: the closest older state is "dispatched".
    op.execute("UPDATE incidents SET state = 'dispatched' WHERE state = 'unanswered'")
    _replace_state_check(WITHOUT)
