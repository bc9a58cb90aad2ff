"""tracking_state keeps a copy of what a carrier is asked by: a poll lists the parcels in flight
from it alone.

Every polled hour lists every parcel in flight with the columns a carrier is asked by. They lived
in `shipments` only, so the listing looked each parcel up there: at 100k shipments 11,000 lookups,
30 ms of the hour on SQLite and 40 ms on Postgres, ten times that at 1M. `tracking_state` now holds
`tracking_code`, `carrier`, `service`, `origin`, `destination`, `created_at` and
`tracking_account` as `shipments` has them; load_orders copies them whenever it writes a
shipment (store/progress.track), in the same transaction. Here they are filled from `shipments`
in one statement, then indexed so that the listing reads the index alone
(`ix_tracking_state_poll`: on SQLite at 100k, 15 ms for the 11,000 parcels in flight against 26 ms
through the rows). It begins with `finished_at`, so it replaces the index on `finished_at` alone.

On Postgres the copy rewrites every row of tracking_state (one per shipment): pause the DAGs while
the upgrade runs.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
COPIED = (("carrier", sa.String(32)), ("service", sa.String(64)), ("tracking_code", sa.String(64)),
          ("created_at", TS), ("origin", sa.String(64)), ("destination", sa.String(64)),
          ("tracking_account", sa.String(64)))


def upgrade() -> None:
    with op.batch_alter_table("tracking_state") as batch:
        for name, type_ in COPIED:
            batch.add_column(sa.Column(name, type_, nullable=True))
    names = ", ".join(name for name, _ in COPIED)
    op.execute(f"UPDATE tracking_state SET ({names}) = (SELECT {names} FROM shipments s "
               "WHERE s.shipment_id = tracking_state.shipment_id)")
    op.create_index("ix_tracking_state_poll", "tracking_state",
                    ["finished_at", "created_at", "tracking_account", "shipment_id", "tracking_code", "carrier",
                     "service", "origin", "destination"])
    # It begins with finished_at: the index on finished_at alone would only be a second copy to write.
    op.drop_index("ix_tracking_state_finished_at", "tracking_state")


def downgrade() -> None:
    op.create_index("ix_tracking_state_finished_at", "tracking_state", ["finished_at"])
    op.drop_index("ix_tracking_state_poll", "tracking_state")
    with op.batch_alter_table("tracking_state") as batch:
        for name, _ in reversed(COPIED):
            batch.drop_column(name)
