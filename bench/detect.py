"""Detection at scale: pandas `detect()` against the same rules in DuckDB SQL, full and incremental.

    python -m bench.detect --shipments 1000000 [--repeat 3]

For each size a seeded shop is generated once (vectorised numpy, cached as Parquet under
`bench/.data/`) and each phase runs in its own fresh process, so its peak RSS is its own:

  (a) pandas `detect()` over every shipment as of AS_OF (the hourly DAG's full run);
  (b) the same rules as DuckDB SQL over the same data, as an analyst would write them in a
      warehouse — the reference, on the same machine in the same run;
  (c) the next hourly run (NEXT) after 1% of shipments got new scans, detecting only the order
      lines those scans touched — what an incremental pipeline does.

Printed: seconds (best of --repeat), peak RSS, the ratios pandas/DuckDB and incremental/full, the
goals (<= 1.5x DuckDB, incremental <= 5% of full, peak RSS <= 4 GB) and whether pandas and DuckDB
found the same exceptions (per type, and row by row with their evidence).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import holidays
import numpy as np
import pandas as pd

from lastmile.core.calendar import TZ_COUNTRY
from lastmile.core.detection import (
    EXCEPTION_TYPES,
    EXPLAINED_SILENCE,
    REASON_EXCEPTIONS,
    SEVERITY,
    Thresholds,
    detect,
)
from lastmile.core.thresholds import ThresholdTable

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

DATA = Path(__file__).resolve().parent / ".data"
START = datetime(2026, 9, 21, tzinfo=UTC)  # the simulator's first day
DAYS = 60
AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)  # the documented scoring instant
NEXT = AS_OF + timedelta(hours=1)  # the next hourly run, after the new scans
# An hour, with no new data, across midnight in New York (EST): what only the clock changes.
MIDNIGHT_NY = (datetime(2026, 11, 21, 4, 30, tzinfo=UTC), datetime(2026, 11, 21, 5, 30, tzinfo=UTC))
NEW_SCAN_SHARE = 0.01
SEED = 7
GENERATOR_VERSION = 2  # part of the cache folder's name: bump it when the generator changes
GOAL_VS_DUCKDB = 1.5
GOAL_INCREMENTAL = 0.05
GOAL_RSS_MB = 4096
US_S = 1_000_000  # microseconds per second: every instant here is int64 microseconds since the epoch

# The simulator's world (lastmile.sim.simulator), as arrays.
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
         "Europe/London", "Europe/Berlin", "Europe/Paris", "Europe/Madrid")
ZONE_EXTRA = np.array([1, 0, 1, 2, 1, 0, 0, 1])
DEST_CITY = ("BROOKLYN", "CHICAGO", "DENVER", "OAKLAND", "LONDON", "BERLIN", "PARIS", "MADRID")
SERVICES = {  # lane -> (carrier, service, base transit bd, spread, promised bd)
    "domestic_US": [("USPS", "GroundAdvantage", 3, 2, 5), ("USPS", "Priority", 2, 1, 3), ("UPS", "Ground", 3, 2, 5),
                    ("FedEx", "FEDEX_HOME_DELIVERY", 3, 2, 5), ("FedEx", "FEDEX_2_DAY", 2, 0, 2)],
    "domestic_EU": [("DHL", "Paket", 2, 1, 3), ("DPD", "Classic", 2, 2, 4)],
    "international": [("DHL", "ExpressWorldwide", 4, 2, 6), ("USPS", "PriorityMailInternational", 7, 3, 10)],
}
SERVICE_ROWS = [row for rows in SERVICES.values() for row in rows]
MODE_RATES = {"delayed": 0.060, "stalled": 0.025, "lost": 0.015, "failed_attempt": 0.020, "returned": 0.010,
              "damaged": 0.007, "address_problem": 0.010, "customs_hold": 0.012, "stuck_pre_pickup": 0.010}
MODES = ("on_time", *MODE_RATES)
M = {name: i for i, name in enumerate(MODES)}
CUSTOMS_RATE_INTERNATIONAL = 0.12
RESHIP_DAMAGED = 0.03  # a reshipment that is damaged again: the third parcel of a line
FEED_DOWN_SHARE = 0.005  # shipments on a carrier account whose feed is down (unknown state)

# Scan kinds as normalised by lastmile.core.status: (status, reason, message).
SCAN_KINDS = [
    ("pre_transit", None, "Shipping label created"),
    ("in_transit", None, "Accepted at origin facility"),
    ("in_transit", None, "Arrived at facility"),
    ("in_transit", None, "Departed facility"),
    ("exception", "delayed", "Delayed in transit - operational delay"),
    ("failed", "lost", "Package could not be located. Claim initiated."),
    ("exception", "customs_hold", "Held by customs - awaiting clearance"),
    ("in_transit", None, "Released by customs"),
    ("out_for_delivery", None, "Out for delivery"),
    ("exception", "failed_attempt", "Delivery attempted - no access to location"),
    ("exception", "address_problem", "Address information incomplete"),
    ("exception", "refused", "Delivery refused by recipient"),
    ("failed", "damaged", "Package damaged in handling"),
    ("returned", "return_to_sender", "Returning to sender"),
    ("delivered", None, "Delivered, front door"),
]
K = {name: i for i, name in enumerate(
    ["label", "accepted", "arrived", "departed", "delayed", "lost", "customs", "released", "out_for_delivery",
     "failed_attempt", "address", "refused", "damaged", "return", "delivered"])}


@dataclass
class Frames:
    """The three inputs of `detect()`, in the pipeline's column names and types."""

    shipments: pd.DataFrame
    scans: pd.DataFrame
    estimates: pd.DataFrame


# -- the generator -------------------------------------------------------------------------------

class _Calendar:
    """Local dates, local wall-clock instants and business days per destination zone, vectorised."""

    def __init__(self) -> None:
        self.holidays = {c: np.array(sorted(holidays.country_holidays(c, years=range(2025, 2029)).keys()),
                                     dtype="datetime64[D]") for c in set(TZ_COUNTRY.values())}

    def local_day(self, t: np.ndarray, zone: np.ndarray) -> np.ndarray:
        out = np.empty(len(t), dtype="datetime64[D]")
        for z, name in enumerate(ZONES):
            m = zone == z
            if m.any():
                local = pd.DatetimeIndex(t[m].astype("datetime64[us]"), tz="UTC").tz_convert(name).tz_localize(None)
                out[m] = local.values.astype("datetime64[D]")
        return out

    def at_local(self, day: np.ndarray, hour: np.ndarray, zone: np.ndarray) -> np.ndarray:
        """The UTC instant of a local wall-clock hour (never in a DST gap: 07:00-20:00 only)."""
        out = np.empty(len(day), dtype="int64")
        naive = day.astype("datetime64[us]") + (hour * 3600 * US_S).astype("timedelta64[us]")
        for z, name in enumerate(ZONES):
            m = zone == z
            if m.any():
                out[m] = pd.DatetimeIndex(naive[m]).tz_localize(name).tz_convert("UTC").as_unit("us").asi8
        return out

    def add(self, day: np.ndarray, n: np.ndarray, zone: np.ndarray) -> np.ndarray:
        """`lastmile.core.calendar.add_business_days`: roll forward to a business day, then add n."""
        out = np.empty(len(day), dtype="datetime64[D]")
        for z, name in enumerate(ZONES):
            m = zone == z
            if m.any():
                out[m] = np.busday_offset(day[m], n[m], roll="forward", holidays=self.holidays[TZ_COUNTRY[name]])
        return out


