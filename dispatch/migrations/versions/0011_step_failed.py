"""escalation_steps.state may be 'failed': a step that kept failing, set aside

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 11:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WITH = "state IN ('pending','done','cancelled','stale','failed')"
WITHOUT = "state IN ('pending','done','cancelled','stale')"


def _replace_state_check(condition: str) -> None:
    with op.batch_alter_table("escalation_steps") as batch:
        batch.drop_constraint(op.f("ck_escalation_steps_state"), type_="check")
        batch.create_check_constraint(op.f("ck_escalation_steps_state"), condition)


def upgrade() -> None:
    _replace_state_check(WITH)


def downgrade() -> None:
    # A set-aside step did not run; "cancelled" is the closest older state that says so.
    op.execute("UPDATE escalation_steps SET state = 'cancelled' WHERE state = 'failed'")
    _replace_state_check(WITHOUT)
