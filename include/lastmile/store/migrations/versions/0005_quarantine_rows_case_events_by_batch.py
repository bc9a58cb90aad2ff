"""Quarantine keeps every bad row (file and row in its key); case events are keyed by batch.

- quarantine: three copies of one id, or several rows with an empty id, were one row under the
  key (source, record_id, field). The file (or table) and the row number now belong to the key.
- case_events: (case_id, event, detail) was unique, so a case that came back to a state it had
  been in before (delivered, reshipped, delivered again) could not record it and jammed every
  later run. The history is append-only per batch: (case_id, batch_key, event, detail).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _quarantine(name: str, keyed_by_row: bool) -> sa.Table:
    cols = [
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
    ]
    if keyed_by_row:
        cols += [sa.Column("file", sa.String(255), nullable=False),
                 sa.Column("row_no", sa.Integer(), nullable=False)]
    cols += [
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("first_batch", sa.String(40), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
    ]
    key = ("source", "file", "row_no", "record_id", "field") if keyed_by_row else ("source", "record_id", "field")
    return op.create_table(name, *cols, sa.PrimaryKeyConstraint(*key, name="pk_quarantine" if keyed_by_row else "pk_quarantine_v4"))




COMMON = "source, record_id, field, reason, payload, first_batch, first_seen_at"


def upgrade() -> None:
    _quarantine("quarantine_new", keyed_by_row=True)
    op.execute(f"INSERT INTO quarantine_new ({COMMON}, file, row_no) SELECT {COMMON}, '', 0 FROM quarantine")
    op.drop_table("quarantine")
    op.rename_table("quarantine_new", "quarantine")
    with op.batch_alter_table("case_events") as batch:
        batch.drop_constraint("uq_case_event", type_="unique")
        batch.create_unique_constraint("uq_case_event_batch", ["case_id", "batch_key", "event", "detail"])


def downgrade() -> None:
    # Older code cannot hold a repeated event: keep the first of each (case_id, event, detail).
    op.execute("DELETE FROM case_events WHERE id NOT IN "
               "(SELECT MIN(id) FROM case_events GROUP BY case_id, event, detail)")
    with op.batch_alter_table("case_events") as batch:
        batch.drop_constraint("uq_case_event_batch", type_="unique")
        batch.create_unique_constraint("uq_case_event", ["case_id", "event", "detail"])
    _quarantine("quarantine_old", keyed_by_row=False)
    op.execute(f"INSERT INTO quarantine_old ({COMMON}) SELECT {COMMON} FROM quarantine "
               "WHERE (source, file, row_no, record_id, field) IN (SELECT source, MIN(file), MIN(row_no), "
               "record_id, field FROM quarantine GROUP BY source, record_id, field)")
    op.drop_table("quarantine")
    op.rename_table("quarantine_old", "quarantine")
