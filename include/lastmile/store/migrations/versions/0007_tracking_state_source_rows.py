"""Per-shipment tracking state, per-row digests of what the shop sent, what exceptions took,
each shipment's destination country, a wide window's check-in date.

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
    # A wide window's promise: the date by which we write again, whatever happens.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("check_in_by", sa.Date(), nullable=True))
    # The destination country whose calendar counts a parcel's business days (NULL on older rows:
    # the country of its time zone, as the code reads it).
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("dest_country", sa.String(2), nullable=True))
    with op.batch_alter_table("transit_samples") as batch:
        batch.add_column(sa.Column("max_gap_bd", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("pickup_wait_bd", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("learned_at", TS, nullable=True))
    op.execute("UPDATE transit_samples SET learned_at = delivered_at")
    op.create_index("ix_transit_samples_carrier_learned", "transit_samples", ["carrier", "learned_at"])
    op.create_table(
        "tracking_state",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("shipment_id"),
    )
    op.create_index("ix_tracking_state_finished_at", "tracking_state", ["finished_at"])
    # Terminal statuses as of this revision (lastmile.core.status.TERMINAL).
    # One grouped pass over the terminal scans (a subquery per shipment can walk them all each time).
    op.execute(
        "INSERT INTO tracking_state (shipment_id, finished_at) "
        "SELECT s.shipment_id, f.finished_at FROM shipments s LEFT JOIN ("
        "SELECT shipment_id, MIN(occurred_at) AS finished_at FROM scans "
        "WHERE status IN ('cancelled', 'delivered', 'failed', 'returned') GROUP BY shipment_id"
        ") f ON f.shipment_id = s.shipment_id")
    op.create_table(
        "source_rows",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(40), nullable=False),
        sa.Column("batch_key", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("source", "entity", "record_id"),
    )
    op.create_table(
        "exception_samples",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("exception_type", sa.String(32), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("evidence_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=False),
        sa.Column("remaining_bd", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id", "exception_type"),
    )
    op.create_index("ix_exception_samples_type_carrier_delivered", "exception_samples",
                    ["exception_type", "carrier", "delivered_at"])
    op.create_index("ix_exception_samples_type_delivered", "exception_samples", ["exception_type", "delivered_at"])
    op.execute(f"CREATE VIEW v_check_ins AS {_CHECK_INS[op.get_context().dialect.name]}")


# Every check-in date we promised (a wide window), and whether we kept it: the next e-mail to the
# case after the promise went out by the end of that day (UTC). Pending while the day has not come.
_CHECK_INS = {
    "sqlite": """
SELECT p.case_id, p.message_key AS promised_in, p.check_in_by, n.next_sent_at,
       CASE WHEN n.next_sent_at IS NOT NULL AND n.next_sent_at < date(p.check_in_by, '+1 day') THEN 1
            WHEN date('now') > p.check_in_by THEN 0 END AS kept
FROM outbox p
LEFT JOIN (SELECT q.message_key, MIN(f.sent_at) AS next_sent_at FROM outbox q
           JOIN outbox f ON f.case_id = q.case_id AND f.state = 'sent' AND f.planned_at > q.planned_at
           WHERE q.check_in_by IS NOT NULL GROUP BY q.message_key) n ON n.message_key = p.message_key
WHERE p.check_in_by IS NOT NULL AND p.state = 'sent'""",
    "postgresql": """
SELECT p.case_id, p.message_key AS promised_in, p.check_in_by, n.next_sent_at,
       CASE WHEN n.next_sent_at IS NOT NULL AND n.next_sent_at < ((p.check_in_by + 1)::timestamp AT TIME ZONE 'UTC')
            THEN 1 WHEN (now() AT TIME ZONE 'UTC')::date > p.check_in_by THEN 0 END AS kept
FROM outbox p
LEFT JOIN (SELECT q.message_key, MIN(f.sent_at) AS next_sent_at FROM outbox q
           JOIN outbox f ON f.case_id = q.case_id AND f.state = 'sent' AND f.planned_at > q.planned_at
           WHERE q.check_in_by IS NOT NULL GROUP BY q.message_key) n ON n.message_key = p.message_key
WHERE p.check_in_by IS NOT NULL AND p.state = 'sent'""",
}


def downgrade() -> None:
    op.execute("DROP VIEW v_check_ins")
    op.drop_column("outbox", "check_in_by")
    # (not batch: a rebuilt shipments table would break the views that read it; SQLite drops natively)
    op.drop_column("shipments", "dest_country")
    op.drop_index("ix_exception_samples_type_delivered", "exception_samples")
    op.drop_index("ix_exception_samples_type_carrier_delivered", "exception_samples")
    op.drop_table("exception_samples")
    op.drop_table("source_rows")
    op.drop_index("ix_transit_samples_carrier_learned", "transit_samples")
    with op.batch_alter_table("transit_samples") as batch:
        batch.drop_column("learned_at")
        batch.drop_column("pickup_wait_bd")
        batch.drop_column("max_gap_bd")
    op.drop_index("ix_tracking_state_finished_at", "tracking_state")
    op.drop_table("tracking_state")
