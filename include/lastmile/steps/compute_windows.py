"""compute_windows: open detections → an honest revised window each, where the parcel is still coming."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import select, update

from lastmile.config import Settings
from lastmile.core.windows import estimate_errors, estimate_is_fresh, revised_window, transit_history
from lastmile.steps.common import frame, record_step, utc_instant
from lastmile.store import schema
from lastmile.store.db import batch_key_for, engine_for, writing
from lastmile.store.queries import estimates_until, scans_until

if TYPE_CHECKING:
    pass

log = logging.getLogger("lastmile")


def compute_windows(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Give every open detection a revised window where the parcel is still coming."""
    as_of = utc_instant(as_of)
    batch = batch_key_for(as_of)
    with writing(engine_for(settings.db_url)) as conn:
        dets = frame(conn, select(schema.detections).where(schema.detections.c.batch_key == batch,
                                                            schema.detections.c.open.is_(True)))
        shipments = frame(conn, select(schema.shipments).where(schema.shipments.c.created_at <= as_of))
        scans = scans_until(conn, as_of)
        estimates = estimates_until(conn, as_of)
        history = transit_history(shipments, scans, as_of)
        accepted = scans[scans["status"] != "pre_transit"].groupby("shipment_id")["occurred_at"].min()
        errors = estimate_errors(shipments, scans, estimates, as_of)
        current = (estimates.assign(observed_at=pd.to_datetime(estimates["observed_at"], utc=True))
                   .sort_values(["observed_at", "est_delivery_date"]).groupby("shipment_id")
                   .agg(est=("est_delivery_date", "last"), at=("observed_at", "last"), n=("observed_at", "size"))
                   if not estimates.empty else pd.DataFrame(columns=["est", "at", "n"]))
        by_id = shipments.set_index("shipment_id")
        given = 0
        for det in dets.itertuples():
            shipment = by_id.loc[det.shipment_id]
            acc = accepted.get(det.shipment_id)
            est = current.loc[det.shipment_id] if det.shipment_id in current.index else None
            window = revised_window(
                shipment, det.exception_type, acc.to_pydatetime() if acc is not None else None,
                est["est"] if est is not None else None, history, as_of, errors,
                estimate_after_evidence=est is not None and estimate_is_fresh(est["at"], det.first_evidence_at, acc),
                estimate_is_revision=est is not None and est["n"] > 1)
            if window is None:
                continue
            given += 1
            conn.execute(update(schema.detections).where(
                schema.detections.c.batch_key == batch, schema.detections.c.shipment_id == det.shipment_id,
                schema.detections.c.exception_type == det.exception_type,
            ).values(window_earliest=window.earliest, window_latest=window.latest, window_basis=window.basis))
        return record_step(conn, as_of, "compute_windows", {
            "open_detections": len(dets), "windows_given": given, "no_honest_date": len(dets) - given,
            "delivered_history": len(history)})
