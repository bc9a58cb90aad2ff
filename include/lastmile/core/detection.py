"""Detect delivery exceptions per shipment as of one instant, from scans, estimates and promises.

Everything is computed from data visible at `as_of` (scans that occurred by then, estimates
observed by then), so a rerun or backfill of the same instant gives the same answer. Business
days are counted in the destination's country (weekends and public holidays).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from lastmile.core.calendar import _holidays, country_for, weekmask
from lastmile.core.thresholds import Thresholds, ThresholdTable, ZonedThresholds  # noqa: F401 -- Thresholds re-exported

# Gravity of each exception; a case shows its gravest open one.
SEVERITY = {
    "late": 1,
    "failed_attempt": 1,
    "customs_hold": 1,
    "address_problem": 2,
    "stuck_before_pickup": 1,
    "stalled": 2,
    "returned": 3,
    "damaged": 3,
    "lost": 3,
    "reshipped": 3,
}
EXCEPTION_TYPES = tuple(SEVERITY)
# Scan reasons that are exceptions in their own right, as the carrier reports them.
REASON_EXCEPTIONS = {
    "failed_attempt": "failed_attempt",
    "refused": "returned",
    "address_problem": "address_problem",
    "customs_hold": "customs_hold",
    "damaged": "damaged",
    "lost": "lost",
    "return_to_sender": "returned",
    # The carrier gave up on delivering it (EasyPost failure): a person takes the case, as for a return.
    "failure": "returned",
}
# A carrier-explained hold: the parcel is waiting for a known reason, so quiet days are expected.
# Only the lost threshold applies to it.
EXPLAINED_SILENCE = frozenset({"customs_hold", "address_problem", "held"})
DETECTION_COLUMNS = ["shipment_id", "order_line_id", "exception_type", "severity", "open",
                     "first_evidence_at", "evidence"]


@lru_cache(maxsize=64)
def _holiday_array(country: str, years: tuple[int, ...]) -> np.ndarray:
    days = sorted(d for y in years for d in _holidays(country, y))
    return np.array(days, dtype="datetime64[D]")


def business_days(start: pd.Series, end: pd.Series, country: pd.Series) -> pd.Series:
    """Business days in (start, end] per row, each row in its own country's calendar."""
    out = np.zeros(len(start), dtype="int64")
    valid = (start.notna() & end.notna()).to_numpy()
    starts = start.to_numpy(dtype="datetime64[D]")
    ends = end.to_numpy(dtype="datetime64[D]")
    for ctry, pos in _groups(country.to_numpy(dtype=object), valid):
        s, e = starts[pos], ends[pos]
        years = tuple(range(int(str(min(s.min(), e.min()))[:4]), int(str(max(s.max(), e.max()))[:4]) + 1))
        # busday_count counts [start, end); shift by one day to count (start, end].
        out[pos] = np.busday_count(s + 1, e + 1, weekmask=weekmask(str(ctry)),
                                   holidays=_holiday_array(str(ctry), years))
    return pd.Series(out, index=start.index)


def _groups(keys: np.ndarray, rows: np.ndarray | None = None) -> list[tuple[object, np.ndarray]]:
    """The positions of each distinct key (missing keys, and rows not in `rows`, left out): a loop
    over a handful of zones or countries, with positional numpy work inside (pandas' label-based
    groupby and .loc cost more than the work for the few hundred parcels of an hour)."""
    codes, uniques = pd.factorize(keys)
    if rows is not None:
        codes = np.where(rows, codes, -1)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return [(key, order[bounds[k]:bounds[k + 1]]) for k, key in enumerate(uniques) if bounds[k] < bounds[k + 1]]


def countries(shipments: pd.DataFrame) -> pd.Series:
    """Each shipment's destination country (calendar.country_for), for business-day counts."""
    by_zone = shipments["dest_tz"].map({tz: country_for(None, tz) for tz in shipments["dest_tz"].unique()})
    if "dest_country" not in shipments:
        return by_zone.astype("object")
    given = shipments["dest_country"].where(shipments["dest_country"].astype("string").str.len() > 0)
    return given.fillna(by_zone).astype("object")


