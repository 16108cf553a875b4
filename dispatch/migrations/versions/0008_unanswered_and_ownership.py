"""incidents: the state "unanswered" and who took ownership of an incident, when

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-02 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD = "state IN ('received','dispatched','acknowledged','on_scene','resolved','cancelled')"
NEW = "state IN ('received','dispatched','unanswered','acknowledged','on_scene','resolved','cancelled')"


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_constraint(op.f("ck_incidents_state"), type_="check")
        batch.create_check_constraint(op.f("ck_incidents_state"), NEW)
        batch.add_column(sa.Column("owned_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("owned_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("owned_at")
        batch.drop_column("owned_by")
        batch.drop_constraint(op.f("ck_incidents_state"), type_="check")
        batch.create_check_constraint(op.f("ck_incidents_state"), OLD)
