"""Outbox: doubt window and lookups, call hang-ups, provider outages, providers per responder

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("provider", sa.String(length=16), nullable=True))
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("doubt_since", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("lookups", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("hangup_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("hangup_done_at", sa.DateTime(timezone=True), nullable=True))
    for table in ("units", "supervisors"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("channels", sa.JSON(), server_default="[]", nullable=False))
    # Rows the old code wrote off as "unknown" were never resent; they stay as they are (history).
    op.create_table(
        "provider_outages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_incident_id", sa.Integer(), nullable=True),
        sa.Column("supervisors_alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["first_incident_id"], ["incidents.id"], name=op.f("fk_provider_outages_first_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_outages")),
    )
    op.create_index("ix_provider_outages_open", "provider_outages", ["provider", "channel", "ended_at"])
    op.create_table(
        "provider_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_events")),
        sa.UniqueConstraint("provider", "event_id", name=op.f("uq_provider_events_provider_event_id")),
    )


def downgrade() -> None:
    op.drop_table("provider_events")
    op.drop_index("ix_provider_outages_open", table_name="provider_outages")
    op.drop_table("provider_outages")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("hangup_done_at")
        batch.drop_column("hangup_requested_at")
        batch.drop_column("lookups")
        batch.drop_column("doubt_since")
        batch.drop_column("claimed_by")
        batch.drop_column("provider")
        batch.alter_column("incident_id", existing_type=sa.Integer(), nullable=False)
    for table in ("units", "supervisors"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("channels")
