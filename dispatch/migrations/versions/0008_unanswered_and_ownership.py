"""incidents: who took ownership of an incident, and when

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 07:40:00

(The state "unanswered" itself came with 0007.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("owned_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("owned_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("owned_at")
        batch.drop_column("owned_by")
