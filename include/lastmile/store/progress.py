"""Where each shipment stands with its carrier: in flight, or finished at its first terminal scan.

Kept as scans arrive (fetch_tracking) and as shipments are loaded (load_orders), so that "the
parcels in flight at T" is an index range whose size follows the parcels in flight -- not a pass
over every terminal scan ever stored. Any order: `finished_at` only ever moves earlier, so a
late-seen scan or an older run's fetch leaves the same state. Each row also holds a copy of what a
carrier is asked by (schema.TRACKED_COLUMNS), taken whenever its shipment is written: a poll lists
the parcels in flight from here alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, insert, select

from lastmile.core.status import TERMINAL
from lastmile.store import schema
from lastmile.store.db import upsert
from lastmile.store.queries import chunks
from lastmile.store.schema import TRACKED_COLUMNS

ts = schema.tracking_state


def track(conn: Connection, shipment_ids: Iterable[str]) -> None:
    """Newly loaded shipments start in flight (a known shipment keeps its state); every one takes
    what a carrier is asked by as `shipments` now holds it (a changed code or account replaces the
    copy), after the same transaction wrote them there."""
    sh = schema.shipments.c
    for part in chunks(shipment_ids):
        copies = {r["shipment_id"]: dict(r) for r in conn.execute(select(
            sh.shipment_id, *(sh[c] for c in TRACKED_COLUMNS)).where(sh.shipment_id.in_(part))).mappings()}
        # (an id not yet in shipments is tracked all the same, with nothing to ask a carrier by: in
        # flight, never polled until a load writes its shipment and the copy)
        upsert(conn, ts, [{**dict.fromkeys(TRACKED_COLUMNS), **copies.get(sid, {}), "shipment_id": sid,
                           "finished_at": None} for sid in part], update=TRACKED_COLUMNS)


def record_scans(conn: Connection, scans: Iterable[Mapping[str, Any]]) -> None:
    """A terminal scan finishes its shipment at the scan's instant, unless an earlier one did."""
    first: dict[str, datetime] = {}
    for scan in scans:
        if scan["status"] in TERMINAL:
            sid, at = scan["shipment_id"], scan["occurred_at"]
            first[sid] = min(first.get(sid, at), at)
    upsert(conn, ts, [{"shipment_id": sid, "finished_at": at} for sid, at in first.items()],
           update=["finished_at"], only_if_newer="finished_at")


def in_flight(as_of: datetime, *columns: str) -> Select[Any]:
    """The shipment ids with no terminal scan by `as_of` (an index range: ix_tracking_state_poll
    begins with finished_at), and any of their TRACKED_COLUMNS asked for."""
    wanted = (ts.c.shipment_id, *(ts.c[c] for c in columns))
    return select(*wanted).where(ts.c.finished_at.is_(None)).union_all(
        select(*wanted).where(ts.c.finished_at > as_of))


def rebuild(conn: Connection) -> None:
    """Every shipment's state from its scans (for a history written other than through the steps)."""
    sc, sh = schema.scans.c, schema.shipments.c
    conn.execute(ts.delete())
    # One pass over the terminal scans, grouped (a subquery per shipment would let the planner walk
    # every terminal scan for each shipment).
    first = (select(sc.shipment_id, func.min(sc.occurred_at).label("finished_at"))
             .where(sc.status.in_(sorted(TERMINAL))).group_by(sc.shipment_id).subquery())
    conn.execute(insert(ts).from_select(
        ["shipment_id", "finished_at", *TRACKED_COLUMNS],
        select(sh.shipment_id, first.c.finished_at, *(sh[c] for c in TRACKED_COLUMNS))
        .select_from(schema.shipments.outerjoin(first, first.c.shipment_id == sh.shipment_id))))


