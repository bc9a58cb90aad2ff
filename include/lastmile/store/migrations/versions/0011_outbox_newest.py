"""The outbox's newest messages through an index on (planned_at, message_key).

The outbox page lists the newest messages in (planned_at, message_key) order. With an index on
planned_at alone, both databases sorted the whole outbox on every send run (Postgres also cut the
head of every message's HTML to do so); with both columns the newest are read in order and the
rest never. It replaces the index on planned_at, which every use of it can read as well.

On Postgres the index is not built `CONCURRENTLY`: pause the DAGs while the upgrade runs.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_planned_at_key", "outbox", ["planned_at", "message_key"])
    op.drop_index("ix_outbox_planned_at", "outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_planned_at", "outbox", ["planned_at"])
    op.drop_index("ix_outbox_planned_at_key", "outbox")
