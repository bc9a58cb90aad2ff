"""What the rules and windows learned as of a cutoff, kept in the history (`learned_statistics`).

A detection run needs the silence thresholds, and compute_windows the grouped samples, as they
stood for each destination's day (core/calendar.learned_by: the last UTC midnight at or before its
start): one or two cutoffs an hour, each needed every hour of a day. They are computed by the
first run that needs a cutoff and read by the runs after it, so an hour no longer re-reads and
re-fits thousands of delivered parcels.

A kept value is exactly what computing it again would give: whoever writes samples calls `forget`
with the earliest instant a changed sample counts from, and every value with a later cutoff goes
(that is rare in hourly runs: a sample counts from when it was learned or delivered, which is after
the cutoffs already kept, unless an earlier date is re-run or a late scan lands).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import Connection, delete, select

from lastmile.store import schema
from lastmile.store.db import upsert, utc
from lastmile.store.queries import chunks, distinct_keys, samples_before

T = TypeVar("T")
# Kept values older than this before the run's instant are dropped when a run computes new ones:
# only today's cutoffs are read every hour; an earlier date re-run computes its own again.
KEEP = timedelta(days=3)


def version(*parts: Any) -> str:
    """A short fingerprint of the settings and code a value depends on (a change recomputes it)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def kept(conn: Connection, kind: str, version_: str, cutoffs: Iterable[datetime], as_of: datetime,
         compute: Callable[[set[datetime]], Mapping[datetime, T]], encode: Callable[[T], Any],
         decode: Callable[[Any], T]) -> dict[datetime, T]:
    """The value of `kind` for each cutoff: kept ones read, missing ones computed and kept."""
    t = schema.learned_statistics
    wanted = {utc(c) for c in cutoffs}
    found: dict[datetime, T] = {}
    for cutoff, payload in conn.execute(select(t.c.cutoff, t.c.payload).where(
            t.c.kind == kind, t.c.version == version_, t.c.cutoff.in_(sorted(wanted)))).all():
        found[utc(cutoff)] = decode(json.loads(payload))  # type: ignore[index]
    missing = wanted - set(found)
    if missing:
        computed = compute(missing)
        conn.execute(delete(t).where(t.c.kind == kind, (t.c.version != version_) | (t.c.cutoff < as_of - KEEP)))
        upsert(conn, t, [{"kind": kind, "version": version_, "cutoff": cutoff, "computed_at": as_of,
                          "payload": json.dumps(encode(computed[cutoff]), separators=(",", ":"))}
                         for cutoff in sorted(missing)], update=["computed_at", "payload"])
        found.update({cutoff: computed[cutoff] for cutoff in missing})
    return found


def kept_from_samples(conn: Connection, kind: str, version_: str, cutoffs: Iterable[datetime], as_of: datetime,
                      table: Any, by: tuple[str, ...], limit: int, when: str,
                      fit: Callable[[pd.DataFrame, list[tuple[Any, ...]]], T], encode: Callable[[T], Any],
                      decode: Callable[[Any], T]) -> dict[datetime, T]:
    """`kept`, for a value fitted (`fit(samples, groups)`) from the latest `limit` samples of each
    group (the `by` columns) of `table` that count (`when`) before the cutoff."""

    def compute(missing: set[datetime]) -> dict[datetime, T]:
        # Every group, not only this batch's: a kept value serves every later batch of the day.
        groups = distinct_keys(conn, table, by)
        frames = samples_before(conn, table, groups, {c: c for c in missing}, limit, when=when, by=by)
        return {cutoff: fit(frame, groups) for cutoff, frame in frames.items()}

    return kept(conn, kind, version_, cutoffs, as_of, compute, encode, decode)


def forget(conn: Connection, kinds: Iterable[str], after: datetime | None) -> None:
    """Drop the kept values of `kinds` whose cutoff is later than `after` (None: nothing changed)."""
    if after is not None:
        t = schema.learned_statistics
        conn.execute(delete(t).where(t.c.kind.in_(list(kinds)), t.c.cutoff > after))


def forget_changed(conn: Connection, table: Any, rows: Sequence[Mapping[str, Any]], updated: Sequence[str],
                   counts_from: Mapping[str, Sequence[str]]) -> None:
    """Before `rows` are upserted into the samples `table` (a conflict updates the `updated`
    columns): for each kind, forget what was kept for a cutoff later than the earliest instant a new
    or changed row counts from (its `counts_from` columns, old and new values: a sample that moves
    leaves the cutoffs it counted for too)."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    compare = list(updated)  # what the upsert can change; other columns keep their first value
    columns = {*keys, *compare, *(c for cols in counts_from.values() for c in cols)}
    old: dict[tuple[Any, ...], dict[str, Any]] = {}
    for part in chunks({r["shipment_id"] for r in rows}):
        for row in conn.execute(select(*(table.c[c] for c in sorted(columns))).where(
                table.c.shipment_id.in_(part))).mappings():
            old[tuple(_plain(row[k]) for k in keys)] = dict(row)
    changed: list[Mapping[str, Any]] = []  # the new and changed rows, and the old values of changed ones
    for new in rows:
        before = old.get(tuple(_plain(new[k]) for k in keys)) if old else None
        if before is None:
            changed.append(new)
        elif any(_plain(before[c]) != _plain(new[c]) for c in compare):
            changed += [new, before]
    for kind, cols in counts_from.items():
        instants = [row[c] for row in changed for c in cols if row.get(c) is not None]
        forget(conn, [kind], min((utc(_plain(v)) for v in instants), default=None))


def _plain(value: Any) -> Any:
    """One form for a value read back from either database or handed over by pandas."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        return utc(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
