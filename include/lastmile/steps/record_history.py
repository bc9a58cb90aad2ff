"""record_history: the batch's detections → cases opened, updated, resolved → case events."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from lastmile.config import Settings
from lastmile.core.brand import load_brand
from lastmile.core.cases import build_cases, case_id_for
from lastmile.steps.common import record_step, superseded, utc_instant
from lastmile.store import schema
from lastmile.store.db import batch_key_for, engine_for, upsert, utc, writing
from lastmile.store.queries import chunks, rows_of

if TYPE_CHECKING:
    pass

log = logging.getLogger("lastmile")


CASE_EVENT_KEY = ("case_id", "batch_key", "event", "detail")


def record_history(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Open, update and resolve cases from this batch's detections; log every change as an event."""
    as_of = utc_instant(as_of)
    batch = batch_key_for(as_of)
    brand = load_brand()
    with writing(engine_for(settings.db_url)) as conn:
        if (done := superseded(conn, as_of, "record_history", {"cases_changed": 0, "case_events": 0, "by_state": {}})):
            return done
        # The order lines this batch re-detected; each is rebuilt from all its current detections.
        lines = set(conn.execute(select(schema.detections.c.order_line_id).where(
            schema.detections.c.batch_key == batch).distinct()).scalars())
        cd, sh, sc = schema.current_detections, schema.shipments, schema.scans
        dets = rows_of(conn, select(cd), cd.c.order_line_id, lines)
        shipments = rows_of(conn, select(sh).where(sh.c.created_at <= as_of), sh.c.order_line_id, lines)
        delivered = {sid: utc(at) for part in chunks(shipments["shipment_id"]) for sid, at in conn.execute(
            select(sc.c.shipment_id, func.min(sc.c.occurred_at)).where(
                sc.c.shipment_id.in_(part), sc.c.status == "delivered", sc.c.occurred_at <= as_of)
            .group_by(sc.c.shipment_id))}
        existing = {r["case_id"]: dict(r) for part in chunks(case_id_for(ln) for ln in lines)
                    for r in conn.execute(select(schema.cases).where(schema.cases.c.case_id.in_(part))).mappings()}
        od = schema.orders.c
        order_status = {k: v for part in chunks(shipments["order_id"]) for k, v in conn.execute(
            select(od.order_id, od.status).where(od.order_id.in_(part), od.status.in_(["cancelled", "refunded"])))}
        updates = build_cases(dets, shipments, delivered, existing, as_of, batch, brand.owner_team,
                              brand.escalation_owner, order_status)
        upsert(conn, schema.cases, [u.case for u in updates],
               update=[c.name for c in schema.cases.columns if c.name not in ("case_id", "opened_at")])
        events = [{"case_id": u.case["case_id"], "batch_key": batch, "at": as_of, "event": e, "detail": d}
                  for u in updates for e, d in u.events]
        upsert(conn, schema.case_events, events, conflict=CASE_EVENT_KEY)
        states = Counter(u.case["state"] for u in updates)
        return record_step(conn, as_of, "record_history", {
            "cases_changed": len(updates), "case_events": len(events), "by_state": dict(sorted(states.items()))})
