"""Counts over the whole history, kept as its rows change: read in what they count by, not in rows.

Triggers on the counted tables (migration 0015) add each write's change to `tally_deltas` in the
writing transaction; a count is the sum of its rows per key. An hour reads a few dozen rows for
what was a walk over every message, case, reject and detection ever written. The names below are
the triggers' (the migration is frozen: a new count is a new migration).
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select, text

from lastmile.store import schema

OUTBOX_BY_STATE = "outbox.state"
SENT_BY_KIND = "outbox.sent_by_kind"
CASES_BY_STATE = "cases.state"
QUARANTINED_BY_SOURCE = "quarantine.source"
DETECTIONS_BY_TYPE = "current_detections.type"
OPEN_DETECTIONS_BY_TYPE = "current_detections.open_type"


def counts(conn: Connection, name: str) -> dict[str, int]:
    """The count `name`, by key (keys counting nothing left out, as a GROUP BY would), in key order."""
    t = schema.tally_deltas.c
    total = func.sum(t.n)
    return {key: int(n) for key, n in conn.execute(
        select(t.key, total).where(t.name == name).group_by(t.key).having(total != 0).order_by(t.key)).all()}


def fold(conn: Connection) -> None:
    """Fold each key's rows into one (an hour's writes add a few; a first run over a large history,
    on SQLite, millions): in the database, set-based, nothing read into Python.

    Exact under any overlap. Postgres: one statement sums exactly the rows it deletes, and a row
    another writer has not committed is neither summed nor deleted. SQLite: `writing` holds the
    database's only write lock, so nothing is written between the sum and the delete. Call it
    inside `writing` (on Postgres two folds at once could deadlock over the rows they delete)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(
            "WITH several AS (SELECT name, key FROM tally_deltas GROUP BY name, key HAVING count(*) > 1),"
            " gone AS (DELETE FROM tally_deltas WHERE (name, key) IN (SELECT name, key FROM several)"
            " RETURNING name, key, n)"
            " INSERT INTO tally_deltas (name, key, n) SELECT name, key, sum(n) FROM gone GROUP BY name, key"
            " HAVING sum(n) <> 0"))
        return
    top = conn.execute(text("SELECT max(id) FROM tally_deltas")).scalar()
    if top is None:
        return
    several = "FROM tally_deltas WHERE id <= :top GROUP BY name, key HAVING count(*) > 1"  # keys with rows to fold
    conn.execute(text(f"INSERT INTO tally_deltas (name, key, n) SELECT name, key, sum(n) {several} AND sum(n) <> 0"),
                 {"top": top})
    conn.execute(text(f"DELETE FROM tally_deltas WHERE id <= :top AND (name, key) IN (SELECT name, key {several})"),
                 {"top": top})
