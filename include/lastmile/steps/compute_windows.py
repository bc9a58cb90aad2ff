"""compute_windows: this batch's open detections → an honest revised window each, where the parcel is still coming.

Windows learn from the transit times, estimate errors and times after an exception kept per
delivered parcel (`transit_samples`, `estimate_samples`, `exception_samples`, written by
detect_exceptions as parcels are delivered): the latest of each carrier (and exception) delivered
before the destination's day (core/calendar.learned_by: the last UTC midnight at or before its
start), grouped by lane, service and carrier once per day and
kept (store/learned.py), so an hour reads what it needs for this batch and nothing else.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from lastmile.config import Settings
from lastmile.core.calendar import learned_by
from lastmile.core.windows import (
    LEVELS,
    SampleLevels,
    after_levels,
    error_levels,
    estimate_is_fresh,
    revised_window,
    transit_levels,
)
from lastmile.steps.common import record_step, utc_instant
from lastmile.store import learned, schema
from lastmile.store.db import batch_key_for, engine_for, utc, writing
from lastmile.store.queries import estimates_until, rows_of

log = logging.getLogger("lastmile")

RECENT = 5000  # samples per carrier a window learns from: the latest deliveries
RECENT_AFTER = 1000  # samples per carrier and exception: how long the latest such parcels still took


def compute_windows(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Give every open detection of this batch a revised window where the parcel is still coming."""
    as_of = utc_instant(as_of)
    batch = batch_key_for(as_of)
    cd = schema.current_detections
    with writing(engine_for(settings.db_url)) as conn:
        dets = pd.read_sql(select(cd).where(cd.c.batch_key == batch, cd.c.open.is_(True)), conn)
        if dets.empty:
            return record_step(conn, as_of, "compute_windows", {
                "open_detections": 0, "windows_given": 0, "no_honest_date": 0, "delivered_history": 0})
        ids = set(dets["shipment_id"])
        shipments = rows_of(conn, select(schema.shipments), schema.shipments.c.shipment_id, ids)
        sc = schema.scans.c
        moving = rows_of(conn, select(sc.shipment_id, sc.occurred_at).where(
            sc.status != "pre_transit", sc.occurred_at <= as_of), sc.shipment_id, ids)
        accepted = pd.to_datetime(moving["occurred_at"], utc=True).groupby(moving["shipment_id"]).min()
        estimates = estimates_until(conn, as_of, ids)
        current = (estimates.assign(observed_at=pd.to_datetime(estimates["observed_at"], utc=True))
                   .sort_values(["observed_at", "est_delivery_date"]).groupby("shipment_id")
                   .agg(est=("est_delivery_date", "last"), at=("observed_at", "last"), n=("observed_at", "size"))
                   if not estimates.empty else pd.DataFrame(columns=["est", "at", "n"]))
        by_id = shipments.set_index("shipment_id")
        # What was learned by the destination's day (calendar.learned_by): a window changes once a
        # day (or when its parcel's facts change), not every hour as other parcels arrive.
        starts = {tz: learned_by(as_of, tz) for tz in set(shipments["dest_tz"])}
        kept = learned_levels(conn, set(starts.values()), as_of)
        learned_by_zone = {tz: kept[utc(start)] for tz, start in starts.items()}  # type: ignore[index]
        windows: list[dict[str, Any]] = []
        for det in dets.itertuples():
            shipment = by_id.loc[det.shipment_id]
            history_then, errors_then, after_then = learned_by_zone[shipment["dest_tz"]]
            acc = accepted.get(det.shipment_id)
            est = current.loc[det.shipment_id] if det.shipment_id in current.index else None
            window = revised_window(
                shipment, det.exception_type, acc.to_pydatetime() if acc is not None else None,
                est["est"] if est is not None else None, history_then, as_of, errors_then,
                estimate_after_evidence=est is not None and estimate_is_fresh(est["at"], det.first_evidence_at, acc),
                estimate_is_revision=est is not None and est["n"] > 1,
                after=after_then, evidence_at=det.first_evidence_at)
            if window is not None:
                windows.append({"sid": det.shipment_id, "kind": det.exception_type, "earliest": window.earliest,
                                "latest": window.latest, "basis": window.basis})
        if windows:
            # One statement per table, executed for every window at once (executemany).
            for table in (schema.detections, cd):
                stmt = update(table).where(table.c.shipment_id == bindparam("sid"),
                                           table.c.exception_type == bindparam("kind"))
                if table is schema.detections:
                    stmt = stmt.where(table.c.batch_key == batch)
                conn.execute(stmt.values(window_earliest=bindparam("earliest"), window_latest=bindparam("latest"),
                                         window_basis=bindparam("basis")), windows)
        given = len(windows)
        return record_step(conn, as_of, "compute_windows", {
            "open_detections": len(dets), "windows_given": given, "no_honest_date": len(dets) - given,
            "delivered_history": max((levels[0].size for levels in kept.values()), default=0)})


# How windows learn from samples (a change makes the kept levels be grouped again); the last
# number is the grouping code's own version: bump it when the levels are built differently.
WINDOWS_CODE = (RECENT, RECENT_AFTER, [[name, list(cols)] for name, cols in LEVELS], SampleLevels.JSON_FORMAT, 1)
Learned = tuple[SampleLevels, SampleLevels, SampleLevels]


def learned_levels(conn: Connection, cutoffs: set[datetime], as_of: datetime) -> dict[datetime, Learned]:
    """Per cutoff: the transit times, estimate errors and times after an exception of the latest
    parcels of every carrier (and exception) delivered before it, grouped for revised_window."""
    version = learned.version(WINDOWS_CODE)
    kinds = (("transit", schema.transit_samples, ("carrier",), RECENT, transit_levels),
             ("estimate_errors", schema.estimate_samples, ("carrier",), RECENT, error_levels),
             ("after_exception", schema.exception_samples, ("exception_type", "carrier"), RECENT_AFTER, after_levels))
    found = [learned.kept_from_samples(conn, kind, version, cutoffs, as_of, table, by, limit, "delivered_at",
                                       lambda samples, _groups, levels=levels: levels(samples),
                                       SampleLevels.to_json, SampleLevels.from_json)
             for kind, table, by, limit, levels in kinds]
    return {cutoff: (found[0][cutoff], found[1][cutoff], found[2][cutoff]) for cutoff in found[0]}