def local_dates(instants: pd.Series, tz: pd.Series) -> pd.Series:
    """The calendar date of each UTC instant in its row's time zone."""
    values = pd.DatetimeIndex(pd.to_datetime(instants, utc=True))
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[s]")
    for zone, pos in _groups(tz.to_numpy(dtype=object)):
        wall = values[pos].tz_convert(str(zone)).tz_localize(None)
        out[pos] = wall.to_numpy().astype("datetime64[D]")
    return pd.Series(out, index=instants.index)


def end_of_local_day(days: pd.Series, tz: pd.Series) -> pd.Series:
    """The UTC instant at which each local date ends in its row's time zone."""
    midnights = pd.DatetimeIndex(pd.to_datetime(days).astype("datetime64[ns]") + pd.Timedelta(days=1))
    out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[ns]")
    for zone, pos in _groups(tz.to_numpy(dtype=object)):
        local = midnights[pos].tz_localize(str(zone), ambiguous="NaT", nonexistent="NaT")
        out[pos] = local.tz_convert("UTC").tz_localize(None).to_numpy()
    result = pd.Series(pd.DatetimeIndex(out).tz_localize("UTC"), index=days.index)
    # A midnight skipped or repeated by a DST change: the wall-clock rule of datetime (fold=0), row by row.
    odd = result.isna()
    if odd.any():
        result.loc[odd] = pd.to_datetime([datetime.combine(d + timedelta(days=1), time(0), ZoneInfo(z))
                                          for d, z in zip(days[odd], tz[odd], strict=True)], utc=True)
    return result


