"""compute_windows: this batch's open detections → an honest revised window each, where the parcel is still coming.

Windows learn from the transit times, estimate errors and times after an exception kept per
delivered parcel (`transit_samples`, `estimate_samples`, `exception_samples`, written by
detect_exceptions as parcels are delivered),
read only for the carriers this batch needs a window for.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam, select, update

from lastmile.config import Settings
from lastmile.core.calendar import start_of_local_day
from lastmile.core.windows import (
    MIN_SAMPLES,
    after_levels,
    error_levels,
    estimate_is_fresh,
    revised_window,
    transit_levels,
)
from lastmile.steps.common import record_step, utc_instant
from lastmile.store import schema
from lastmile.store.db import batch_key_for, engine_for, writing
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
        carriers = set(shipments["carrier"])
        history = _samples(conn, schema.transit_samples, carriers, as_of)
        errors = _samples(conn, schema.estimate_samples, carriers, as_of)
        after = _exception_samples(conn, carriers, set(dets["exception_type"]), as_of)
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
        # What was learned by the start of the destination's day: a window changes once a day (or
        # when its parcel's facts change), not every hour as other parcels arrive.
        # Grouped once per zone, so each window looks its samples up.
        learned = {tz: (transit_levels(_before(history, tz, as_of)), error_levels(_before(errors, tz, as_of)),
                        after_levels(_before(after, tz, as_of)))
                   for tz in set(shipments["dest_tz"])}
        windows: list[dict[str, Any]] = []
        for det in dets.itertuples():
            shipment = by_id.loc[det.shipment_id]
            history_then, errors_then, after_then = learned[shipment["dest_tz"]]
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
            "delivered_history": len(history)})


def _before(samples: pd.DataFrame, tz: str, as_of: datetime) -> pd.DataFrame:
    """The samples delivered before the start of `as_of`'s day in `tz`."""
    # (not Timestamp.normalize(): where DST starts at midnight, as in Brazil until 2019, that
    # midnight does not exist)
    return samples[pd.to_datetime(samples["delivered_at"], utc=True) < pd.Timestamp(start_of_local_day(as_of, tz))]


def _samples(conn: Connection, table: Any, carriers: set[str], as_of: datetime) -> pd.DataFrame:
    """The most recent samples delivered by `as_of` for these carriers, and the most recent of all
    carriers when one has too few (windows fall back from lane to service to carrier to
    everything). Recent behaviour is what a window should follow, and the read stays the same size
    however long the history grows."""
    recent = select(table).where(table.c.delivered_at <= as_of).order_by(table.c.delivered_at.desc())
    frames = [pd.read_sql(recent.where(table.c.carrier == carrier).limit(RECENT), conn) for carrier in sorted(carriers)]
    frame = pd.concat([f for f in frames if not f.empty] or [pd.read_sql(recent.limit(0), conn)], ignore_index=True)
    with_revision = "revision" in frame
    counts = frame.groupby(["carrier", "revision"] if with_revision else ["carrier"]).size()

    def enough(carrier: str, revision: bool | None) -> bool:
        return int(counts.get((carrier, revision) if with_revision else carrier, 0)) >= MIN_SAMPLES

    if not all(enough(c, r) for c in carriers for r in ((True, False) if with_revision else (None,))):
        frame = pd.concat([frame, pd.read_sql(recent.limit(RECENT), conn)], ignore_index=True).drop_duplicates(
            [c.name for c in table.primary_key.columns])
    return frame


def _exception_samples(conn: Connection, carriers: set[str], kinds: set[str], as_of: datetime) -> pd.DataFrame:
    """The latest delivered parcels with each exception this batch gives a window after, per carrier;
    of every carrier too where one carrier has too few."""
    t = schema.exception_samples
    recent = select(t).where(t.c.delivered_at <= as_of).order_by(t.c.delivered_at.desc()).limit(RECENT_AFTER)
    per_carrier = {(kind, carrier): pd.read_sql(recent.where(t.c.exception_type == kind, t.c.carrier == carrier), conn)
                   for kind in sorted(kinds) for carrier in sorted(carriers)}
    thin = sorted({kind for (kind, _), f in per_carrier.items() if len(f) < MIN_SAMPLES})
    frames = [*per_carrier.values(), *(pd.read_sql(recent.where(t.c.exception_type == kind), conn) for kind in thin)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.read_sql(recent.limit(0), conn)
    return pd.concat(frames, ignore_index=True).drop_duplicates(["shipment_id", "exception_type"])

