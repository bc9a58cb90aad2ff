"""detect_exceptions: the batch's shipments and scans → the detection rules → detections."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import delete, select

from lastmile.config import Settings
from lastmile.core import detection, thresholds
from lastmile.steps.common import frame, record_step, utc_instant
from lastmile.store import schema
from lastmile.store.db import batch_key_for, engine_for, upsert, writing
from lastmile.store.queries import estimates_until, feed_states, scans_until

if TYPE_CHECKING:
    pass

log = logging.getLogger("lastmile")


def detect_exceptions(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Run the detection rules as of `as_of`; the batch's detections replace any earlier attempt."""
    as_of = utc_instant(as_of)
    batch = batch_key_for(as_of)
    with writing(engine_for(settings.db_url)) as conn:
        shipments = frame(conn, select(schema.shipments).where(schema.shipments.c.created_at <= as_of))
        feeds = feed_states(conn, settings, as_of)
        shipments["tracking_account"] = shipments["tracking_account"].where(
            shipments["tracking_account"].isin(settings.tracking_accounts), settings.tracking_accounts[0])
        # Missing scans from a feed we could not read say nothing about the parcel (no false "lost").
        shipments["feed_unknown"] = shipments["tracking_account"].isin(
            {a for a, f in feeds.items() if f["state"] != "ok"})
        found = detection.detect(shipments, scans_until(conn, as_of), estimates_until(conn, as_of), as_of,
                                 thresholds.load())
        conn.execute(delete(schema.detections).where(schema.detections.c.batch_key == batch))
        rows = found.assign(batch_key=batch, window_earliest=None, window_latest=None, window_basis=None)
        rows["first_evidence_at"] = [t.to_pydatetime() for t in pd.to_datetime(rows["first_evidence_at"], utc=True)]
        upsert(conn, schema.detections, rows.to_dict("records"))
        open_rows = found[found["open"].astype(bool)]
        return record_step(conn, as_of, "detect_exceptions", {
            "shipments_checked": len(shipments), "detections": len(found),
            "feeds": {a: f["state"] for a, f in feeds.items()},
            "unknown_state_shipments": int(shipments["feed_unknown"].sum()),
            "open_by_type": dict(sorted(Counter(open_rows["exception_type"]).items())),
            "all_by_type": dict(sorted(Counter(found["exception_type"]).items()))})
