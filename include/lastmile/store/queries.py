"""Reads of the history that several steps (and the ops page) share: one home each."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from sqlalchemy import Connection, func, select

from lastmile.store import schema, tallies
from lastmile.store.db import batch_key_for, utc

if TYPE_CHECKING:
    from lastmile.config import Settings


def distinct_values(conn: Connection, column: Any) -> list[Any]:
    """Every distinct non-null value of an indexed column, in order: one index probe per value (a
    loose index scan), where DISTINCT would read every row (the zones of a million parcels are ten)."""
    walk = select(func.min(column).label("value")).cte("walk", recursive=True)
    walk = walk.union_all(select(select(func.min(column)).where(column > walk.c.value).scalar_subquery())
                          .where(walk.c.value.is_not(None)))
    return list(conn.execute(select(walk.c.value).where(walk.c.value.is_not(None))).scalars())


def newer_batch(conn: Connection, batch: str) -> str | None:
    """The newest run that recorded case history, when it is newer than `batch`; else None.

    The newest run owns current case state and the outbox. An older run (a backfill, a cleared
    task of an earlier date) keeps its own detections for the record and changes neither: a
    case never moves backwards and nothing the newer state no longer owes is sent.
    """
    newest = conn.execute(select(func.max(schema.run_steps.c.batch_key)).where(
        schema.run_steps.c.step == "record_history")).scalar()
    return newest if newest is not None and newest > batch else None


def feed_state(latest_ok: bool | None, last_success: datetime | None, as_of: datetime, stale_hours: float) -> str:
    """One carrier account's state: never (no fetch yet), down (the latest fetch failed), stale (no
    success for `stale_hours`), or ok. Its parcels are in an unknown state unless ok."""
    if latest_ok is None:
        return "never"
    if not latest_ok:
        return "down"
    if last_success is None or (as_of - last_success).total_seconds() > stale_hours * 3600:
        return "stale"
    return "ok"


def feed_states(conn: Connection, settings: Settings, as_of: datetime) -> dict[str, dict[str, Any]]:
    """Per configured account: ok, down (the latest fetch failed), stale (no success for too long), never."""
    fh = schema.feed_health
    out: dict[str, dict[str, Any]] = {}
    key = batch_key_for(as_of)  # through the (account, batch_key) key: batch keys sort as their instants
    for account in settings.tracking_accounts:
        rows = conn.execute(select(fh.c.as_of, fh.c.ok, fh.c.error).where(fh.c.account == account,
                                                                          fh.c.batch_key <= key)
                            .order_by(fh.c.batch_key.desc()).limit(1)).all()
        last_ok = utc(conn.execute(select(fh.c.as_of).where(fh.c.account == account, fh.c.ok.is_(True),
                                                            fh.c.batch_key <= key)
                                   .order_by(fh.c.batch_key.desc()).limit(1)).scalar())
        state = feed_state(rows[0].ok if rows else None, last_ok, as_of, settings.feed_stale_hours)
        out[account] = {"state": state, "last_success": last_ok.isoformat() if last_ok else None,
                        "error": rows[0].error if rows else None}
    return out


def scans_until(conn: Connection, as_of: datetime, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The scans that had happened by `as_of` (without the raw payload): of `ids`, or of every shipment."""
    cols = [c for c in schema.scans.c if c.name != "raw"]
    stmt = select(*cols).where(schema.scans.c.occurred_at <= as_of)
    frame = pd.read_sql(stmt, conn) if ids is None else rows_of(conn, stmt, schema.scans.c.shipment_id, ids)
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def estimates_until(conn: Connection, as_of: datetime, ids: Iterable[str] | None = None) -> pd.DataFrame:
    """The carrier estimates published by `as_of`: for `ids`, or for every shipment."""
    stmt = select(schema.estimates).where(schema.estimates.c.observed_at <= as_of)
    return pd.read_sql(stmt, conn) if ids is None else rows_of(conn, stmt, schema.estimates.c.shipment_id, ids)


