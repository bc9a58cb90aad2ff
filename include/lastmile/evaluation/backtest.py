"""Backtest: replay a simulated history the rules were not tuned on and score what they did.

At every step (as the hourly DAG would, at a coarser cadence) detection runs on what was visible
then; the first window given to each case is kept and later checked against the true delivery.
Scored against the simulator's ground truth: windows kept and their width (vs. the carrier's own
estimate), precision/recall per exception, false "lost" calls, and time from first evidence to
detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from lastmile.carriers import tracking
from lastmile.core import thresholds
from lastmile.core.detection import EXCEPTION_TYPES, detect
from lastmile.core.windows import (
    STILL_COMING,
    estimate_errors,
    estimate_is_fresh,
    revised_window,
    transit_history,
)
from lastmile.sim import simulator

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass
class Replay:
    shipments: pd.DataFrame
    scans: pd.DataFrame
    estimates: pd.DataFrame
    truth: pd.DataFrame


@dataclass
class BacktestResult:
    seed: int
    steps: int
    windows: pd.DataFrame  # one row per case's first window, with the truth
    first_seen: pd.DataFrame  # first detection time per (shipment, type)
    truth: pd.DataFrame
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


def replay_frames(config: simulator.SimConfig) -> Replay:
    """The whole carrier history of a simulated shop as the pipeline's frames (parsed once)."""
    shop = simulator.generate(config)
    payloads = ((s["shipment_id"], simulator.tracker_payload(s, shop.timelines[s["shipment_id"]], FAR_FUTURE))
                for s in shop.shipments)
    parsed = tracking.parse_easypost(((sid, p) for sid, p in payloads if p is not None), FAR_FUTURE)
    ships = pd.DataFrame(shop.shipments)
    ships["created_at"] = pd.to_datetime(ships["created_at"], utc=True, format="ISO8601")
    ships["promised_date"] = pd.to_datetime(ships["promised_date"]).dt.date
    ships["sequence"] = ships["sequence"].astype(int)
    ships["replaces_shipment_id"] = ships["replaces_shipment_id"].replace("", None)
    scans = pd.DataFrame(parsed.scans)
    # The carrier's estimate becomes visible when the carrier published it (the pipeline sees it at
    # the next poll, at most an hour later).
    estimates = pd.DataFrame([{"shipment_id": sid, "est_delivery_date": day, "observed_at": seen}
                              for sid, tl in shop.timelines.items() for seen, day in tl.estimates])
    truth = pd.DataFrame(shop.ground_truth)
    return Replay(ships, scans, estimates, truth)


def run(seed: int = 11, n_orders: int = 3000, step_hours: int = 6) -> BacktestResult:
    """Replay `seed` from one week after the shop opens to its last day, every `step_hours`."""
    config = simulator.SimConfig(seed=seed, n_orders=n_orders)
    data = replay_frames(config)
    start = config.start + timedelta(days=7)
    end = config.start + timedelta(days=config.days)
    first_seen: dict[tuple[str, str], datetime] = {}
    windows: dict[str, dict[str, object]] = {}
    history = errors = pd.DataFrame()
    history_day: date | None = None
    steps = 0
    by_id = data.shipments.set_index("shipment_id")
    moving = data.scans[data.scans["status"] != "pre_transit"].groupby("shipment_id")["occurred_at"].min()
    table = thresholds.load()
    t = start
    while t <= end:
        steps += 1
        found = detect(data.shipments, data.scans, data.estimates, t, table)
        for row in found.itertuples():
            first_seen.setdefault((row.shipment_id, row.exception_type), t)
        if history_day != t.date():  # delivered-transit history changes slowly: refresh daily
            history, history_day = transit_history(data.shipments, data.scans, t), t.date()
            errors = estimate_errors(data.shipments, data.scans, data.estimates, t)
        live = found[found["open"] & found["exception_type"].isin(STILL_COMING)]
        for row in live.sort_values("severity", ascending=False).drop_duplicates("shipment_id").itertuples():
            if row.shipment_id in windows:
                continue  # a case's first window is the promise we made
            ship = by_id.loc[row.shipment_id]
            accepted = moving.get(row.shipment_id)
            est, est_at, revised = _estimate_at(data.estimates, row.shipment_id, t)
            fresh = estimate_is_fresh(est_at, row.first_evidence_at, accepted)
            window = revised_window(ship, row.exception_type, accepted.to_pydatetime() if accepted is not None
                                    else None, est, history, t, errors, fresh, revised)
            if window is not None:
                windows[row.shipment_id] = {"shipment_id": row.shipment_id, "exception_type": row.exception_type,
                                            "given_at": t, "earliest": window.earliest, "latest": window.latest, "basis": window.basis,
                                            "carrier_estimate": est, "dest_tz": ship["dest_tz"]}
        t += timedelta(hours=step_hours)
    result = BacktestResult(seed, steps, pd.DataFrame(list(windows.values())),
                            pd.DataFrame([{"shipment_id": s, "exception_type": k, "detected_at": at}
                                          for (s, k), at in first_seen.items()]), data.truth)
    result.scores = score(result, end)
    return result


