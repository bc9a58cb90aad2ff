"""record_history: the batch's detections → cases opened, updated, resolved → case events."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from lastmile.config import Settings
from lastmile.core.brand import load_brand
from lastmile.core.cases import build_cases
from lastmile.steps.common import frame, record_step, utc_instant
from lastmile.store import schema
from lastmile.store.db import batch_key_for, engine_for, upsert, utc, writing
from lastmile.store.queries import newer_batch

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
        newer = newer_batch(conn, batch)
        if newer is not None:
            log.info("record_history %s: the newer run %s owns the cases; this run's detections stay for the record",
                     batch, newer)
            return record_step(conn, as_of, "record_history", {
                "cases_changed": 0, "case_events": 0, "by_state": {}, "superseded_by": newer})
        dets = frame(conn, select(schema.detections).where(schema.detections.c.batch_key == batch))
        shipments = frame(conn, select(schema.shipments).where(schema.shipments.c.created_at <= as_of))
        delivered = dict(conn.execute(select(schema.scans.c.shipment_id, func.min(schema.scans.c.occurred_at))
                                      .where(schema.scans.c.status == "delivered",
                                             schema.scans.c.occurred_at <= as_of)
                                      .group_by(schema.scans.c.shipment_id)).all())
        delivered = {k: utc(v) for k, v in delivered.items()}
        existing = {r["case_id"]: dict(r) for r in conn.execute(select(schema.cases)).mappings()}
        order_status = {k: v for k, v in conn.execute(select(schema.orders.c.order_id, schema.orders.c.status).where(
            schema.orders.c.status.in_(["cancelled", "refunded"])))}
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
