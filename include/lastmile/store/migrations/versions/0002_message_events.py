"""What the e-mail provider said about each message (message_events); an index for history lookups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

`message_events` is fed by SendGrid's Event Webhook (one row per event, keyed by its sg_event_id so
a redelivered event is stored once). Promises and runs are views (migration 0003) over the outbox
and run_steps, which already hold every window we sent and every step of every run.
Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_events",
        sa.Column("provider_event_id", sa.String(100), nullable=False),
        sa.Column("message_key", sa.String(160), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("provider_event_id"),
    )
    op.create_index("ix_message_events_message_key", "message_events", ["message_key"])
    # Detections keep one row per batch; the views ask "was this shipment ever late?" across batches.
    op.create_index("ix_detections_shipment_type", "detections", ["shipment_id", "exception_type"])


def downgrade() -> None:
    op.drop_index("ix_detections_shipment_type", table_name="detections")
    op.drop_table("message_events")
