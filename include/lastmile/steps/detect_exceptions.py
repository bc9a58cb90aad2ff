"""detect_exceptions: the shipments whose facts or clock changed → the detection rules → detections.

Cost follows change. A run re-detects only the shipments that something happened to since the
previous detection run: new or late scans, new carrier estimates, shipments loaded or changed by
this batch, in-flight parcels whose destination crossed a local midnight (business days, promised
dates and thresholds only move then), and the parcels of a carrier account whose feed went down
or came back; together with the other shipments of their order lines (a reshipment retires its
predecessor). Everything else keeps its current detections. The first run looks at everything;
after a gap every zone has crossed a midnight, so every parcel in flight is looked at again. A run
that looks at many parcels does it PART_LINES whole order lines at a time (bounded memory).

A finished parcel's detections are final: they were decided in the run that saw it finish, with
the thresholds of that day; what is learned later does not rewrite them. The silence thresholds
(learned from delivered parcels, see core/thresholds.learned) move only at a destination's local
midnight, when its parcels in flight are all looked at again: so looking only at what changed
gives exactly what looking at every parcel in flight gives (LASTMILE_FULL_DETECT=1 does that,
tests/integration/test_incremental.py compares them).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Connection, delete, or_, select

from lastmile.config import Settings
from lastmile.core import detection, thresholds
from lastmile.core.calendar import learned_by
from lastmile.core.windows import estimate_errors, exception_history, transit_history
from lastmile.steps.common import record_step, superseded, utc_instant
from lastmile.store import learned, progress, schema, tallies
from lastmile.store.db import batch_key_for, engine_for, refresh_statistics, upsert, utc, writing
from lastmile.store.queries import (
    chunks,
    detections_by_type,
    distinct_values,
    estimates_until,
    feed_states,
    previous_detection,
    rows_of,
    scans_until,
)

log = logging.getLogger("lastmile")


def detect_exceptions(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Re-detect what changed by `as_of`; the batch's detections replace any earlier attempt."""
    as_of = utc_instant(as_of)
    batch = batch_key_for(as_of)
    with writing(engine_for(settings.db_url)) as conn:
        if (done := superseded(conn, as_of, "detect_exceptions", {"shipments_checked": 0, "detections": 0})):
            return done
        feeds = feed_states(conn, settings, as_of)
        arrived = arrived_with(conn, as_of)
        previous = previous_detection(conn, batch)
        ids = None if previous is None else candidates(conn, settings, as_of, previous, feeds,
                                                      every_zone=settings.full_detect)
        cd = schema.current_detections
        if ids is None:
            # The first run: the history the shop already had is known before anything is called,
            # so its carriers' rhythm applies from the start (not after a day of cold start): every
            # part is learned from before any part is detected.
            refresh_statistics(conn, [schema.shipments, schema.scans, schema.estimates])
            for part in _parts(conn, as_of, None):
                # (the samples written so far: without, Postgres looks up a part's samples by
                # comparing every row with every id asked for)
                refresh_statistics(conn, [schema.transit_samples])
                shipments, scans, _ = _read(conn, settings, feeds, as_of, part, estimates=False)
                _learn_transit(conn, shipments, scans, detection.shipment_facts(shipments, scans, as_of), as_of,
                               KNOWN_BEFORE_START)
            conn.execute(delete(cd))
            refresh_statistics(conn, [schema.transit_samples])  # as the learning pass left it
        conn.execute(delete(schema.detections).where(schema.detections.c.batch_key == batch))
        checked, unknown, samples_seen, changed = 0, 0, Counter[str](), Counter[str]()
        for part in _parts(conn, as_of, ids):
            if ids is None:
                refresh_statistics(conn, [schema.estimate_samples, schema.exception_samples])
            shipments, scans, estimates = _read(conn, settings, feeds, as_of, part)
            facts = detection.shipment_facts(shipments, scans, as_of)  # what detecting and learning both read
            found = detection.detect(shipments, scans, estimates, as_of, _thresholds(conn, shipments, as_of), facts)
            rows = found.assign(batch_key=batch, window_earliest=None, window_latest=None, window_basis=None)
            rows["first_evidence_at"] = [t.to_pydatetime()
                                         for t in pd.to_datetime(rows["first_evidence_at"], utc=True)]
            records = rows.to_dict("records")
            upsert(conn, schema.detections, records)
            if ids is not None:
                for chunk in chunks(shipments["shipment_id"]):
                    conn.execute(delete(cd).where(cd.c.shipment_id.in_(chunk)))
            upsert(conn, cd, records)
            # (the first run learned these parcels' transit before detecting any of them)
            known = _transit(shipments, scans, facts, as_of) if ids is None else None
            samples_seen.update(_learn(conn, shipments, scans, facts, estimates, found, as_of, known))
            checked, unknown = checked + len(shipments), unknown + int(shipments["feed_unknown"].sum())
            changed.update(found["exception_type"])
        tallies.fold(conn)  # (the counts' changes since the last detection's fold, this run's detections too)
        open_now, everything = detections_by_type(conn)
        return record_step(conn, as_of, "detect_exceptions", {
            "mode": "full" if ids is None else "changed", "shipments_checked": checked, "arrived": arrived,
            "detections": sum(changed.values()), "feeds": {a: f["state"] for a, f in feeds.items()},
            "unknown_state_shipments": unknown, **{k: samples_seen[k] for k in SAMPLES_SEEN},
            "open_by_type": dict(sorted(open_now.items())), "all_by_type": dict(sorted(everything.items())),
            "changed_by_type": dict(sorted(changed.items()))})