def shipment_facts(shipments: pd.DataFrame, scans: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Per shipment created by `as_of`, what its scans say then: last scan, silence, longest silence
    once moving (`max_gap_bd`), wait for pickup (`pickup_wait_bd`), delivery, end of the journey.
    The rules read these; the learned thresholds learn from the same facts of delivered parcels."""
    as_of_ts = pd.Timestamp(as_of).tz_convert("UTC")
    ships = shipments[pd.to_datetime(shipments["created_at"], utc=True) <= as_of_ts].copy()
    if ships.empty:
        return ships
    ships["country"] = countries(ships)
    ships["promised_date"] = pd.to_datetime(ships["promised_date"])
    sc = scans.copy()
    sc["occurred_at"] = pd.to_datetime(sc["occurred_at"], utc=True)
    sc = sc[(sc["occurred_at"] <= as_of_ts) & sc["shipment_id"].notna()]
    # Scans are grouped by an integer code ranked like the shipment id: ids are hashed once, not per groupby.
    code, ids = pd.factorize(sc["shipment_id"], sort=True)
    sc = sc.assign(_sid=code).iloc[np.lexsort((sc["occurred_at"].array.asi8, code))]

    state = _scan_state(sc)
    state.index = pd.Index(ids.take(state.index.to_numpy()), name="shipment_id")
    state = state.reindex(ships["shipment_id"]).reset_index()
    s = ships.merge(state, on="shipment_id", how="left")
    s["as_of_local"] = local_dates(pd.Series(as_of_ts, index=s.index), s["dest_tz"])
    s["last_local"] = local_dates(s["last_scan_at"].fillna(as_of_ts), s["dest_tz"])
    s["silent_bd"] = business_days(s["last_local"], s["as_of_local"], s["country"])
    s.loc[s["last_scan_at"].isna(), "silent_bd"] = 0
    s["delivered"] = s["delivered_at"].notna()
    s["max_gap_bd"] = business_days(local_dates(s["_gap_start"], s["dest_tz"]),
                                    local_dates(s["_gap_end"], s["dest_tz"]), s["country"])
    s["gap_start_at"] = s["_gap_start"]
    s["pickup_wait_bd"] = business_days(local_dates(s["_first_seen"], s["dest_tz"]),
                                        local_dates(s["_first_move"], s["dest_tz"]), s["country"])
    s["terminal"] = s["delivered"] | s["terminal_status"].fillna(False).astype(bool)
    # A shipment replaced by a reshipment is over: its exceptions are history, the new parcel is live.
    s["superseded"] = s["shipment_id"].isin(set(ships["replaces_shipment_id"].dropna()))
    return s


def rhythm(shipments: pd.DataFrame, scans: pd.DataFrame, as_of: datetime,
           facts: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each parcel delivered by `as_of`: its longest silence once moving and its wait for pickup
    (business days; NaN where there were not two scans to measure between). `facts`: shipment_facts
    of the same arguments, when the caller has them already."""
    s = shipment_facts(shipments, scans, as_of) if facts is None else facts
    if s.empty:
        return pd.DataFrame(columns=["shipment_id", "max_gap_bd", "pickup_wait_bd"])
    done = s[s["delivered"]]
    return pd.DataFrame({"shipment_id": done["shipment_id"],
                         "max_gap_bd": done["max_gap_bd"].where(done["_gap_start"].notna()),
                         "pickup_wait_bd": done["pickup_wait_bd"].where(done["_first_move"].notna())}
                        ).reset_index(drop=True)


def detect(
    shipments: pd.DataFrame,
    scans: pd.DataFrame,
    estimates: pd.DataFrame,
    as_of: datetime,
    thresholds: Thresholds | ThresholdTable | ZonedThresholds | None = None,
    facts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (shipment, exception type) evident at `as_of`; see DETECTION_COLUMNS.

    `thresholds` is one set for every shipment, or a table per carrier and service (default:
    the built-in defaults, as in thresholds.toml). `facts`: shipment_facts of the same arguments,
    when the caller has them already.
    """
    as_of_ts = pd.Timestamp(as_of).tz_convert("UTC")
    s = shipment_facts(shipments, scans, as_of) if facts is None else facts
    if s.empty:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    hits: list[_Hits] = []

    def emit(mask: pd.Series, kind: str, evidence_at: pd.Series, facts: dict[str, pd.Series],
             open_mask: pd.Series | None = None) -> None:
        # (the rows of a rule are kept as columns and made one frame at the end: a frame per rule
        # cost more than the rules on an hour's few parcels)
        tripped = mask.fillna(False).astype(bool)
        index = tripped.index[tripped.to_numpy()]
        if index.empty:
            return
        still_open = ~s["delivered"].loc[index] if open_mask is None else open_mask.loc[index]
        still_open = still_open & ~s["superseded"].loc[index]
        hits.append(_Hits(kind, index, still_open.astype(bool), evidence_at.loc[index],
                          # JSON only for the rows that tripped the rule (a per-row dumps over every shipment is slow).
                          _evidence(index, kind, **{k: v.loc[index] for k, v in facts.items()})))

    # late: the promise passed undelivered, delivery came after it, or the carrier's estimate moved past it.
    promise_end = end_of_local_day(s["promised_date"].dt.date, s["dest_tz"])
    est = _latest_estimates(estimates, as_of_ts)
    s = s.merge(est, on="shipment_id", how="left")
    table = (thresholds if isinstance(thresholds, (ThresholdTable, ZonedThresholds))
             else ThresholdTable(thresholds or Thresholds()))
    th = table.columns(s)  # per row: each carrier and service may have its own
    delivered_local = local_dates(s["delivered_at"].fillna(as_of_ts), s["dest_tz"])
    missed = (promise_end <= as_of_ts) & (~s["delivered"] | (delivered_local > s["promised_date"]))
    est_past = s["est_delivery_date"].notna() & (pd.to_datetime(s["est_delivery_date"]) > s["promised_date"])
    est_past &= ~s["delivered"] | (delivered_local > s["promised_date"])
    late_at = pd.concat([promise_end.where(missed), s["est_observed_at"].where(est_past)], axis=1).min(axis=1)
    emit(missed | est_past, "late", late_at,
         dict(promised=s["promised_date"].dt.date, carrier_estimate=s["est_delivery_date"]))

    # A parcel whose carrier feed is down or stale is in an unknown state: the rules that read
    # silence as trouble (stalled, lost by silence, stuck before pickup) wait for the feed.
    heard = ~s["feed_unknown"].fillna(False).astype(bool) if "feed_unknown" in s else pd.Series(True, index=s.index)
    moving = s["accepted"].fillna(False).astype(bool) & ~s["terminal"] & heard
    explained = s["last_reason"].isin(EXPLAINED_SILENCE)
    # Before the shop's own deliveries show a carrier's rhythm (a cold start), silence alone never
    # says "lost": only the carrier's word does, and a long silence stays "stalled".
    silence_may_be_lost = th["lost_by_silence"].astype(bool)
    emit(moving & ~explained & (s["silent_bd"] >= th["stalled_after"])
         & ((s["silent_bd"] < th["lost_after"]) | ~silence_may_be_lost),
         "stalled", s["last_scan_at"], dict(business_days_silent=s["silent_bd"], last_scan=s["last_message"]))
    gap_stall = s["delivered"] & (s["max_gap_bd"].fillna(0) >= th["stalled_after"])
    emit(gap_stall, "stalled", s["gap_start_at"], dict(business_days_silent=s["max_gap_bd"]))

    silent_lost = moving & (s["silent_bd"] >= th["lost_after"]) & silence_may_be_lost
    carrier_lost = s["reason_lost"].fillna(False).astype(bool) & ~s["delivered"]
    lost_at = s["last_scan_at"].where(silent_lost, s["lost_at"])
    emit(silent_lost | carrier_lost, "lost", lost_at,
         dict(business_days_silent=s["silent_bd"], carrier_says_lost=carrier_lost))

    label_local = local_dates(pd.to_datetime(s["created_at"], utc=True), s["dest_tz"])
    waiting_bd = business_days(label_local, s["as_of_local"], s["country"])
    stuck_now = ~s["accepted"].fillna(False).astype(bool) & ~s["terminal"] & heard & (waiting_bd >= th["pickup_after"])
    stuck_then = s["accepted"].fillna(False).astype(bool) & (s["pickup_wait_bd"].fillna(0) >= th["pickup_after"])
    emit(stuck_now | stuck_then, "stuck_before_pickup", pd.to_datetime(s["created_at"], utc=True),
         dict(business_days_waiting=waiting_bd.where(stuck_now, s["pickup_wait_bd"])),
         open_mask=~s["accepted"].fillna(False).astype(bool) & ~s["terminal"])

    for reason, kind in REASON_EXCEPTIONS.items():
        if kind == "lost":
            continue
        col = f"reason_{reason}"
        if col in s:
            emit(s[col].fillna(False).astype(bool), kind, s[f"{reason}_at"],
                 dict(carrier_message=s[f"{reason}_message"]))

    reship = pd.to_numeric(s["sequence"]) >= 2
    emit(reship, "reshipped", pd.to_datetime(s["created_at"], utc=True),
         dict(shipment_number=s["sequence"], replaces=s["replaces_shipment_id"]))

    if not hits:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    rows = np.concatenate([h.index.to_numpy() for h in hits])
    sizes = [len(h.index) for h in hits]
    found = pd.DataFrame({
        # (as Series: the ids keep the facts' dtype, whatever the caller's frames held)
        "shipment_id": s["shipment_id"].loc[rows].reset_index(drop=True),
        "order_line_id": s["order_line_id"].loc[rows].reset_index(drop=True),
        "exception_type": np.repeat(np.array([h.kind for h in hits], dtype=object), sizes),
        "severity": np.repeat([SEVERITY[h.kind] for h in hits], sizes),
        "open": np.concatenate([h.still_open.to_numpy(dtype=bool) for h in hits]),
        "first_evidence_at": pd.concat([h.evidence_at for h in hits], ignore_index=True),
        "evidence": np.concatenate([h.evidence.to_numpy(dtype=object) for h in hits])})
    # A shipment can trip one rule twice (e.g. a stall now and one earlier); keep the earliest evidence.
    found = found.sort_values("first_evidence_at").drop_duplicates(["shipment_id", "exception_type"])
    return found[DETECTION_COLUMNS].reset_index(drop=True)


def _scan_state(sc: pd.DataFrame) -> pd.DataFrame:
    """Per-shipment facts from its scans (ordered by their own time), indexed by the `_sid` code."""
    g = sc.groupby("_sid", sort=False)
    state = pd.DataFrame({
        "last_scan_at": g["occurred_at"].max(),
        "last_message": g["message"].last(),
        "last_reason": g["reason"].last(),
        "accepted": (sc["status"] != "pre_transit").groupby(sc["_sid"], sort=False).any(),
    })
    # Filters below keep only the columns they need: copying the string columns of every scan is slow.
    state["delivered_at"] = sc.loc[sc["status"] == "delivered", ["_sid", "occurred_at"]].groupby(
        "_sid")["occurred_at"].min()
    # A return or a carrier-declared loss ends the journey; a late "delivered" scan still wins.
    state["terminal_status"] = sc.loc[sc["status"].isin(["returned", "failed", "cancelled"]),
                                      ["_sid", "occurred_at"]].groupby("_sid")["occurred_at"].min().notna()
    reasoned = sc.loc[sc["reason"].isin(list(REASON_EXCEPTIONS)),
                      ["_sid", "occurred_at", "reason", "message"]]
    for reason in REASON_EXCEPTIONS:
        hits = reasoned[reasoned["reason"] == reason].groupby("_sid")
        state[f"reason_{reason}"] = hits["occurred_at"].min().notna()
        state[f"{reason}_at"] = hits["occurred_at"].min()
        state[f"{reason}_message"] = hits["message"].first()

    # Gaps between consecutive scans once moving (a stall that has since resolved), and the wait
    # between the label and the first acceptance scan (a parcel that sat before pickup).
    moving = sc.loc[sc["status"] != "pre_transit", ["_sid", "occurred_at", "reason"]]
    prev = moving.groupby("_sid")["occurred_at"].shift()
    prev_reason = moving.groupby("_sid")["reason"].shift()
    gaps = pd.DataFrame({"_sid": moving["_sid"], "start": prev, "end": moving["occurred_at"]})
    # Silence after a hold the carrier already explained (customs, an address fix) is not a stall.
    gaps = gaps[~prev_reason.isin(EXPLAINED_SILENCE)].dropna()
    first_move = moving.groupby("_sid")["occurred_at"].min()
    first_seen = sc.groupby("_sid")["occurred_at"].min()
    longest = gaps.assign(d=gaps["end"] - gaps["start"]).sort_values("d").groupby("_sid")[
        ["start", "end"]].last()
    state["_gap_start"] = longest["start"]
    state["_gap_end"] = longest["end"]
    state["_first_seen"] = first_seen
    state["_first_move"] = first_move
    return state


def _latest_estimates(estimates: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    if estimates.empty:
        return pd.DataFrame({"shipment_id": pd.Series(dtype="string"), "est_delivery_date": pd.Series(dtype="object"),
                             "est_observed_at": pd.Series(dtype="datetime64[ns, UTC]")})
    e = estimates.copy()
    e["observed_at"] = pd.to_datetime(e["observed_at"], utc=True)
    e = e[e["observed_at"] <= as_of].sort_values(["observed_at", "est_delivery_date"])
    # The newest estimate is the carrier's current word; when it first moved past the promise is evidence.
    latest = e.groupby("shipment_id").last().reset_index()
    return latest.rename(columns={"observed_at": "est_observed_at"})[
        ["shipment_id", "est_delivery_date", "est_observed_at"]]


class _Hits(NamedTuple):
    """The rows one rule tripped on (`index`: of the facts frame), as detection columns."""

    kind: str
    index: pd.Index
    still_open: pd.Series
    evidence_at: pd.Series
    evidence: pd.Series


def _evidence(index: pd.Index, rule: str, **facts: pd.Series) -> pd.Series:
    """JSON evidence per row of `index`: the rule and the facts that triggered it (no customer data)."""
    # (column by column as Python values: a frame of the facts, made and turned into records for a
    # few rows, cost more than the JSON)
    columns = [[None if _missing(value) else value
                for value in (fact if fact.index.equals(index) else fact.reindex(index)).tolist()]
               for fact in facts.values()]
    rows = zip(*columns, strict=True) if columns else [()] * len(index)
    return pd.Series([json.dumps({"rule": rule, **dict(zip(facts, row, strict=True))}, default=_json_default,
                                 sort_keys=True) for row in rows], index=index)


def _missing(value: object) -> bool:
    """NA in any of its forms (a NaN of any float type: it is the only value unequal to itself)."""
    return (value is None or value is pd.NA or value is pd.NaT
            or (isinstance(value, (float, np.floating, Decimal)) and value != value))


def _json_default(value: object) -> object:
    if isinstance(value, (date, datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
