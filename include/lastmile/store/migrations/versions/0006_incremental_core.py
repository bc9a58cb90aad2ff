"""The incremental core: current detections, learned samples, and what each batch changed.

- current_detections: each shipment's exceptions as last computed (one row per shipment and
  type); a run re-detects only the shipments whose facts or clock changed and replaces theirs.
- transit_samples / estimate_samples: what windows learn from, one row per delivered parcel (and
  per carrier estimate it had), written once when the parcel is delivered -- not recomputed from
  every delivered parcel every hour.
- batch_changes: the shipments a batch's load_orders wrote (new, updated, or of an order whose
  status changed): detection looks at them again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "current_detections",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("exception_type", sa.String(32), nullable=False),
        sa.Column("order_line_id", sa.String(64), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("first_evidence_at", TS, nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("window_earliest", sa.Date(), nullable=True),
        sa.Column("window_latest", sa.Date(), nullable=True),
        sa.Column("window_basis", sa.String(64), nullable=True),
        sa.Column("batch_key", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id", "exception_type"),
    )
    op.create_index("ix_current_detections_order_line_id", "current_detections", ["order_line_id"])
    op.create_table(
        "transit_samples",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("accepted_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=False),
        sa.Column("transit_bd", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id"),
    )
    op.create_index("ix_transit_samples_carrier_delivered", "transit_samples", ["carrier", "delivered_at"])
    op.create_table(
        "estimate_samples",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("est_delivery_date", sa.Date(), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("revision", sa.Boolean(), nullable=False),
        sa.Column("delivered_at", TS, nullable=False),
        sa.Column("error_bd", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id", "est_delivery_date"),
    )
    op.create_index("ix_estimate_samples_carrier_delivered", "estimate_samples", ["carrier", "delivered_at"])
    op.create_table(
        "batch_changes",
        sa.Column("batch_key", sa.String(40), nullable=False),
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("batch_key", "shipment_id"),
    )
    op.create_index("ix_scans_first_seen_at", "scans", ["first_seen_at"])
    op.create_index("ix_scans_occurred_at", "scans", ["occurred_at"])
    # Which parcels are finished (a terminal scan by then), read from the index alone.
    op.create_index("ix_scans_status_occurred", "scans", ["status", "occurred_at", "shipment_id"])
    op.create_index("ix_shipments_created_at", "shipments", ["created_at"])
    op.create_index("ix_estimates_observed_at", "estimates", ["observed_at"])
    op.create_index("ix_outbox_planned_at", "outbox", ["planned_at"])  # the outbox page: the newest


def downgrade() -> None:
    op.drop_index("ix_outbox_planned_at", "outbox")
    op.drop_index("ix_estimates_observed_at", "estimates")
    op.drop_index("ix_shipments_created_at", "shipments")
    op.drop_index("ix_scans_status_occurred", "scans")
    op.drop_index("ix_scans_occurred_at", "scans")
    op.drop_index("ix_scans_first_seen_at", "scans")
    for table in ("batch_changes", "estimate_samples", "transit_samples", "current_detections"):
        op.drop_table(table)
