"""An hour's lookups by state and zone, through indexes instead of passes over the history; what
a batch loaded, by content.

- shipments by dest_tz: the zones the history delivers to are read by a walk over this index
  (one probe per zone), so an hour asks which zones crossed a local midnight without listing
  every parcel in flight.
- outbox by (state, case_id): the messages still planned or sending, and a live case's sent
  promises; by planned_batch: what a batch planned.
- cases by (state, exception_type) and by last_batch: the live cases (not resolved) and the cases
  a batch changed, without reading every case ever opened.
- current_detections by (open, exception_type): the open exceptions, counted by type.
- batch_changes.digest: what the batch's load_orders wrote for each shipment (its row's and its
  order's content), so a load run again alone with other content is seen by the next detection
  (rows from before: NULL).

On a large history these take a while to build, and on Postgres they are not built
`CONCURRENTLY`: pause the DAGs while the upgrade runs.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_shipments_dest_tz", "shipments", ["dest_tz"]),
    ("ix_outbox_state_case", "outbox", ["state", "case_id"]),
    ("ix_outbox_planned_batch", "outbox", ["planned_batch"]),
    ("ix_cases_state_type", "cases", ["state", "exception_type"]),
    ("ix_cases_last_batch", "cases", ["last_batch"]),
    ("ix_current_detections_open_type", "current_detections", ["open", "exception_type"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    op.add_column("batch_changes", sa.Column("digest", sa.String(40), nullable=True))


def downgrade() -> None:
    op.drop_column("batch_changes", "digest")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table)
