"""Counts over the whole history, kept as its rows change: read in what they count by, not in rows.

Triggers on the counted tables (migration 0015) add each write's change to `tally_deltas` in the
writing transaction; a count is the sum of its rows per key. An hour reads a few dozen rows for
what was a walk over every message, case, reject and detection ever written. The names below are
the triggers' (the migration is frozen: a new count is a new migration).
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Connection, delete, func, insert, select, tuple_

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


def fold(conn: Connection) -> int:
    """Fold each key's rows into one (an hour's writes add a few); returns the rows folded away.

    Exact under any overlap: the rows deleted are summed as returned, and a row another writer has
    not committed yet is neither seen nor deleted. Call it inside `writing`: two folds at once would
    delete the same rows, on Postgres in an order that may deadlock."""
    t = schema.tally_deltas
    several = select(t.c.name, t.c.key).group_by(t.c.name, t.c.key).having(func.count() > 1)
    gone = conn.execute(delete(t).where(tuple_(t.c.name, t.c.key).in_(several))
                        .returning(t.c.name, t.c.key, t.c.n)).all()
    sums: Counter[tuple[str, str]] = Counter()
    for name, key, n in gone:
        sums[(name, key)] += n
    kept = [{"name": name, "key": key, "n": n} for (name, key), n in sorted(sums.items()) if n]
    if kept:
        conn.execute(insert(t), kept)
    return len(gone) - len(kept)
