"""A run's own rows found through its batch, not among every row of their kind.

- `current_detections` (`batch_key`, `open`): compute_windows reads the open detections its own
  batch wrote. With only (`open`, `exception_type`) to go by, SQLite walked every open detection
  and kept this batch's: at 100k shipments of history 2,600 rows for ~100 (0.7 ms an hour), and
  the open detections grow with the parcels in flight.
- `quarantine` (`first_batch`, `source`): summarise counts the records this run rejected, by
  source. It read every record ever rejected, and a shop's rejects only grow.

On Postgres the indexes are not built `CONCURRENTLY`: pause the DAGs while the upgrade runs.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_current_detections_batch_open", "current_detections", ["batch_key", "open"])
    op.create_index("ix_quarantine_first_batch_source", "quarantine", ["first_batch", "source"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_first_batch_source", "quarantine")
    op.drop_index("ix_current_detections_batch_open", "current_detections")