class _Batch:
    """Shipments routed together (the originals, then each generation of reshipments)."""

    def __init__(self, rng: np.random.Generator, cal: _Calendar, first: int, line: np.ndarray, zone: np.ndarray,
                 service: np.ndarray, label_at: np.ndarray, sequence: int, replaces: np.ndarray,
                 mode: np.ndarray) -> None:
        self.rng, self.cal, self.n = rng, cal, len(line)
        self.idx = np.arange(first, first + self.n)
        self.line, self.zone, self.service, self.label_at = line, zone, service, label_at
        self.sequence, self.replaces, self.mode = sequence, replaces, mode
        base, spread, promised_bd = (np.array([r[k] for r in SERVICE_ROWS])[service] for k in (2, 3, 4))
        self.label_day = cal.local_day(label_at, zone)
        self.promised = cal.add(self.label_day, promised_bd + ZONE_EXTRA[zone], zone)
        self.transit = np.maximum(1, base + ZONE_EXTRA[zone] + rng.integers(0, spread + 1))
        self.scans: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.estimates: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.reship_at = np.full(self.n, -1, dtype="int64")

    def uniform(self, lo: float, hi: float, k: int | None = None) -> np.ndarray:
        return self.rng.uniform(lo, hi, self.n if k is None else k)

    def scan(self, where: np.ndarray, at: np.ndarray, kind: int) -> None:
        self.scans.append((self.idx[where], at[where], np.full(int(where.sum()), kind, dtype="int8")))

    def estimate(self, where: np.ndarray, at: np.ndarray, day: np.ndarray) -> None:
        self.estimates.append((self.idx[where], at[where], day[where]))

    def route(self) -> None:
        """`simulator._Route.run` for every shipment of the batch at once."""
        cal, mode, zone, hour = self.cal, self.mode, self.zone, 3600 * US_S
        day_us = 24 * hour
        everyone = np.ones(self.n, dtype=bool)
        self.scan(everyone, self.label_at, K["label"])
        label_day = self.label_day.copy()
        on_time_day = cal.add(label_day, self.transit, zone)
        self.estimate(everyone, self.label_at, on_time_day)
        stuck = mode == M["stuck_pre_pickup"]
        never_picked = stuck & (self.uniform(0, 1) < 0.5)  # the shop cancels the label and reships
        self.reship_at[never_picked] = self.label_at[never_picked] + (self.uniform(5, 7) * day_us).astype("int64")[
            never_picked]
        live = ~never_picked
        label_day[stuck] = cal.add(label_day[stuck], self.rng.integers(3, 6, int(stuck.sum())), zone[stuck])
        on_time_day[stuck] = cal.add(label_day[stuck], self.transit[stuck], zone[stuck])
        accept_at = np.maximum(self.label_at + 3 * hour, cal.at_local(label_day, self.uniform(17, 20), zone))
        accept_at[stuck] = cal.at_local(label_day[stuck], self.uniform(15, 19, int(stuck.sum())), zone[stuck])
        self.estimate(stuck & live, accept_at, on_time_day)
        self.scan(live, accept_at, K["accepted"])

        deliver_day = on_time_day.copy()
        slow = (mode == M["delayed"]) | (mode == M["stalled"])
        deliver_day[slow] = cal.add(on_time_day[slow], self.rng.integers(2, 6, int(slow.sum())), zone[slow])
        stalled = mode == M["stalled"]
        stall = (self.uniform(5, 8) * day_us).astype("int64")
        pushed = cal.add(cal.local_day(accept_at + stall, zone), np.full(self.n, 2), zone)
        deliver_day[stalled] = np.maximum(deliver_day[stalled], pushed[stalled])

        # Daily hub scans until the local delivery day (the simulator's loop and its break).
        hops = np.maximum(1, (deliver_day - label_day).astype(int)) - 1
        hops[~live] = 0
        owner = np.repeat(np.arange(self.n), hops)
        h = np.arange(len(owner)) - np.repeat(np.cumsum(hops) - hops, hops) + 1
        delay = np.where(stalled[owner] & (h >= 2), stall[owner], 0)
        t = accept_at[owner] + delay + h * day_us + (self.rng.uniform(-4, 4, len(owner)) * hour).astype("int64")
        keep = cal.local_day(t, zone[owner]) < deliver_day[owner]
        owner, h, t = owner[keep], h[keep], t[keep]
        first = h == 1
        lost = np.zeros(self.n, dtype=bool)
        lost[owner[first & (mode[owner] == M["lost"])]] = True
        ended = lost.copy()
        keep = ~ended[owner] | first
        owner, h, t = owner[keep], h[keep], t[keep]
        first = h == 1
        kind = np.where(h % 2 == 1, K["arrived"], K["departed"]).astype("int8")
        kind[first & (stalled[owner] | lost[owner])] = K["departed"]
        kind[first & (mode[owner] == M["delayed"])] = K["delayed"]
        self.scans.append((self.idx[owner], t, kind))
        last_t = accept_at.copy()
        np.maximum.at(last_t, owner, t)
        t1 = np.full(self.n, -1, dtype="int64")
        t1[owner[first]] = t[first]
        stall_arrival = stalled & (t1 >= 0)
        self.scan(stall_arrival, t1 + stall, K["arrived"])
        self.estimate(stall_arrival, t1 + stall, deliver_day)
        delayed = (mode == M["delayed"]) & (t1 >= 0)
        self.estimate(delayed, t1, deliver_day)
        last_t = np.where(stall_arrival, np.maximum(last_t, t1 + stall), last_t)

        confirmed = lost & (self.uniform(0, 1) < 0.5)  # the carrier confirms the loss after its search
        self.scan(confirmed, t1 + (self.uniform(8, 12) * day_us).astype("int64"), K["lost"])
        self.reship_at[lost] = (t1 + (self.uniform(6, 9) * day_us).astype("int64"))[lost]
        live &= ~lost

        customs = live & (mode == M["customs_hold"])
        held = last_t + 6 * hour
        self.scan(customs, held, K["customs"])
        customs_return = customs & (self.uniform(0, 1) < 0.15)
        self._return(customs_return, held + 10 * day_us)
        live &= ~customs_return
        released_ok = customs & ~customs_return
        release = held + (self.uniform(3, 6) * day_us).astype("int64")
        self.scan(released_ok, release, K["released"])
        after_release = cal.add(cal.local_day(release, zone), self.rng.integers(1, 3, self.n), zone)
        deliver_day[released_ok] = np.maximum(deliver_day[released_ok], after_release[released_ok])
        self.estimate(released_ok, release, deliver_day)
        last_t = np.where(released_ok, release, last_t)

        ofd = cal.at_local(deliver_day, self.uniform(7, 9), zone)
        ofd = np.where(ofd <= last_t, last_t + 2 * hour, ofd)
        self.scan(live, ofd, K["out_for_delivery"])
        done = ofd + (self.uniform(1, 8) * hour).astype("int64")

        failed = live & (mode == M["failed_attempt"])
        self.scan(failed, done, K["failed_attempt"])
        retry_day = cal.add(cal.local_day(done, zone), np.ones(self.n, dtype=int), zone)
        self.estimate(failed, done, retry_day)
        retry_at = cal.at_local(retry_day, self.uniform(10, 17), zone)

        address = live & (mode == M["address_problem"])
        self.scan(address, done, K["address"])
        address_return = address & (self.uniform(0, 1) < 0.3)
        self._return(address_return, done)
        fix_at = cal.at_local(cal.add(cal.local_day(done, zone), np.full(self.n, 3), zone), self.uniform(10, 17), zone)

        refused = live & (mode == M["returned"])
        self.scan(refused, done, K["refused"])
        self._return(refused, done)

        damaged = live & (mode == M["damaged"])
        self.scan(damaged, done - 6 * hour, K["damaged"])
        self.reship_at[damaged] = (done + day_us)[damaged]

        delivered = live & ~address_return & ~refused & ~damaged
        done = np.where(failed, retry_at, np.where(address, fix_at, done))
        self.scan(delivered, done, K["delivered"])

    def _return(self, where: np.ndarray, at: np.ndarray) -> None:
        day_us = 24 * 3600 * US_S
        self.scan(where, at + day_us, K["return"])
        self.reship_at[where] = (at + (self.uniform(4, 6) * day_us).astype("int64"))[where]


