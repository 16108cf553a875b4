"""units: indexes for reading only the units near an incident (the matcher's roster window)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 15:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_units_service_station", "units", ["service", "station_lat", "station_lon"])
    op.create_index("ix_units_service_fix", "units", ["service", "fix_lat", "fix_lon"])


def downgrade() -> None:
    op.drop_index("ix_units_service_fix", table_name="units")
    op.drop_index("ix_units_service_station", table_name="units")
