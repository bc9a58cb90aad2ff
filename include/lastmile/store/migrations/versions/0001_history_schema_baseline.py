"""History schema baseline: exactly the tables `metadata.create_all` built before migrations.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

A database created by the old `create_all` is stamped at this revision (lastmile.store.migrate), so this
migration must keep matching what that code built. Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("cadence", sa.String(16), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("next_delivery_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id"),
    )
    op.create_index("ix_subscriptions_customer_id", "subscriptions", ["customer_id"])
    op.create_table(
        "orders",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("placed_at", TS, nullable=False),
        sa.Column("subscription_id", sa.String(64), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_index("ix_orders_customer_id", "orders", ["customer_id"])
    op.create_table(
        "order_lines",
        sa.Column("order_line_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("order_line_id"),
    )
    op.create_index("ix_order_lines_order_id", "order_lines", ["order_id"])
    op.create_table(
        "shipments",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("order_line_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("tracking_code", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("promised_date", sa.Date(), nullable=False),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("dest_tz", sa.String(64), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("replaces_shipment_id", sa.String(64), nullable=True),
        sa.Column("tracking_account", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("shipment_id"),
        sa.UniqueConstraint("tracking_code"),
    )
    op.create_index("ix_shipments_order_line_id", "shipments", ["order_line_id"])
    op.create_index("ix_shipments_order_id", "shipments", ["order_id"])
    op.create_table(
        "scans",
        sa.Column("scan_id", sa.String(40), nullable=False),
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("utc_offset_minutes", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("carrier_status", sa.String(64), nullable=False),
        sa.Column("carrier_status_detail", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("city", sa.String(128), nullable=True),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scan_id"),
    )
    op.create_index("ix_scans_shipment_id", "scans", ["shipment_id"])
    op.create_table(
        "estimates",
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("est_delivery_date", sa.Date(), nullable=False),
        sa.Column("observed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("shipment_id", "est_delivery_date"),
    )
    op.create_table(
        "detections",
        sa.Column("batch_key", sa.String(40), nullable=False),
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
        sa.PrimaryKeyConstraint("batch_key", "shipment_id", "exception_type"),
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(80), nullable=False),
        sa.Column("order_line_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("shipment_id", sa.String(64), nullable=False),
        sa.Column("exception_type", sa.String(32), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("resolution", sa.String(32), nullable=True),
        sa.Column("shipments_in_chain", sa.Integer(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("first_evidence_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("window_earliest", sa.Date(), nullable=True),
        sa.Column("window_latest", sa.Date(), nullable=True),
        sa.Column("window_basis", sa.String(64), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("last_batch", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("case_id"),
        sa.UniqueConstraint("order_line_id"),
    )
    op.create_index("ix_cases_order_id", "cases", ["order_id"])
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(80), nullable=False),
        sa.Column("batch_key", sa.String(40), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "event", "detail", name="uq_case_event"),
    )
    op.create_index("ix_case_events_case_id", "case_events", ["case_id"])
    op.create_table(
        "outbox",
        sa.Column("message_key", sa.String(160), nullable=False),
        sa.Column("case_id", sa.String(80), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=True),
        sa.Column("recipient_name", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("window_earliest", sa.Date(), nullable=True),
        sa.Column("window_latest", sa.Date(), nullable=True),
        sa.Column("planned_at", TS, nullable=False),
        sa.Column("planned_batch", sa.String(40), nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.Column("send_at", TS, nullable=True),
        sa.Column("transport_ref", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("message_key"),
    )
    op.create_index("ix_outbox_case_id", "outbox", ["case_id"])
    op.create_index("ix_outbox_order_id", "outbox", ["order_id"])
    op.create_table(
        "suppressions",
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("synced_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("email", "kind"),
    )
    op.create_table(
        "quarantine",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("first_batch", sa.String(40), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("source", "record_id", "field"),
    )
    op.create_table(
        "feed_health",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("batch_key", sa.String(40), nullable=False),
        sa.Column("vendor", sa.String(16), nullable=False),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("shipments_asked", sa.Integer(), nullable=False),
        sa.Column("trackers_received", sa.Integer(), nullable=False),
        sa.Column("trackers_updated", sa.Integer(), nullable=False),
        sa.Column("scans_new", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("account", "batch_key"),
    )
    op.create_table(
        "source_watermarks",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("watermark", TS, nullable=False),
        sa.Column("batch_key", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("source", "entity"),
    )
    op.create_table(
        "run_steps",
        sa.Column("batch_key", sa.String(40), nullable=False),
        sa.Column("step", sa.String(96), nullable=False),
        sa.Column("as_of", TS, nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("batch_key", "step"),
    )


def downgrade() -> None:
    # Indexes go with their tables.
    for table in ("run_steps", "source_watermarks", "feed_health", "quarantine", "suppressions", "outbox",
                  "case_events", "cases", "detections", "estimates", "scans", "shipments", "order_lines",
                  "orders", "subscriptions", "customers"):
        op.drop_table(table)