def generate(n_shipments: int, seed: int = SEED) -> Frames:
    """A shop of about `n_shipments` shipments (reshipments included) in the simulator's shape."""
    rng, cal = np.random.default_rng(seed), _Calendar()
    n = max(1, round(n_shipments / 1.04))  # about 4% of lines are reshipped
    # Orders of one or two lines, each line shipped a few hours after the order, to the customer's zone.
    second_line = np.concatenate([[False], rng.uniform(0, 1, n - 1) < 0.15])
    order = np.cumsum(~second_line) - 1
    first_of_order = np.searchsorted(order, order)
    line_no = np.arange(n) - first_of_order + 1
    n_orders = int(order[-1]) + 1
    us = (rng.uniform(0, 1, n_orders) < 0.6)[order]
    zone = np.where(us, rng.integers(0, 4, n_orders)[order], rng.integers(4, 8, n_orders)[order])
    customer = rng.integers(0, max(200, n_orders * 3 // 5), n_orders)[order]
    international = rng.uniform(0, 1, n) < np.where(us, 0.03, 0.10)
    lanes = {name: [SERVICE_ROWS.index(r) for r in rows] for name, rows in SERVICES.items()}
    service = np.where(international, np.array(lanes["international"])[rng.integers(0, 2, n)],
                       np.where(us, np.array(lanes["domestic_US"])[rng.integers(0, 5, n)],
                                np.array(lanes["domestic_EU"])[rng.integers(0, 2, n)]))
    mode = np.zeros(n, dtype="int8")
    r = rng.uniform(0, 1, n)
    for name, rate in MODE_RATES.items():
        rates = np.where(international, CUSTOMS_RATE_INTERNATIONAL, 0.0) if name == "customs_hold" else rate
        hit = (mode == 0) & (r < rates)
        mode[hit] = M[name]
        r = np.where(mode == 0, r - rates, r)
    placed = START.timestamp() * US_S + np.sort(rng.uniform(0, DAYS * 86400, n)) * US_S
    label_at = (placed[first_of_order] + rng.uniform(2, 30, n) * 3600 * US_S).astype("int64")

    batches, first = [], 0
    batch = _Batch(rng, cal, first, np.arange(n), zone, service, label_at, 1, np.full(n, -1), mode)
    while batch.n:
        batch.route()
        batches.append(batch)
        first += batch.n
        again = batch.reship_at >= 0
        k = int(again.sum())
        next_mode = np.where((batch.sequence == 1) & (rng.uniform(0, 1, k) < RESHIP_DAMAGED), M["damaged"],
                             M["on_time"]).astype("int8")
        batch = _Batch(rng, cal, first, batch.line[again], batch.zone[again], batch.service[again],
                       batch.reship_at[again], batch.sequence + 1, batch.idx[again], next_mode)
    return _frames(batches, order, line_no, customer, rng)


def _frames(batches: list[_Batch], order: np.ndarray, line_no: np.ndarray, customer: np.ndarray,
            rng: np.random.Generator) -> Frames:
    line = np.concatenate([b.line for b in batches])
    zone = np.concatenate([b.zone for b in batches])
    service = np.concatenate([b.service for b in batches])
    replaces = np.concatenate([b.replaces for b in batches])
    total = len(line)
    ids = np.array([f"SH{i:08d}" for i in range(total)], dtype=object)
    order_ids = np.array([f"O{o:08d}" for o in order], dtype=object)
    line_ids = np.array([f"{o}-{k}" for o, k in zip(order_ids, line_no, strict=True)], dtype=object)
    carriers = np.array([r[0] for r in SERVICE_ROWS], dtype=object)[service]
    eu = zone >= 4
    international = np.isin(service, [SERVICE_ROWS.index(r) for r in SERVICES["international"]])
    shipments = pd.DataFrame({
        "shipment_id": pd.array(ids, dtype="str"),
        "order_line_id": pd.array(line_ids[line], dtype="str"),
        "order_id": pd.array(order_ids[line], dtype="str"),
        "customer_id": pd.array([f"C{c:07d}" for c in customer[line]], dtype="str"),
        "carrier": pd.array(carriers, dtype="str"),
        "service": pd.array(np.array([r[1] for r in SERVICE_ROWS], dtype=object)[service], dtype="str"),
        "tracking_code": pd.array([f"{c[:2].upper()}{v:010X}" for c, v in
                                   zip(carriers, rng.integers(0, 16**10, total), strict=True)], dtype="str"),
        "created_at": pd.to_datetime(np.concatenate([b.label_at for b in batches]), unit="us", utc=True),
        "promised_date": np.concatenate([b.promised for b in batches]).astype(object),
        "origin": pd.array(np.where(eu != international, "NL-VENLO", "US-HOUSTON"), dtype="str"),
        "destination": pd.array([f"{TZ_COUNTRY[ZONES[z]]}-{DEST_CITY[z]}" for z in zone], dtype="str"),
        "dest_tz": pd.array(np.array(ZONES, dtype=object)[zone], dtype="str"),
        "sequence": np.concatenate([np.full(b.n, b.sequence) for b in batches]).astype("int64"),
        "replaces_shipment_id": pd.array(np.where(replaces >= 0, ids[np.maximum(replaces, 0)], None), dtype="str"),
        "feed_unknown": rng.uniform(0, 1, total) < FEED_DOWN_SHARE,
    })
    idx, at, kind = (np.concatenate(parts) for parts in zip(*[s for b in batches for s in b.scans], strict=True))
    order_by = np.argsort(at, kind="stable")  # a scan table grows in arrival order, not per shipment
    idx, at, kind = idx[order_by], at[order_by], kind[order_by]
    scans = pd.DataFrame({
        "shipment_id": pd.array(ids[idx], dtype="str"),
        "occurred_at": pd.to_datetime(at, unit="us", utc=True),
        "status": pd.array(np.array([k[0] for k in SCAN_KINDS], dtype=object)[kind], dtype="str"),
        "reason": pd.array(np.array([k[1] for k in SCAN_KINDS], dtype=object)[kind], dtype="str"),
        "message": pd.array(np.array([k[2] for k in SCAN_KINDS], dtype=object)[kind], dtype="str"),
    })
    e_idx, e_at, e_day = (np.concatenate(parts) for parts in zip(*[e for b in batches for e in b.estimates],
                                                                 strict=True))
    order_by = np.argsort(e_at, kind="stable")
    estimates = pd.DataFrame({
        "shipment_id": pd.array(ids[e_idx[order_by]], dtype="str"),
        "est_delivery_date": e_day[order_by].astype(object),
        "observed_at": pd.to_datetime(e_at[order_by], unit="us", utc=True),
    })
    return Frames(shipments, scans, estimates)


def as_of_view(frames: Frames, at: datetime = AS_OF) -> Frames:
    """What the database holds at `at`: shipments created, scans that happened, estimates seen by then."""
    ts = pd.Timestamp(at)
    return Frames(frames.shipments[frames.shipments["created_at"] <= ts].reset_index(drop=True),
                  frames.scans[frames.scans["occurred_at"] <= ts].reset_index(drop=True),
                  frames.estimates[frames.estimates["observed_at"] <= ts].reset_index(drop=True))


def new_scans(frames: Frames, share: float = NEW_SCAN_SHARE, seed: int = SEED) -> pd.DataFrame:
    """One new scan between AS_OF and NEXT for `share` of the shipments, drawn from parcels still in flight."""
    rng = np.random.default_rng(seed + 1)
    ended = frames.scans.loc[frames.scans["status"].isin(["delivered", "returned", "failed", "cancelled"]),
                             "shipment_id"]
    ids = frames.shipments["shipment_id"]
    in_flight = ids[~ids.isin(ended)].to_numpy()
    want = max(1, round(len(ids) * share))
    pool = in_flight if len(in_flight) >= want else ids.to_numpy()
    chosen = np.sort(rng.choice(pool, size=want, replace=False))
    kinds = rng.choice([K["arrived"], K["departed"], K["out_for_delivery"], K["delivered"], K["failed_attempt"]],
                       size=len(chosen), p=[0.35, 0.3, 0.15, 0.15, 0.05])
    seconds = rng.uniform(1, (NEXT - AS_OF).total_seconds() - 1, len(chosen))
    return pd.DataFrame({
        "shipment_id": pd.array(chosen, dtype="str"),
        "occurred_at": pd.Timestamp(AS_OF) + pd.to_timedelta(np.round(seconds * US_S).astype("int64"), unit="us"),
        "status": pd.array([SCAN_KINDS[k][0] for k in kinds], dtype="str"),
        "reason": pd.array([SCAN_KINDS[k][1] for k in kinds], dtype="str"),
        "message": pd.array([SCAN_KINDS[k][2] for k in kinds], dtype="str"),
    })


class RowIndex:
    """Row positions per key, built once: what a database index on that column gives a query."""

    def __init__(self, keys: pd.Series) -> None:
        codes, uniques = pd.factorize(keys)
        self.code = {key: i for i, key in enumerate(uniques)}
        self.order = np.argsort(codes, kind="stable")
        self.bounds = np.searchsorted(codes[self.order], np.arange(len(uniques) + 1))

    def rows(self, wanted: np.ndarray | pd.Series) -> np.ndarray:
        """Positions of the rows whose key is in `wanted` (unknown keys have none)."""
        k = np.array(sorted({self.code[w] for w in wanted if w in self.code}), dtype="int64")
        lengths = self.bounds[k + 1] - self.bounds[k]
        starts = np.repeat(self.bounds[k] - np.cumsum(lengths) + lengths, lengths)
        return np.sort(self.order[starts + np.arange(lengths.sum())])


def affected(shipments: pd.DataFrame, changed_ids: pd.Series) -> pd.Series:
    """Shipments to re-detect after new scans: every shipment of the order lines those scans touched.

    The whole line, because a reshipment closes the parcel it replaces (`superseded`).
    """
    lines = shipments.loc[shipments["shipment_id"].isin(changed_ids), "order_line_id"]
    return shipments.loc[shipments["order_line_id"].isin(lines), "shipment_id"]


# -- the reference: the same rules as DuckDB SQL --------------------------------------------------

_REASON_ROWS = "\n".join(
    f"""    UNION ALL
    SELECT shipment_id, order_line_id, '{kind}', still_open, {reason}_at,
        json_object('rule', '{kind}', 'carrier_message', {reason}_message)
    FROM flags WHERE {reason}_at IS NOT NULL"""
    for reason, kind in REASON_EXCEPTIONS.items() if kind != "lost")
_REASON_STATE = ",\n".join(
    f"""        min(occurred_at) FILTER (WHERE reason = '{r}') AS {r}_at,
        arg_min(message, occurred_at) FILTER (WHERE reason = '{r}') AS {r}_message"""
    for r in REASON_EXCEPTIONS)
_EXPLAINED = ", ".join(f"'{r}'" for r in sorted(EXPLAINED_SILENCE))

DETECT_SQL = f"""
WITH
ships AS (  -- thresholds: the carrier's service, else the carrier, else the default
    SELECT s.*, coalesce(z.country, 'US') AS country,
        coalesce(ts.stalled_after, tc.stalled_after, td.stalled_after) AS stalled_after,
        coalesce(ts.lost_after, tc.lost_after, td.lost_after) AS lost_after,
        coalesce(ts.pickup_after, tc.pickup_after, td.pickup_after) AS pickup_after
    FROM shipments AS s
    LEFT JOIN tz_country AS z ON z.tz = s.dest_tz
    LEFT JOIN thresholds AS ts ON ts.carrier = s.carrier AND ts.service = s.service
    LEFT JOIN thresholds AS tc ON tc.carrier = s.carrier AND tc.service IS NULL
    JOIN thresholds AS td ON td.carrier IS NULL
    WHERE s.created_at <= getvariable('as_of')
),
sc AS NOT MATERIALIZED (SELECT * FROM scans WHERE occurred_at <= getvariable('as_of')),
state AS (  -- per shipment, from its scans
    SELECT shipment_id,
        max(occurred_at) AS last_scan_at,
        arg_max(message, occurred_at) FILTER (WHERE message IS NOT NULL) AS last_message,
        bool_or(status <> 'pre_transit') AS accepted,
        bool_or(status IN ('returned', 'failed', 'cancelled')) AS terminal_status,
        min(occurred_at) FILTER (WHERE status = 'delivered') AS delivered_at,
        min(occurred_at) AS first_seen,
        min(occurred_at) FILTER (WHERE status <> 'pre_transit') AS first_move
    FROM sc GROUP BY shipment_id
),
carrier_says AS (  -- what the carrier reported, from the few scans with a reason
    SELECT shipment_id,
        -- the last reason given, even if later scans gave none: detect() reads groupby().last(), which skips nulls
        arg_max(reason, occurred_at) AS last_reason,
{_REASON_STATE}
    FROM sc WHERE reason IS NOT NULL GROUP BY shipment_id
),
moves AS (
    SELECT shipment_id, lag(occurred_at) OVER w AS gap_start, occurred_at AS gap_end, lag(reason) OVER w AS prev_reason,
        epoch_us(occurred_at) - epoch_us(lag(occurred_at) OVER w) AS gap_us
    FROM sc WHERE status <> 'pre_transit'
    WINDOW w AS (PARTITION BY shipment_id ORDER BY occurred_at)
),
longest_gap AS (  -- the longest silence once moving, unless the carrier had explained it
    SELECT shipment_id, arg_max(gap_start, gap_us) AS gap_start, arg_max(gap_end, gap_us) AS gap_end
    FROM moves
    WHERE gap_start IS NOT NULL AND (prev_reason IS NULL OR prev_reason NOT IN ({_EXPLAINED}))
    GROUP BY shipment_id
),
latest_estimate AS (
    SELECT shipment_id, est_delivery_date, observed_at AS est_observed_at
    FROM estimates WHERE observed_at <= getvariable('as_of')
    QUALIFY row_number() OVER (PARTITION BY shipment_id ORDER BY observed_at DESC, est_delivery_date DESC) = 1
),
facts AS (  -- local dates in the destination's zone
    SELECT sh.shipment_id, sh.order_line_id, sh.country, sh.created_at, sh.promised_date, sh.sequence,
        sh.replaces_shipment_id, coalesce(sh.feed_unknown, false) AS feed_unknown,
        sh.stalled_after, sh.lost_after, sh.pickup_after,
        st.* EXCLUDE (shipment_id, accepted, terminal_status),
        coalesce(st.accepted, false) AS accepted, coalesce(st.terminal_status, false) AS terminal_status,
        cs.* EXCLUDE (shipment_id), g.gap_start, e.est_delivery_date, e.est_observed_at,
        timezone(sh.dest_tz, getvariable('as_of'))::DATE AS as_of_local,
        timezone(sh.dest_tz, st.last_scan_at)::DATE AS last_local,
        timezone(sh.dest_tz, coalesce(st.delivered_at, getvariable('as_of')))::DATE AS delivered_local,
        timezone(sh.dest_tz, sh.created_at)::DATE AS label_local,
        timezone(sh.dest_tz, g.gap_start)::DATE AS gap_start_local,
        timezone(sh.dest_tz, g.gap_end)::DATE AS gap_end_local,
        timezone(sh.dest_tz, st.first_seen)::DATE AS first_seen_local,
        timezone(sh.dest_tz, st.first_move)::DATE AS first_move_local,
        timezone(sh.dest_tz, (sh.promised_date + 1)::TIMESTAMP) AS promise_end,  -- local midnight ending it
        sh.shipment_id IN (SELECT replaces_shipment_id FROM ships WHERE replaces_shipment_id IS NOT NULL)
            AS superseded
    FROM ships AS sh
    LEFT JOIN state AS st USING (shipment_id)
    LEFT JOIN carrier_says AS cs USING (shipment_id)
    LEFT JOIN longest_gap AS g USING (shipment_id)
    LEFT JOIN latest_estimate AS e USING (shipment_id)
),
counted AS (  -- business days in (start, end] = business-day number of end - that of start
    SELECT f.*,
        CASE WHEN f.last_scan_at IS NULL THEN 0 ELSE a.bd_no - l.bd_no END AS silent_bd,
        coalesce(ge.bd_no - gs.bd_no, 0) AS max_gap_bd,
        coalesce(fm.bd_no - fs.bd_no, 0) AS pickup_wait_bd,
        a.bd_no - lb.bd_no AS waiting_bd
    FROM facts AS f
    JOIN business_calendar AS a ON a.country = f.country AND a.day = f.as_of_local
    JOIN business_calendar AS lb ON lb.country = f.country AND lb.day = f.label_local
    LEFT JOIN business_calendar AS l ON l.country = f.country AND l.day = f.last_local
    LEFT JOIN business_calendar AS gs ON gs.country = f.country AND gs.day = f.gap_start_local
    LEFT JOIN business_calendar AS ge ON ge.country = f.country AND ge.day = f.gap_end_local
    LEFT JOIN business_calendar AS fs ON fs.country = f.country AND fs.day = f.first_seen_local
    LEFT JOIN business_calendar AS fm ON fm.country = f.country AND fm.day = f.first_move_local
),
flags AS (
    SELECT *,
        delivered_at IS NOT NULL AS delivered,
        delivered_at IS NULL AND NOT superseded AS still_open,
        (delivered_at IS NULL OR delivered_local > promised_date) AS after_promise,
        accepted AND delivered_at IS NULL AND NOT terminal_status AND NOT feed_unknown AS moving,
        coalesce(last_reason IN ({_EXPLAINED}), false) AS explained,
        NOT accepted AND delivered_at IS NULL AND NOT terminal_status AS waiting
    FROM counted
),
detections AS (
    SELECT shipment_id, order_line_id, 'late' AS exception_type, still_open AS open,
        least(CASE WHEN promise_end <= getvariable('as_of') THEN promise_end END,
              CASE WHEN est_delivery_date > promised_date THEN est_observed_at END) AS first_evidence_at,
        json_object('rule', 'late', 'promised', promised_date, 'carrier_estimate', est_delivery_date) AS evidence
    FROM flags
    WHERE after_promise AND (promise_end <= getvariable('as_of') OR est_delivery_date > promised_date)
    UNION ALL
    SELECT shipment_id, order_line_id, 'stalled', still_open, last_scan_at,
        json_object('rule', 'stalled', 'business_days_silent', silent_bd, 'last_scan', last_message)
    FROM flags
    WHERE moving AND NOT explained AND silent_bd >= stalled_after AND silent_bd < lost_after
    UNION ALL
    SELECT shipment_id, order_line_id, 'stalled', still_open, gap_start,
        json_object('rule', 'stalled', 'business_days_silent', max_gap_bd)
    FROM flags WHERE delivered AND max_gap_bd >= stalled_after
    UNION ALL
    SELECT shipment_id, order_line_id, 'lost', still_open,
        CASE WHEN moving AND silent_bd >= lost_after THEN last_scan_at ELSE lost_at END,
        json_object('rule', 'lost', 'business_days_silent', silent_bd,
                    'carrier_says_lost', lost_at IS NOT NULL AND NOT delivered)
    FROM flags WHERE (moving AND silent_bd >= lost_after) OR (lost_at IS NOT NULL AND NOT delivered)
    UNION ALL
    SELECT shipment_id, order_line_id, 'stuck_before_pickup', waiting AND NOT superseded, created_at,
        json_object('rule', 'stuck_before_pickup', 'business_days_waiting',
                    CASE WHEN waiting AND NOT feed_unknown AND waiting_bd >= pickup_after
                         THEN waiting_bd ELSE pickup_wait_bd END)
    FROM flags
    WHERE (waiting AND NOT feed_unknown AND waiting_bd >= pickup_after)
       OR (accepted AND pickup_wait_bd >= pickup_after)
{_REASON_ROWS}
    UNION ALL
    SELECT shipment_id, order_line_id, 'reshipped', still_open, created_at,
        json_object('rule', 'reshipped', 'shipment_number', sequence, 'replaces', replaces_shipment_id)
    FROM flags WHERE sequence >= 2
)
SELECT d.shipment_id, d.order_line_id, d.exception_type, v.severity, d.open, d.first_evidence_at,
    d.evidence::VARCHAR AS evidence
FROM detections AS d JOIN severity AS v USING (exception_type)
QUALIFY row_number() OVER (PARTITION BY d.shipment_id, d.exception_type ORDER BY d.first_evidence_at) = 1
"""


def duckdb_connect(threads: int | None = None) -> DuckDBPyConnection:
    """An in-memory DuckDB with the dimension tables the SQL reads: zones, calendar, severities."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("CREATE TABLE tz_country AS SELECT * FROM (VALUES " +
                ", ".join(f"('{tz}', '{c}')" for tz, c in TZ_COUNTRY.items()) + ") AS t(tz, country)")
    con.execute("CREATE TABLE severity AS SELECT * FROM (VALUES " +
                ", ".join(f"('{k}', {v})" for k, v in SEVERITY.items()) + ") AS t(exception_type, severity)")
    # One row per country and day: its business-day number (business days up to and including it).
    rows = []
    for country in sorted(set(TZ_COUNTRY.values())):
        off = set(holidays.country_holidays(country, years=range(2020, 2031)).keys())
        days = pd.date_range("2020-01-01", "2030-12-31", freq="D")
        business = (days.weekday < 5) & ~days.isin(pd.DatetimeIndex(sorted(off)))
        rows.append(pd.DataFrame({"country": country, "day": days.date, "bd_no": np.cumsum(business)}))
    con.register("_calendar", pd.concat(rows, ignore_index=True))
    con.execute("CREATE TABLE business_calendar AS SELECT country, day::DATE AS day, bd_no::BIGINT AS bd_no "
                "FROM _calendar")
    con.unregister("_calendar")
    return con


def duckdb_load(con: DuckDBPyConnection, shipments: pd.DataFrame | Path, scans: pd.DataFrame | Path,
                estimates: pd.DataFrame | Path) -> None:
    """The three tables, from Parquet files or frames."""
    for name, source in (("shipments", shipments), ("scans", scans), ("estimates", estimates)):
        if isinstance(source, Path):
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM read_parquet('{source}')")
        else:
            con.register(f"_{name}", source)
            con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _{name}")
            con.unregister(f"_{name}")
    con.execute("ALTER TABLE estimates ALTER est_delivery_date TYPE DATE")
    con.execute("ALTER TABLE shipments ALTER promised_date TYPE DATE")
    # Like detect(), a shipment without the column is heard from (its feed is not known to be down).
    con.execute("ALTER TABLE shipments ADD COLUMN IF NOT EXISTS feed_unknown BOOLEAN DEFAULT false")


def duckdb_detect(con: DuckDBPyConnection, as_of: datetime,
                  thresholds: Thresholds | ThresholdTable | None = None) -> pd.DataFrame:
    """The SQL version of `detect()` over the loaded tables, as a frame of DETECTION_COLUMNS."""
    table = thresholds if isinstance(thresholds, ThresholdTable) else ThresholdTable(thresholds or Thresholds())
    # One row per override (service NULL: the whole carrier) and the default (carrier NULL).
    rows = [(None, None, table.default), *((c, sv, t) for (c, sv), t in table.overrides.items())]
    con.register("_thresholds", pd.DataFrame(
        [(c, sv, t.stalled_after, t.lost_after, t.pickup_after) for c, sv, t in rows],
        columns=["carrier", "service", "stalled_after", "lost_after", "pickup_after"], dtype=object))
    con.execute("CREATE OR REPLACE TABLE thresholds AS SELECT carrier::VARCHAR AS carrier, "
                "service::VARCHAR AS service, stalled_after::BIGINT AS stalled_after, "
                "lost_after::BIGINT AS lost_after, pickup_after::BIGINT AS pickup_after FROM _thresholds")
    con.unregister("_thresholds")
    con.execute(f"SET VARIABLE as_of = TIMESTAMPTZ '{pd.Timestamp(as_of).tz_convert('UTC').isoformat()}'")
    return con.sql(DETECT_SQL).to_arrow_table().to_pandas()


# -- comparing the two ----------------------------------------------------------------------------

def disagreements(pandas_found: pd.DataFrame, sql_found: pd.DataFrame) -> pd.DataFrame:
    """Rows that differ between two detection frames: key, open, first evidence or evidence facts."""
    def norm(f: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({
            "shipment_id": f["shipment_id"].astype(str), "exception_type": f["exception_type"].astype(str),
            "open": f["open"].astype(bool), "severity": f["severity"].astype(int),
            "first_evidence_at": pd.to_datetime(f["first_evidence_at"], utc=True).dt.as_unit("us"),
            "evidence": [json.dumps(json.loads(e), sort_keys=True) for e in f["evidence"]],
        })
    both = norm(pandas_found).merge(norm(sql_found), on=["shipment_id", "exception_type"], how="outer",
                                    suffixes=("_pandas", "_sql"), indicator=True)
    same = (both["_merge"] == "both")
    for col in ("open", "severity", "first_evidence_at", "evidence"):
        same &= both[f"{col}_pandas"].eq(both[f"{col}_sql"]).fillna(False).astype(bool)
    return both[~same]


def counts_by_type(found: pd.DataFrame) -> dict[str, int]:
    counts = found["exception_type"].value_counts()
    return {kind: int(counts.get(kind, 0)) for kind in EXCEPTION_TYPES}


# -- phases, each in a fresh process --------------------------------------------------------------

def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is this phase's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _paths(folder: Path) -> dict[str, Path]:
    return {name: folder / f"{name}.parquet" for name in ("shipments", "scans", "estimates", "new_scans")}


def read_frames(folder: Path) -> Frames:
    p = _paths(folder)
    return Frames(pd.read_parquet(p["shipments"]), pd.read_parquet(p["scans"]), pd.read_parquet(p["estimates"]))


def ensure_data(n: int, seed: int = SEED) -> tuple[Path, float]:
    """Generate the shop for (n, seed) unless cached; the folder and the seconds spent generating."""
    folder = DATA / f"shop-v{GENERATOR_VERSION}-{n}-seed{seed}"
    p = _paths(folder)
    if all(path.exists() for path in p.values()):
        return folder, 0.0
    start = time.perf_counter()
    frames = as_of_view(generate(n, seed))
    folder.mkdir(parents=True, exist_ok=True)
    frames.shipments.to_parquet(p["shipments"], index=False)
    frames.scans.to_parquet(p["scans"], index=False)
    frames.estimates.to_parquet(p["estimates"], index=False)
    new_scans(frames, seed=seed).to_parquet(p["new_scans"], index=False)
    return folder, time.perf_counter() - start


def _timed(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_phase(phase: str, folder: Path, repeat: int) -> dict[str, Any]:
    """One engine on one data set in this process: seconds (best of `repeat`), RSS after loading, peak RSS."""
    p = _paths(folder)
    out: dict[str, Any] = {"phase": phase}
    if phase == "duckdb":
        con = duckdb_connect()
        duckdb_load(con, p["shipments"], p["scans"], p["estimates"])
        out["loaded_mb"] = _rss_mb("VmRSS")
        _reset_peak()
        out["seconds"], found = _timed(repeat, lambda: duckdb_detect(con, AS_OF))
        out["peak_mb"] = _rss_mb("VmHWM")
        found.to_parquet(folder / "found-duckdb.parquet", index=False)
        # Untimed, for the checks: an hour across New York midnight with no new data (the clock alone),
        # then the full run at NEXT once the new scans are in.
        for tag, at in zip(("before", "after"), MIDNIGHT_NY, strict=True):
            duckdb_detect(con, at).to_parquet(folder / f"found-duckdb-midnight-{tag}.parquet", index=False)
        con.execute(f"INSERT INTO scans BY NAME SELECT * FROM read_parquet('{p['new_scans']}')")
        duckdb_detect(con, NEXT).to_parquet(folder / "found-duckdb-next.parquet", index=False)
        return out
    frames = read_frames(folder)
    if phase == "pandas":
        out["loaded_mb"] = _rss_mb("VmRSS")
        _reset_peak()
        out["seconds"], found = _timed(repeat, lambda: detect(frames.shipments, frames.scans, frames.estimates, AS_OF))
        out["peak_mb"] = _rss_mb("VmHWM")
        found.to_parquet(folder / "found-pandas.parquet", index=False)
    elif phase == "incremental":
        fresh = pd.read_parquet(p["new_scans"])
        scans = pd.concat([frames.scans, fresh], ignore_index=True)  # the scans table after the new batch
        # The database's indexes on shipments.shipment_id / order_line_id and scans.shipment_id, built once.
        by_shipment, by_line = RowIndex(frames.shipments["shipment_id"]), RowIndex(frames.shipments["order_line_id"])
        scans_of, estimates_of = RowIndex(scans["shipment_id"]), RowIndex(frames.estimates["shipment_id"])
        line_ids, shipment_ids = frames.shipments["order_line_id"].to_numpy(), frames.shipments["shipment_id"].to_numpy()
        out["loaded_mb"] = _rss_mb("VmRSS")
        _reset_peak()

        def incremental() -> tuple[pd.DataFrame, np.ndarray, float]:
            start = time.perf_counter()
            rows = by_line.rows(line_ids[by_shipment.rows(fresh["shipment_id"].unique())])
            ids = shipment_ids[rows]
            sub = Frames(frames.shipments.iloc[rows], scans.iloc[scans_of.rows(ids)],
                         frames.estimates.iloc[estimates_of.rows(ids)])
            selected = time.perf_counter() - start
            return detect(sub.shipments, sub.scans, sub.estimates, NEXT), ids, selected

        out["seconds"], (found, ids, out["select_seconds"]) = _timed(repeat, incremental)
        out["peak_mb"] = _rss_mb("VmHWM")
        out["shipments_redetected"] = len(ids)
        # The same selection without indexes: scanning every row of the frames.
        start = time.perf_counter()
        naive = affected(frames.shipments, fresh["shipment_id"])
        out["select_by_scan_seconds"] = (time.perf_counter() - start) + float(
            _timed(1, lambda: (scans[scans["shipment_id"].isin(naive)],
                               frames.estimates[frames.estimates["shipment_id"].isin(naive)]))[0])
        assert set(naive) == set(ids), "the indexed selection must pick the same shipments"
        found.to_parquet(folder / "found-incremental.parquet", index=False)
        pd.DataFrame({"shipment_id": ids}).to_parquet(folder / "affected.parquet", index=False)
    else:
        raise ValueError(phase)
    return out


def _in_fresh_process(phase: str, folder: Path, repeat: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.detect", "--phase", phase, "--data", str(folder), "--repeat", str(repeat)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the report -----------------------------------------------------------------------------------

def machine() -> str:
    import duckdb

    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return (f"{len(os.sched_getaffinity(0))} cores ({cpu}), {mem_kb / 1024**2:.1f} GiB RAM; "
            f"Python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}, "
            f"DuckDB {duckdb.__version__} (threads {len(os.sched_getaffinity(0))})")


def _busy_seconds() -> float:
    """CPU seconds spent by every process on the machine since boot (from /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds spent by this process and the phases it ran."""
    me, phases = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + phases.ru_utime + phases.ru_stime


def _changed_shipments(before: pd.DataFrame, after: pd.DataFrame) -> set[str]:
    return set(disagreements(before, after)["shipment_id"])


def bench_size(n: int, repeat: int, timeout: float) -> dict[str, Any]:
    """Every phase for one size, then the checks: pandas vs SQL, incremental vs full."""
    folder, generated = ensure_data(n)
    start, busy, own = time.perf_counter(), _busy_seconds(), _own_seconds()
    p = _paths(folder)
    sizes = {name: len(pd.read_parquet(p[name], columns=["shipment_id"]))
             for name in ("shipments", "scans", "estimates", "new_scans")}
    phases = {ph: _in_fresh_process(ph, folder, repeat, timeout) for ph in ("pandas", "duckdb", "incremental")}
    others_cores = ((_busy_seconds() - busy) - (_own_seconds() - own)) / (time.perf_counter() - start)
    pandas_found = pd.read_parquet(folder / "found-pandas.parquet")
    sql_found = pd.read_parquet(folder / "found-duckdb.parquet")
    # The incremental result must be what a full run at NEXT says about the same shipments.
    redetected = set(pd.read_parquet(folder / "affected.parquet")["shipment_id"])
    full_next = pd.read_parquet(folder / "found-duckdb-next.parquet")
    incremental_diff = disagreements(pd.read_parquet(folder / "found-incremental.parquet"),
                                     full_next[full_next["shipment_id"].isin(redetected)])
    # What re-detecting only the shipments with new scans cannot see: changes made by the clock alone.
    missed_now = _changed_shipments(sql_found[~sql_found["shipment_id"].isin(redetected)],
                                    full_next[~full_next["shipment_id"].isin(redetected)])
    missed_midnight = _changed_shipments(pd.read_parquet(folder / "found-duckdb-midnight-before.parquet"),
                                         pd.read_parquet(folder / "found-duckdb-midnight-after.parquet"))
    return {"n": n, "generated_seconds": generated, **sizes, "phases": phases,
            "others_cores": others_cores,
            "counts_pandas": counts_by_type(pandas_found), "counts_duckdb": counts_by_type(sql_found),
            "rows_differing": len(disagreements(pandas_found, sql_found)),
            "incremental_rows_differing": len(incremental_diff),
            "clock_only_next": len(missed_now), "clock_only_midnight": len(missed_midnight)}


def goals(r: dict[str, Any]) -> dict[str, tuple[float, float, bool]]:
    """Each goal: (measured, limit, met)."""
    ph = r["phases"]
    vs_duckdb = ph["pandas"]["seconds"] / ph["duckdb"]["seconds"]
    incremental = ph["incremental"]["seconds"] / ph["pandas"]["seconds"]
    peak = max(ph["pandas"]["peak_mb"], ph["incremental"]["peak_mb"])
    return {"pandas/DuckDB": (vs_duckdb, GOAL_VS_DUCKDB, vs_duckdb <= GOAL_VS_DUCKDB),
            "incremental/full": (incremental, GOAL_INCREMENTAL, incremental <= GOAL_INCREMENTAL),
            "peak RSS MB (pandas)": (peak, GOAL_RSS_MB, peak <= GOAL_RSS_MB)}


def report(r: dict[str, Any]) -> str:
    ph = r["phases"]
    lines = [
        f"shipments {r['shipments']:,}  scans {r['scans']:,}  estimates {r['estimates']:,}"
        + (f"  (generated in {r['generated_seconds']:.0f} s)" if r["generated_seconds"] else "  (cached data)"),
        f"{'phase':44} {'seconds':>9} {'RSS loaded MB':>14} {'peak RSS MB':>12}",
    ]
    names = {"pandas": "(a) pandas detect(), full",
             "duckdb": "(b) DuckDB SQL, full (reference)",
             "incremental": f"(c) pandas, {ph['incremental']['shipments_redetected']:,} shipments re-detected"}
    for key, label in names.items():
        lines.append(f"{label:44} {ph[key]['seconds']:9.3f} {ph[key]['loaded_mb']:14.0f} {ph[key]['peak_mb']:12.0f}")
    inc = ph["incremental"]
    lines.append(f"    (c) = selecting their rows by index {inc['select_seconds']:.3f} s + detect(); "
                 f"{r['new_scans']:,} new scans. Selecting by scanning the frames instead: "
                 f"{inc['select_by_scan_seconds']:.3f} s")
    for name, (value, limit, met) in goals(r).items():
        lines.append(f"{name:22} = {value:8.3f}   goal <= {limit:g}: {'met' if met else 'NOT met'}")
    same = r["counts_pandas"] == r["counts_duckdb"]
    lines += [
        "detections per type    " + "  ".join(f"{k}={v}" for k, v in r["counts_pandas"].items()),
        f"pandas vs DuckDB: per-type counts {'equal' if same else 'DIFFER'}; {r['rows_differing']} rows differ "
        "(key, open, severity, first evidence, evidence facts)",
        f"incremental vs the full run at NEXT, same shipments: {r['incremental_rows_differing']} rows differ",
        f"shipments changed by the clock alone (an incremental run misses them): {r['clock_only_next']} in the "
        f"hour to NEXT, {r['clock_only_midnight']} in the hour across New York midnight",
    ]
    lines.append(f"other processes on this machine used {max(0.0, r['others_cores']):.2f} cores on average"
                 " meanwhile"
                 + ("  -- timings are NOT reliable" if r["others_cores"] > 0.2 else ""))
    if not same:
        lines.append("DuckDB per type        " + "  ".join(f"{k}={v}" for k, v in r["counts_duckdb"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipments", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per phase; the best is reported")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per phase")
    parser.add_argument("--phase", choices=["pandas", "duckdb", "incremental"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.data, args.repeat)))
        return
    print(machine())
    print(f"as of {AS_OF.isoformat()}; incremental run at {NEXT.isoformat()}; best of {args.repeat}\n")
    for n in args.shipments:
        print(report(bench_size(n, args.repeat, args.timeout)), "\n", flush=True)


if __name__ == "__main__":
    main()
