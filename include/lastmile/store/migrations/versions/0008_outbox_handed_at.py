"""When a sending run handed each message to the provider; messages confirmed sent by hand count.

- outbox.handed_at: the instant the last sending run claimed the message (planned → sending), so a
  message a person later confirms as sent ("Mark sent") is recorded as sent then, not when it was
  planned (it may have waited for the daily cap, a retry or a resend) nor when the person answered.
- Messages confirmed by hand before this migration were left with no sent_at and their case
  `open`, so no analyst view counted them: they get the best instant known (their scheduled
  delivery, else when they were planned), and an open case whose notice was sent becomes `told`,
  as a send makes it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (not batch: a rebuilt outbox table would break the views that read it; both add natively)
    op.add_column("outbox", sa.Column("handed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE outbox SET sent_at = COALESCE(send_at, planned_at) WHERE state = 'sent' AND sent_at IS NULL")
    op.execute("UPDATE cases SET state = 'told' WHERE state = 'open' AND case_id IN "
               "(SELECT case_id FROM outbox WHERE kind = 'notice' AND state = 'sent')")


def downgrade() -> None:
    op.drop_column("outbox", "handed_at")
