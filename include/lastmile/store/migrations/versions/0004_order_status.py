"""An order's status from the shop (open, cancelled, refunded): a case resolves when the order does.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("status")