def _estimate_at(estimates: pd.DataFrame, shipment_id: str,
                 t: datetime) -> tuple[date | None, datetime | None, bool]:
    """The carrier's current estimate at `t`, when it was given, and whether it is a revision."""
    seen = estimates[(estimates["shipment_id"] == shipment_id) & (estimates["observed_at"] <= t)]
    if seen.empty:
        return None, None, False
    seen = seen.sort_values("observed_at")
    return seen["est_delivery_date"].iloc[-1], seen["observed_at"].iloc[-1], len(seen) > 1


def score(result: BacktestResult, end: datetime) -> dict[str, dict[str, float]]:
    """Windows kept vs. the carrier's estimate, per-type precision/recall, latency, false lost."""
    truth = result.truth.copy()
    truth["delivered_at"] = pd.to_datetime(truth["delivered_at"].replace("", None), utc=True, format="ISO8601")
    truth["evidence_at"] = pd.to_datetime(truth["evidence_at"].replace("", None), utc=True, format="ISO8601")
    out: dict[str, dict[str, float]] = {}

    w = result.windows.merge(truth[["shipment_id", "delivered_at"]], on="shipment_id", how="left")
    w = w[w["delivered_at"].notna() & (w["delivered_at"] <= pd.Timestamp(end))]
    if not w.empty:
        delivered = [d.tz_convert(ZoneInfo(z)).date() for d, z in zip(w["delivered_at"], w["dest_tz"], strict=True)]
        w = w.assign(delivered=delivered)
        inside = [e <= d <= lt for e, d, lt in zip(w["earliest"], w["delivered"], w["latest"], strict=True)]
        width = [(lt - e).days + 1 for e, lt in zip(w["earliest"], w["latest"], strict=True)]
        with_est = w[w["carrier_estimate"].notna()]
        est_on = [d == e for d, e in zip(with_est["delivered"], with_est["carrier_estimate"], strict=True)]
        est_by = [d <= e for d, e in zip(with_est["delivered"], with_est["carrier_estimate"], strict=True)]
        out["windows"] = {"n": len(w), "kept": float(np.mean(inside)), "median_width_days": float(np.median(width)),
                          "carrier_n": len(with_est), "carrier_on_the_date": float(np.mean(est_on or [np.nan])),
                          "carrier_by_the_date": float(np.mean(est_by or [np.nan]))}
        w = w.assign(inside=inside, width=width)
        out["windows_by_type"] = {k: {"n": len(g), "kept": float(g["inside"].mean()),
                                      "median_width_days": float(g["width"].median())}
                                  for k, g in w.groupby("exception_type")}

    # Only shipments whose story was over (and knowable) before the replay ended are scored.
    settled = truth[truth["evidence_at"].isna() | (truth["evidence_at"] <= pd.Timestamp(end) - timedelta(days=14))]
    settled = settled[pd.to_datetime(settled["promised_date"]) <= pd.Timestamp(end).tz_localize(None)
                      - timedelta(days=14)]
    universe = set(settled["shipment_id"])
    seen = result.first_seen[result.first_seen["shipment_id"].isin(universe)]
    for kind in EXCEPTION_TYPES:
        positives = set(settled.loc[settled["types"].str.contains(rf"\b{kind}\b"), "shipment_id"])
        detected = set(seen.loc[seen["exception_type"] == kind, "shipment_id"])
        tp = positives & detected
        hits = seen[(seen["exception_type"] == kind) & seen["shipment_id"].isin(tp)].merge(
            settled[["shipment_id", "evidence_at"]], on="shipment_id")
        lag = (hits["detected_at"] - hits["evidence_at"]).dt.total_seconds() / 3600
        lag = lag[lag.notna() & (lag >= 0)]
        out[kind] = {"truth": len(positives), "detected": len(detected),
                     "precision": len(tp) / len(detected) if detected else float("nan"),
                     "recall": len(tp) / len(positives) if positives else float("nan"),
                     "lag_median_h": float(lag.median()) if len(lag) else float("nan"),
                     "lag_p95_h": float(lag.quantile(0.95)) if len(lag) else float("nan")}
    # A lost parcel goes silent before anyone can know it is lost: calling it stalled on the way
    # is a true early warning, though the simulator labels only its final outcome.
    lost_truth = set(settled.loc[settled["types"].str.contains(r"\blost\b"), "shipment_id"])
    stalled_found = set(seen.loc[seen["exception_type"] == "stalled", "shipment_id"])
    stalled_truth = set(settled.loc[settled["types"].str.contains(r"\bstalled\b"), "shipment_id"])
    if stalled_found:
        out["stalled"]["precision_counting_lost_silence"] = len(stalled_found & (stalled_truth | lost_truth)) / len(
            stalled_found)
    not_lost = universe - lost_truth
    called_lost = set(seen.loc[seen["exception_type"] == "lost", "shipment_id"])
    out["false_lost"] = {"rate": len(called_lost & not_lost) / len(not_lost) if not_lost else float("nan"),
                         "count": len(called_lost & not_lost)}
    return out