def candidates(conn: Connection, settings: Settings, as_of: datetime, previous: datetime,
               feeds: dict[str, dict[str, Any]], every_zone: bool = False) -> set[str]:
    """The shipments whose detections may differ from the previous run's (see the module's doc);
    `every_zone`: every parcel in flight, as if every destination had crossed a midnight."""
    sc, sh, es, bc = schema.scans.c, schema.shipments.c, schema.estimates.c, schema.batch_changes.c
    # The previous detection saw its own run's scans, estimates and order changes (fetch stamps them
    # with the run's instant, load_orders with its batch): they are not new again, unless more came
    # with that instant after it ran (a fetch or load_orders task cleared and run again, alone), and
    # then everything that came with it is looked at again.
    seen, now = _detection_counts(conn, previous), arrived_with(conn, previous)
    saw = seen.get("arrived") or {}
    fetched_again = any(saw.get(k) != now[k] for k in ("scans", "estimates", "digest"))
    loaded_again = any(saw.get(k) != now[k] for k in ("changed", "changes_digest"))

    def since(column: Any) -> Any:
        return (column >= previous if fetched_again else column > previous) & (column <= as_of)

    ids: set[str] = set()
    ids |= set(conn.execute(select(sc.shipment_id).where(
        or_(since(sc.first_seen_at), (sc.occurred_at > previous) & (sc.occurred_at <= as_of))).distinct()).scalars())
    ids |= set(conn.execute(select(es.shipment_id).where(since(es.observed_at))).scalars())
    ids |= set(conn.execute(select(sh.shipment_id).where(sh.created_at > previous, sh.created_at <= as_of)).scalars())
    batches = [batch_key_for(as_of), *([batch_key_for(previous)] if loaded_again else [])]
    ids |= set(conn.execute(select(bc.shipment_id).where(bc.batch_key.in_(batches))).scalars())
    # The parcels in flight at the previous run: their clock is what moves without a new fact.
    flying = sh.shipment_id.in_(progress.in_flight(previous))
    # (the zones the history knows, through their index: listing the zones of the parcels in flight
    # would read every parcel in flight, every hour)
    zones = [tz for tz in distinct_values(conn, sh.dest_tz) if every_zone or _new_day(tz, previous, as_of)]
    # The feeds as the previous detection read them (a fetch of its instant run again since may
    # have changed what the history now says of that instant); an account configured since was
    # read through the first account then.
    read = seen.get("feeds") or {a: f["state"] for a, f in feed_states(conn, settings, previous).items()}
    first = next(iter(read), None)
    moved = [a for a in settings.tracking_accounts
             if (read.get(a, read.get(first)) == "ok") != (feeds[a]["state"] == "ok")]
    if zones or moved:
        routed = sh.tracking_account.in_(moved)
        if settings.tracking_accounts[0] in moved:  # unnamed accounts are read through the first one
            routed = or_(routed, sh.tracking_account.is_(None), sh.tracking_account.not_in(settings.tracking_accounts))
        ids |= set(conn.execute(select(sh.shipment_id).where(
            flying, sh.created_at <= as_of,
            or_(sh.dest_tz.in_(zones), routed) if moved else sh.dest_tz.in_(zones))).scalars())
    # A line's shipments are detected together: a reshipment retires the parcel it replaces.
    lines = {ln for part in chunks(ids) for ln in conn.execute(
        select(sh.order_line_id).where(sh.shipment_id.in_(part))).scalars()}
    return {sid for part in chunks(lines) for sid in conn.execute(
        select(sh.shipment_id).where(sh.order_line_id.in_(part))).scalars()}


