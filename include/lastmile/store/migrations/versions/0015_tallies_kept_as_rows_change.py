"""Counts over the whole history kept as its rows change (`tally_deltas`), not counted every hour.

Every hour the run's story for ops counts the messages by state, the sent ones by kind, the cases
by state, the rejects by source and the current detections by type (open, and all): until now each
a walk of an index over everything ever written, the only reads of an hour that grew with the
whole history (at 100k shipments on Postgres 15 ms of the server's time in every hour, ten times
that at 1M). Triggers on those four tables now add what each write changes to `tally_deltas`, in
the writing transaction itself, so a count is never out of step with its rows whoever writes them
(a step, the ops page, a fix by hand in SQL: INSERT, UPDATE, DELETE, and on Postgres TRUNCATE; not
SQLite's REPLACE, whose delete fires no trigger, nor a Postgres restore with triggers disabled). A
count is the sum of its rows; they are folded into one row per key by detection (store/tallies.fold).

The deltas are only ever inserted: two overlapping runs never wait on, or deadlock over, a count's
row. SQLite: a trigger per row. Postgres: a trigger per statement, over its transition tables, set
based (the first full run's million rows are a few statements), into the `tally_deltas` of the
schema the written table is in (two histories in one database keep their own counts).

The index on current_detections (`open`, `exception_type`) only served the count: it goes.

Triggers and counts are created before the counts are filled, in one transaction: on Postgres
CREATE TRIGGER takes a lock that keeps writers out until the upgrade commits, so no write falls
between the count and its trigger. Pause the DAGs while the upgrade runs all the same.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Frozen: it imports nothing from lastmile.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# (count's name, table, the key it counts by, which rows count: a condition on the row `{r}`)
TALLIES = (
    ("outbox.state", "outbox", "state", None),
    ("outbox.sent_by_kind", "outbox", "kind", "{r}.state = 'sent'"),
    ("cases.state", "cases", "state", None),
    ("quarantine.source", "quarantine", "source", None),
    ("current_detections.type", "current_detections", "exception_type", None),
    ("current_detections.open_type", "current_detections", "exception_type", "{r}.open"),
)
# The columns a table's counts read: an update that changes none of them changes no count.
WATCHED = {"outbox": ("state", "kind"), "cases": ("state",), "quarantine": ("source",),
           "current_detections": ("exception_type", "open")}
TABLES = tuple(WATCHED)


def _parts(table: str, source: str, n: int) -> list[str]:
    """One SELECT per count of `table`: its name, its key and `n` for each row of `source` that counts."""
    return [f"SELECT '{name}' AS name, {source}.{key} AS key, {n} AS n FROM {source}"
            + (f" WHERE {cond.format(r=source)}" if cond else "")
            for name, t, key, cond in TALLIES if t == table]


def _sqlite_triggers(table: str) -> list[str]:
    def rows(row: str, n: int) -> str:
        # (SELECT without FROM: a row trigger's rows are NEW and OLD, not tables)
        return "".join(f"INSERT INTO tally_deltas (name, key, n) SELECT '{name}', {row}.{key}, {n}"
                       + (f" WHERE {cond.format(r=row)}" if cond else "") + ";\n"
                       for name, t, key, cond in TALLIES if t == table)

    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in WATCHED[table])
    return [f"CREATE TRIGGER tally_{table}_insert AFTER INSERT ON {table} BEGIN\n{rows('NEW', 1)}END",
            f"CREATE TRIGGER tally_{table}_update AFTER UPDATE ON {table} WHEN {changed} BEGIN\n"
            f"{rows('OLD', -1)}{rows('NEW', 1)}END",
            f"CREATE TRIGGER tally_{table}_delete AFTER DELETE ON {table} BEGIN\n{rows('OLD', -1)}END"]


def _postgres_triggers(table: str) -> list[str]:
    # (into the tally_deltas of the schema the written table is in, named at each call: a function
    # pinned to a search_path would resolve "$user" when it runs, and could count into another
    # history's schema)
    def run(sql: str) -> str:
        return f"EXECUTE format($sql${sql}$sql$, TG_TABLE_SCHEMA);"

    def delta(*sources: tuple[str, int]) -> str:
        union = " UNION ALL ".join(p for source, n in sources for p in _parts(table, source, n))
        return run(f"INSERT INTO %I.tally_deltas (name, key, n) SELECT name, key, sum(n) FROM ({union}) AS d "
                   "GROUP BY name, key HAVING sum(n) <> 0")

    names = ", ".join(f"'{name}'" for name, t, _, _ in TALLIES if t == table)
    function = (
        f"CREATE FUNCTION tally_{table}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        f"  IF TG_OP = 'INSERT' THEN {delta(('new_rows', 1))}\n"
        f"  ELSIF TG_OP = 'UPDATE' THEN {delta(('old_rows', -1), ('new_rows', 1))}\n"
        f"  ELSIF TG_OP = 'DELETE' THEN {delta(('old_rows', -1))}\n"
        # (TRUNCATE locks the table against every writer: nothing else is counting it meanwhile)
        f"  ELSE {run(f'DELETE FROM %I.tally_deltas WHERE name IN ({names})')}\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $$")
    on = f"ON {table} REFERENCING"
    call = f"FOR EACH STATEMENT EXECUTE FUNCTION tally_{table}()"
    return [function,
            f"CREATE TRIGGER tally_{table}_insert AFTER INSERT {on} NEW TABLE AS new_rows {call}",
            f"CREATE TRIGGER tally_{table}_update AFTER UPDATE {on} OLD TABLE AS old_rows NEW TABLE AS new_rows {call}",
            f"CREATE TRIGGER tally_{table}_delete AFTER DELETE {on} OLD TABLE AS old_rows {call}",
            f"CREATE TRIGGER tally_{table}_truncate AFTER TRUNCATE ON {table} {call}"]


def upgrade() -> None:
    op.create_table(
        "tally_deltas",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(48), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
    )
    op.create_index("ix_tally_deltas_name_key", "tally_deltas", ["name", "key", "n"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        for statement in (_postgres_triggers if postgres else _sqlite_triggers)(table):
            op.execute(statement)
    for table in TABLES:
        union = " UNION ALL ".join(_parts(table, table, 1))
        op.execute(f"INSERT INTO tally_deltas (name, key, n) SELECT name, key, sum(n) FROM ({union}) AS d "
                   "GROUP BY name, key")
    op.drop_index("ix_current_detections_open_type", "current_detections")


def downgrade() -> None:
    op.create_index("ix_current_detections_open_type", "current_detections", ["open", "exception_type"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        for event in ("insert", "update", "delete", *(("truncate",) if postgres else ())):
            op.execute(f"DROP TRIGGER tally_{table}_{event}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION tally_{table}()")
    op.drop_index("ix_tally_deltas_name_key", "tally_deltas")
    op.drop_table("tally_deltas")
