"""tracker_events: the trackers a carrier pushed to us, so that an hour reads what changed.

EasyPost has no "updated since" filter: an account of its was asked about every parcel in flight
every hour (at 1M shipments, 100,000 parcels an hour). It pushes each change instead, as a signed
`tracker.updated` event, to a webhook: the ops plugin's `/easypost/<account>/events` endpoint
verifies each delivery and stores its Tracker here (carriers/easypost_events.py). An hour then
reads the account's pushes since its previous fetch, one range of (account, received_at), and
skips a version of a tracker older than one read before (account, tracker_id, tracker_updated_at,
then event_created_at); the day's first fetch still asks about every parcel, which also mends a
push that never came.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracker_events",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("tracker_id", sa.String(100), nullable=False),
        sa.Column("tracking_code", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tracker_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("event_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tracker", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account", "event_id"),
    )
    op.create_index("ix_tracker_events_account_received", "tracker_events", ["account", "received_at"])
    op.create_index("ix_tracker_events_account_tracker", "tracker_events", ["account", "tracker_id", "tracker_updated_at"])
    op.create_index("ix_tracker_events_account_code", "tracker_events", ["account", "tracking_code"])


def downgrade() -> None:
    op.drop_index("ix_tracker_events_account_code", table_name="tracker_events")
    op.drop_index("ix_tracker_events_account_tracker", table_name="tracker_events")
    op.drop_index("ix_tracker_events_account_received", table_name="tracker_events")
    op.drop_table("tracker_events")
