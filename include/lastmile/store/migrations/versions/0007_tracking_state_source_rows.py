"""Per-shipment tracking state and per-row digests of what the shop sent.

- tracking_state: one row per shipment, `finished_at` = its first terminal scan (NULL while in
  flight). "Which parcels are in flight at T" is then an index range (finished_at IS NULL or
  after T) whose size follows the parcels in flight, not every scan ever stored.
- source_rows: a digest of each shop record as last accepted. A source that sends whole exports
  every run (files) is compared row by row: only new or changed records are validated, written
  and looked at again by detection.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tracking_state",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("shipment_id"),
    )
    op.create_index("ix_tracking_state_finished_at", "tracking_state", ["finished_at"])
    # Terminal statuses as of this revision (lastmile.core.status.TERMINAL).
    op.execute(
        "INSERT INTO tracking_state (shipment_id, finished_at) "
        "SELECT s.shipment_id, (SELECT MIN(c.occurred_at) FROM scans c WHERE c.shipment_id = s.shipment_id "
        "AND c.status IN ('cancelled', 'delivered', 'failed', 'returned')) FROM shipments s")
    op.create_table(
        "source_rows",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(40), nullable=False),
        sa.Column("batch_key", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("source", "entity", "record_id"),
    )


def downgrade() -> None:
    op.drop_table("source_rows")
    op.drop_index("ix_tracking_state_finished_at", "tracking_state")
    op.drop_table("tracking_state")
