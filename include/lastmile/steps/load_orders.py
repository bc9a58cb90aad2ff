"""load_orders: read what the shop changed by the run's instant → validate → upsert, quarantine the rest."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from lastmile.config import Settings
from lastmile.shop import changes, orders
from lastmile.shop.records import KEYS
from lastmile.steps.common import quarantine, record_step, utc_instant
from lastmile.steps.wiring import order_source
from lastmile.store import progress, schema
from lastmile.store.db import batch_key_for, engine_for, upsert, utc, writing
from lastmile.store.queries import chunks, shipments_of_orders

if TYPE_CHECKING:
    pass

log = logging.getLogger("lastmile")


def load_orders(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Read orders, lines, shipments and subscriptions changed by `as_of`; validate; upsert."""
    as_of = utc_instant(as_of)
    engine = engine_for(settings.db_url)
    wm = schema.source_watermarks
    with engine.connect() as conn:
        marks = {r.entity: utc(r.watermark) for r in conn.execute(select(wm).where(wm.c.source == settings.source))}
        raw = order_source(settings, marks).load(as_of)
        raw, digests, unchanged = changes.changed_only(raw, _accepted(conn, settings.source))
        # Parents loaded by earlier runs count: incremental sources send only what changed.
        valid = orders.validate(raw, as_of=as_of, known=orders.history_lookup(conn),
                                codes_in_history=orders.tracking_code_lookup(conn))
    with writing(engine) as conn:
        unnumbered = {s["order_line_id"] for s in valid.shipments if s["sequence"] is None}
        if unnumbered:
            known = [dict(r) for r in conn.execute(select(schema.shipments).where(
                schema.shipments.c.order_line_id.in_(unnumbered))).mappings()]
            orders.number_shipments(valid.shipments, known)
        for table, rows in ((schema.customers, valid.customers), (schema.subscriptions, valid.subscriptions),
                            (schema.orders, valid.orders), (schema.order_lines, valid.order_lines),
                            (schema.shipments, valid.shipments)):
            keys = {c.name for c in table.primary_key.columns}
            upsert(conn, table, rows, update=[c.name for c in table.columns if c.name not in keys])
        # Only what was accepted is remembered: a quarantined row is read and judged again.
        upsert(conn, schema.source_rows, [
            {"source": settings.source, "entity": entity, "record_id": rid, "digest": digests[entity][rid],
             "batch_key": batch_key_for(as_of)}
            for entity, rows in valid.by_entity().items() for rid in (r[KEYS[entity]] for r in rows)
            if rid in digests[entity]], update=["digest", "batch_key"])
        upsert(conn, wm, [{"source": settings.source, "entity": e, "watermark": w, "batch_key": batch_key_for(as_of)}
                          for e, w in raw.watermarks.items()], update=["watermark", "batch_key"])
        # What detection must look at again: the shipments written now, and those of orders written now
        # (a cancelled or refunded order resolves its cases), each with a digest of what was written.
        progress.track(conn, (s["shipment_id"] for s in valid.shipments))
        upsert(conn, schema.batch_changes, _changes(conn, batch_key_for(as_of), valid), update=["digest"])
        quarantine(conn, valid.rejections, as_of)
        return record_step(conn, as_of, "load_orders", {
            "source": settings.source, "orders": len(valid.orders), "order_lines": len(valid.order_lines),
            "shipments": len(valid.shipments), "customers": len(valid.customers),
            "subscriptions": len(valid.subscriptions), "quarantined": len(valid.rejections),
            "unchanged_rows_skipped": unchanged})


def _changes(conn: Connection, batch: str, valid: orders.ValidOrders) -> list[dict[str, Any]]:
    """One batch_changes row per shipment written now or of an order written now, with a digest of
    its row and its order's row as written (a load of the same batch run again with other content
    changes it; with the same content it writes nothing)."""
    shipped = {s["shipment_id"]: s for s in valid.shipments}
    ordered = {o["order_id"]: o for o in valid.orders}
    order_of = {sid: s["order_id"] for sid, s in shipped.items()} | shipments_of_orders(conn, ordered)
    return [{"batch_key": batch, "shipment_id": sid,
             "digest": changes.row_digest({"shipment": changes.row_digest(shipped[sid]) if sid in shipped else "",
                                           "order": changes.row_digest(ordered[oid]) if oid in ordered else ""})}
            for sid, oid in sorted(order_of.items())]


def _accepted(conn: Connection, source: str) -> changes.Stored:
    """The digests of the records `source` sent that were accepted before."""
    sr = schema.source_rows.c

    def stored(entity: str, ids: Collection[str]) -> dict[str, str]:
        return {rid: digest for part in chunks(ids) for rid, digest in conn.execute(
            select(sr.record_id, sr.digest).where(sr.source == source, sr.entity == entity,
                                                  sr.record_id.in_(part))).all()}
    return stored