def arrived_with(conn: Connection, instant: datetime) -> dict[str, Any]:
    """What the run at `instant` fetched and loaded (scans first seen, estimates observed then,
    shipments its load_orders changed): how many, and a digest of which, so a later run can tell
    whether more arrived with that instant (fetched: scans and estimates; loaded: changes)."""
    sc, es, bc = schema.scans.c, schema.estimates.c, schema.batch_changes.c
    scans = sorted(conn.execute(select(sc.scan_id).where(sc.first_seen_at == instant)).scalars())
    estimates = sorted(f"{sid}|{day}" for sid, day in conn.execute(
        select(es.shipment_id, es.est_delivery_date).where(es.observed_at == instant)))
    changed = sorted(f"{sid}|{digest}" for sid, digest in conn.execute(
        select(bc.shipment_id, bc.digest).where(bc.batch_key == batch_key_for(instant))))
    return {"scans": len(scans), "estimates": len(estimates), "digest": _digest([*scans, "", *estimates]),
            "changed": len(changed), "changes_digest": _digest(changed)}


def _digest(lines: list[str]) -> str:
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def _detection_counts(conn: Connection, instant: datetime) -> dict[str, Any]:
    rs = schema.run_steps.c
    # (through the key: by instant alone it read every run's every step)
    counts = conn.execute(select(rs.counts).where(
        rs.batch_key == batch_key_for(instant), rs.step == "detect_exceptions", rs.as_of == instant)).scalar()
    return json.loads(counts) if counts else {}


# What the first run learns from the shop's past counts as known before any destination's day began.
KNOWN_BEFORE_START = datetime(1970, 1, 1, tzinfo=UTC)
# Delivered parcels per carrier that the silence thresholds learn from: the latest ones.
RHYTHM_SAMPLES = 5000
# How thresholds are learned from samples (a change makes the kept tables be learned again); the
# last number is the learning code's own version: bump it when thresholds.learned changes.
THRESHOLDS_CODE = (thresholds.STALLED_QUANTILE, thresholds.LOST_QUANTILE, thresholds.PICKUP_QUANTILE,
                   thresholds.LOST_MARGIN, thresholds.MIN_SAMPLES, 1)


def _thresholds(conn: Connection, shipments: pd.DataFrame, as_of: datetime) -> thresholds.ZonedThresholds:
    """The configured thresholds, raised to each carrier's rhythm as its delivered parcels show it
    by the destination's day (calendar.learned_by; so they move only when that zone's parcels are all
    looked at again: incremental and full detection agree)."""
    configured = thresholds.load()
    midnights = {tz: utc(learned_by(as_of, tz)) for tz in set(shipments["dest_tz"])}
    tables = learned_thresholds(conn, configured, set(midnights.values()), as_of)  # type: ignore[arg-type]
    carriers = set(shipments["carrier"].astype(str))
    tables = {start: thresholds.cold_started(table, configured, carriers) for start, table in tables.items()}
    return thresholds.ZonedThresholds({tz: tables[start] for tz, start in midnights.items()}, configured)  # type: ignore[index]


