"""Where each shipment stands with its carrier: in flight, or finished at its first terminal scan.

Kept as scans arrive (fetch_tracking) and as shipments are loaded (load_orders), so that "the
parcels in flight at T" is an index range whose size follows the parcels in flight -- not a pass
over every terminal scan ever stored. Any order: `finished_at` only ever moves earlier, so a
late-seen scan or an older run's fetch leaves the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, func, insert, select

from lastmile.core.status import TERMINAL
from lastmile.store import schema
from lastmile.store.db import upsert

ts = schema.tracking_state


def track(conn: Connection, shipment_ids: Iterable[str]) -> None:
    """Newly loaded shipments start in flight (a known shipment keeps its state)."""
    upsert(conn, ts, [{"shipment_id": sid, "finished_at": None} for sid in set(shipment_ids)])


def record_scans(conn: Connection, scans: Iterable[Mapping[str, Any]]) -> None:
    """A terminal scan finishes its shipment at the scan's instant, unless an earlier one did."""
    first: dict[str, datetime] = {}
    for scan in scans:
        if scan["status"] in TERMINAL:
            sid, at = scan["shipment_id"], scan["occurred_at"]
            first[sid] = min(first.get(sid, at), at)
    upsert(conn, ts, [{"shipment_id": sid, "finished_at": at} for sid, at in first.items()],
           update=["finished_at"], only_if_newer="finished_at")


def in_flight(as_of: datetime) -> Select[Any]:
    """The shipment ids with no terminal scan by `as_of` (through the finished_at index)."""
    return select(ts.c.shipment_id).where(ts.c.finished_at.is_(None)).union_all(
        select(ts.c.shipment_id).where(ts.c.finished_at > as_of))


def rebuild(conn: Connection) -> None:
    """Every shipment's state from its scans (for a history written other than through the steps)."""
    sc, sh = schema.scans.c, schema.shipments.c
    conn.execute(ts.delete())
    # One pass over the terminal scans, grouped (a subquery per shipment would let the planner walk
    # every terminal scan for each shipment).
    first = (select(sc.shipment_id, func.min(sc.occurred_at).label("finished_at"))
             .where(sc.status.in_(sorted(TERMINAL))).group_by(sc.shipment_id).subquery())
    conn.execute(insert(ts).from_select(["shipment_id", "finished_at"], select(sh.shipment_id, first.c.finished_at)
                                        .select_from(schema.shipments.outerjoin(first, first.c.shipment_id == sh.shipment_id))))


