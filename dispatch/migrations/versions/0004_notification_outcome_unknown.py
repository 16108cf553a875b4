"""notifications.outcome_unknown: look at Twilio before resending after a timeout

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("outcome_unknown", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("outcome_unknown")