def format_result(result: BacktestResult) -> str:
    s = result.scores
    lines = [f"backtest seed {result.seed}: {result.steps} steps, {len(result.truth)} shipments"]
    if "windows" in s:
        w = s["windows"]
        lines += [
            "",
            f"{'revised windows':<34}{'n':>6}{'kept':>8}{'median width (days)':>22}",
            f"{'ours (first window per case)':<34}{w['n']:>6}{w['kept']:>8.1%}{w['median_width_days']:>22.1f}",
            f"{'carrier estimate, on the date':<34}{w['carrier_n']:>6}{w['carrier_on_the_date']:>8.1%}{1:>22.1f}",
            f"{'carrier estimate, by the date':<34}{w['carrier_n']:>6}{w['carrier_by_the_date']:>8.1%}{'-':>22}",
        ]
    for kind, k in s.get("windows_by_type", {}).items():
        lines.append(f"{'  after ' + kind:<34}{k['n']:>6}{k['kept']:>8.1%}{k['median_width_days']:>22.1f}")
    lines += ["", f"{'exception':<22}{'truth':>6}{'found':>7}{'precision':>11}{'recall':>8}"
                  f"{'lag med h':>11}{'lag p95 h':>11}"]
    for kind in EXCEPTION_TYPES:
        k = s[kind]
        lines.append(f"{kind:<22}{k['truth']:>6}{k['detected']:>7}{k['precision']:>11.2f}{k['recall']:>8.2f}"
                     f"{k['lag_median_h']:>11.1f}{k['lag_p95_h']:>11.1f}")
    if "precision_counting_lost_silence" in s["stalled"]:
        lines.append(f"stalled precision counting the silence of parcels later lost as true: "
                     f"{s['stalled']['precision_counting_lost_silence']:.2f}")
    lines.append(f"\nfalse lost: {s['false_lost']['count']} shipments ({s['false_lost']['rate']:.2%} of those not lost)")
    return "\n".join(lines)
