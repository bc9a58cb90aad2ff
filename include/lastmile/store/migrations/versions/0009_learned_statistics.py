"""What the rules and windows learned as of each cutoff, kept instead of recomputed every hour.

- learned_statistics: the silence thresholds and the windows' grouped samples as of the start of a
  destination's day (JSON), computed by the first run that needs them and read by the runs after;
  forgotten when samples before the cutoff change. A cache: it starts empty.
- scans are found by parcel through (shipment_id, status, occurred_at) instead of (shipment_id):
  SQLite preferred the (status, occurred_at) index for "this batch's parcels' first delivery
  scan" and walked every delivered scan in the history (a large history takes a while to index).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "learned_statistics",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("version", sa.String(16), primary_key=True),
        sa.Column("cutoff", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_scans_shipment_status_occurred", "scans", ["shipment_id", "status", "occurred_at"])
    op.drop_index("ix_scans_shipment_id", "scans", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_scans_shipment_id", "scans", ["shipment_id"])
    op.drop_index("ix_scans_shipment_status_occurred", "scans")
    op.drop_table("learned_statistics")