def learned_thresholds(conn: Connection, configured: thresholds.ThresholdTable, cutoffs: set[datetime],
                       as_of: datetime) -> dict[datetime, thresholds.ThresholdTable]:
    """Per cutoff, the thresholds learned from every carrier's parcels learned before it: each
    learned once, by the first run that needs it, and kept (store/learned.py)."""

    def fit(samples: pd.DataFrame, carriers: list[tuple[Any, ...]]) -> thresholds.ThresholdTable:
        return thresholds.learned(configured, samples, {key[0] for key in carriers})

    return learned.kept_from_samples(
        conn, "thresholds", learned.version(configured.to_json(), RHYTHM_SAMPLES, THRESHOLDS_CODE), cutoffs, as_of,
        schema.transit_samples, ("carrier",), RHYTHM_SAMPLES, "learned_at", fit,
        thresholds.ThresholdTable.to_json, thresholds.ThresholdTable.from_json)


def _new_day(tz: str, previous: datetime, as_of: datetime) -> bool:
    zone = ZoneInfo(tz)
    return previous.astimezone(zone).date() != as_of.astimezone(zone).date()


# Order lines looked at a time when a run looks at more than that (the first run: everything):
# whole lines, since a reshipment retires the parcel it replaces, and frames that stay small however
# long the history (the first run at 1M shipments needed 11 GB in one piece).
PART_LINES = 20_000


def _parts(conn: Connection, as_of: datetime, ids: set[str] | None) -> Iterator[pd.DataFrame]:
    """The shipments created by `as_of` to look at (`ids`; None: every one), a part of at most
    PART_LINES whole order lines at a time."""
    sh = schema.shipments.c
    stmt = select(schema.shipments).where(sh.created_at <= as_of)
    if ids is not None and len(ids) <= PART_LINES:
        yield rows_of(conn, stmt, sh.shipment_id, ids)
        return
    if ids is None:
        lines = list(conn.execute(select(sh.order_line_id).where(sh.created_at <= as_of).distinct()
                                  .order_by(sh.order_line_id)).scalars())
    else:
        lines = sorted({ln for chunk in chunks(ids) for ln in conn.execute(
            select(sh.order_line_id).where(sh.shipment_id.in_(chunk))).scalars()})
    for start in range(0, len(lines), PART_LINES):
        part = lines[start:start + PART_LINES]
        if ids is None:  # a range of lines: one query
            yield pd.read_sql(stmt.where(sh.order_line_id >= part[0], sh.order_line_id <= part[-1]), conn)
        else:
            frame = rows_of(conn, stmt, sh.order_line_id, part)
            yield frame[frame["shipment_id"].isin(ids)].reset_index(drop=True)


