"""Postgres: the counting trigger functions of 0015 run static SQL, pinned to their schema by name.

0015 has each trigger function name its schema at every call (`EXECUTE format(...,
TG_TABLE_SCHEMA)`): Postgres plans an EXECUTE again each time, and a statement trigger fires for
every row of an executemany. Static SQL keeps its plan for the session. The function is pinned
(`SET search_path`), by its name, to the schema that holds the history: where this session's
search_path finds `tally_deltas` (in a DO block, so `upgrade --sql` prints it too). Pinned to the
search_path's text instead, "$user" would be resolved as each write runs and could count into
another history's schema. CREATE OR REPLACE keeps the triggers that call the functions. (From
3c06047 until this migration, 0015 itself was edited to write these functions; a history created
then gets the same functions again.)

SQLite: nothing (its triggers are plain SQL).

downgrade() leaves the functions as they are: they count exactly as 0015's first form did, and
0015's downgrade drops them either way.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

Frozen: it imports nothing from lastmile (the counts are copied from 0015).
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# (count's name, table, the key it counts by, which rows count: a condition on the row `{r}`), as 0015
TALLIES = (
    ("outbox.state", "outbox", "state", None),
    ("outbox.sent_by_kind", "outbox", "kind", "{r}.state = 'sent'"),
    ("cases.state", "cases", "state", None),
    ("quarantine.source", "quarantine", "source", None),
    ("current_detections.type", "current_detections", "exception_type", None),
    ("current_detections.open_type", "current_detections", "exception_type", "{r}.open"),
)
TABLES = ("outbox", "cases", "quarantine", "current_detections")


def _function(table: str) -> str:
    def delta(*sources: tuple[str, int]) -> str:
        union = " UNION ALL ".join(
            f"SELECT '{name}' AS name, {source}.{key} AS key, {n} AS n FROM {source}"
            + (f" WHERE {cond.format(r=source)}" if cond else "")
            for source, n in sources for name, t, key, cond in TALLIES if t == table)
        return (f"INSERT INTO tally_deltas (name, key, n) SELECT name, key, sum(n) FROM ({union}) AS d "
                "GROUP BY name, key HAVING sum(n) <> 0;")

    names = ", ".join(f"'{name}'" for name, t, _, _ in TALLIES if t == table)
    body = (
        "BEGIN\n"
        f"  IF TG_OP = 'INSERT' THEN {delta(('new_rows', 1))}\n"
        f"  ELSIF TG_OP = 'UPDATE' THEN {delta(('old_rows', -1), ('new_rows', 1))}\n"
        f"  ELSIF TG_OP = 'DELETE' THEN {delta(('old_rows', -1))}\n"
        # (TRUNCATE locks the table against every writer: nothing else is counting it meanwhile)
        f"  ELSE DELETE FROM tally_deltas WHERE name IN ({names});\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END")
    # (in the schema that holds the history's tally_deltas, as this session's search_path finds it:
    # a schema made since, earlier on that path, gets no stray copy)
    return ("DO $do$ DECLARE s name; BEGIN "
            "SELECT n.nspname INTO STRICT s FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass('tally_deltas'); "
            "EXECUTE format($f$"
            f"CREATE OR REPLACE FUNCTION %I.tally_{table}() RETURNS trigger LANGUAGE plpgsql SET search_path = %I "
            f"AS $body$\n{body}\n$body$$f$, s, s); END $do$")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(_function(table))


def downgrade() -> None:
    pass