def detections_by_type(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
    """The current detections per exception type: (those still open, all of them), from their
    tallies (store/tallies), not from the detections."""
    return tallies.counts(conn, tallies.OPEN_DETECTIONS_BY_TYPE), tallies.counts(conn, tallies.DETECTIONS_BY_TYPE)


CHUNK = 500  # ids per IN (...) list: well under every driver's parameter limit


def chunks(ids: Iterable[str], size: int = CHUNK) -> Iterator[list[str]]:
    """`ids` in sorted lists of at most `size`, for IN (...) queries."""
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


def shipments_of_orders(conn: Connection, order_ids: Iterable[str]) -> dict[str, str]:
    """The shipments of these orders: {shipment id: its order id}."""
    c = schema.shipments.c
    return {sid: oid for part in chunks(order_ids)
            for sid, oid in conn.execute(select(c.shipment_id, c.order_id).where(c.order_id.in_(part))).all()}


def rows_of(conn: Connection, stmt: Any, column: Any, ids: Iterable[str]) -> pd.DataFrame:
    """`stmt` restricted to `column IN ids`, read in chunks into one frame."""
    frames = [pd.read_sql(stmt.where(column.in_(part)), conn) for part in chunks(ids)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.read_sql(stmt.where(column.in_([])), conn)
    return pd.concat(frames, ignore_index=True)


def previous_detection(conn: Connection, batch: str) -> datetime | None:
    """The instant of the newest detection run before `batch` (None: this is the first)."""
    rs = schema.run_steps.c
    # The newest key, not the largest instant: keys sort as their instants, and a walk back from
    # `batch` stops at the first detection, where max() read every earlier run's every step.
    value = conn.execute(select(rs.as_of).where(rs.step == "detect_exceptions", rs.batch_key < batch)
                         .order_by(rs.batch_key.desc()).limit(1)).scalar()
    return utc(value)


K = TypeVar("K")  # what a caller keys its cutoffs by (a zone, an instant)


def samples_before(conn: Connection, table: Any, groups: Iterable[str | tuple[str, ...]], cutoffs: Mapping[K, datetime],
                   limit: int, when: str = "learned_at", by: tuple[str, ...] = ("carrier",)) -> dict[K, pd.DataFrame]:
    """For each cutoff (e.g. the start of a time zone's day): the latest `limit` samples of each
    group (values of the `by` columns: a carrier by default) learned (`when`) before it. One read
    per group, however many cutoffs: the latest before the newest cutoff, plus as many as were
    learned between the oldest and the newest."""
    if not cutoffs:
        return {}
    newest, oldest = max(cutoffs.values()), min(cutoffs.values())
    c = table.c
    at = c[when]
    frames = []
    for group in sorted({g if isinstance(g, tuple) else (g,) for g in groups}):
        same = [c[col] == value for col, value in zip(by, group, strict=True)]
        between = conn.execute(select(func.count()).select_from(table).where(
            *same, at >= oldest, at < newest)).scalar_one()
        frames.append(pd.read_sql(select(table).where(*same, at < newest)
                                  .order_by(at.desc(), *(c[k] for k in table.primary_key.columns.keys()))
                                  .limit(limit + between), conn))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return {key: pd.read_sql(select(table).limit(0), conn) for key in cutoffs}
    read = pd.concat(frames, ignore_index=True)
    read[when] = pd.to_datetime(read[when], utc=True)
    return {key: read[read[when] < pd.Timestamp(cutoff)].groupby(list(by), sort=False).head(limit)
            for key, cutoff in cutoffs.items()}


def distinct_keys(conn: Connection, table: Any, columns: tuple[str, ...],
                  prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The distinct values of `columns` (the leading columns of an index), one index probe per value
    found instead of a scan of the table: a handful of carriers among millions of samples."""
    c = table.c
    same = [c[col] == value for col, value in zip(columns, prefix, strict=False)]
    column = c[columns[len(prefix)]]
    found: list[tuple[Any, ...]] = []
    value = conn.execute(select(func.min(column)).where(*same)).scalar()
    while value is not None:
        if len(prefix) + 1 == len(columns):
            found.append((*prefix, value))
        else:
            found.extend(distinct_keys(conn, table, columns, (*prefix, value)))
        value = conn.execute(select(func.min(column)).where(*same, column > value)).scalar()
    return found


def unmapped_codes(conn: Connection, since: datetime, until: datetime) -> dict[str, int]:
    """Carrier codes our vocabulary does not know, first seen in (since, until]: the raw
    vendor:status/detail and how many scans carried it (ops and the run summary show them)."""
    c = schema.scans.c
    return dict(conn.execute(select(c.reason, func.count()).where(
        c.status == "unmapped", c.first_seen_at > since, c.first_seen_at <= until)
        .group_by(c.reason).order_by(func.count().desc(), c.reason)).all())