def _read(conn: Connection, settings: Settings, feeds: dict[str, dict[str, Any]], as_of: datetime,
          shipments: pd.DataFrame, estimates: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """These shipments with their feed's state, their scans and (`estimates`) carrier estimates by `as_of`."""
    shipments["tracking_account"] = shipments["tracking_account"].where(
        shipments["tracking_account"].isin(settings.tracking_accounts), settings.tracking_accounts[0])
    # Missing scans from a feed we could not read say nothing about the parcel (no false "lost").
    shipments["feed_unknown"] = shipments["tracking_account"].isin({a for a, f in feeds.items() if f["state"] != "ok"})
    ids = shipments["shipment_id"]
    return shipments, scans_until(conn, as_of, ids), estimates_until(conn, as_of, ids) if estimates else None


def _transit(shipments: pd.DataFrame, scans: pd.DataFrame, facts: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Per parcel delivered by `as_of`: its transit, longest silence and wait for pickup."""
    return transit_history(shipments, scans, as_of).merge(
        detection.rhythm(shipments, scans, as_of, facts), on="shipment_id", how="left")


def _learn_transit(conn: Connection, shipments: pd.DataFrame, scans: pd.DataFrame, facts: pd.DataFrame,
                   as_of: datetime, learned_at: datetime) -> pd.DataFrame:
    """One sample per parcel delivered by `as_of`: its transit, longest silence and wait for pickup.
    `learned_at` is kept from the first time a parcel is learned (later writes leave it)."""
    transit = _transit(shipments, scans, facts, as_of)
    rows = [
        {"shipment_id": r.shipment_id, "carrier": r.carrier, "service": r.service, "origin": r.origin,
         "destination": r.destination, "accepted_at": r.accepted.to_pydatetime(),
         "delivered_at": r.delivered.to_pydatetime(), "transit_bd": int(r.transit_bd),
         "max_gap_bd": None if pd.isna(r.max_gap_bd) else int(r.max_gap_bd),
         "pickup_wait_bd": None if pd.isna(r.pickup_wait_bd) else int(r.pickup_wait_bd), "learned_at": learned_at}
        for r in transit.itertuples()]
    updated = ["accepted_at", "delivered_at", "transit_bd", "max_gap_bd", "pickup_wait_bd"]
    # Thresholds count a sample from when it was learned, windows from its delivery.
    learned.forget_changed(conn, schema.transit_samples, rows, updated, {"thresholds": ["learned_at"],
                                                                         "transit": ["delivered_at"]})
    upsert(conn, schema.transit_samples, rows, update=updated)
    return transit


def _learn(conn: Connection, shipments: pd.DataFrame, scans: pd.DataFrame, facts: pd.DataFrame,
           estimates: pd.DataFrame, found: pd.DataFrame, as_of: datetime,
           transit: pd.DataFrame | None = None) -> dict[str, int]:
    """What windows learn from, kept as parcels are delivered: one transit time per delivered parcel,
    how far each of its carrier estimates missed, and how long it still took after each exception.
    `transit`: the transit times this run already learned (the first run learns them first)."""
    if transit is None:
        transit = _learn_transit(conn, shipments, scans, facts, as_of, as_of)
    errors = estimate_errors(shipments, scans, estimates, as_of)
    _keep_samples(conn, schema.estimate_samples, "estimate_errors", [
        {"shipment_id": r.shipment_id, "est_delivery_date": pd.Timestamp(r.est_delivery_date).date(),
         "carrier": r.carrier, "service": r.service, "revision": bool(r.revision),
         "delivered_at": r.delivered_at.to_pydatetime(), "error_bd": int(r.error_bd)}
        for r in errors.itertuples()], ["revision", "delivered_at", "error_bd"])
    after = exception_history(found, transit)
    _keep_samples(conn, schema.exception_samples, "after_exception", [
        {"shipment_id": r.shipment_id, "exception_type": r.exception_type, "carrier": r.carrier,
         "service": r.service, "origin": r.origin, "destination": r.destination,
         "evidence_at": r.evidence_at.to_pydatetime(), "delivered_at": r.delivered_at.to_pydatetime(),
         "remaining_bd": int(r.remaining_bd)}
        for r in after.itertuples()], ["evidence_at", "delivered_at", "remaining_bd"])
    return dict(zip(SAMPLES_SEEN, (len(transit), len(errors), len(after)), strict=True))


SAMPLES_SEEN = ("transit_samples_seen", "estimate_samples_seen", "exception_samples_seen")


def _keep_samples(conn: Connection, table: Any, kind: str, rows: list[dict[str, Any]], updated: list[str]) -> None:
    """Upsert samples a window learns from by delivery; what was kept of `kind` for a later
    cutoff than a changed sample's delivery is forgotten (it would now be learned differently)."""
    learned.forget_changed(conn, table, rows, updated, {kind: ["delivered_at"]})
    upsert(conn, table, rows, update=updated)
