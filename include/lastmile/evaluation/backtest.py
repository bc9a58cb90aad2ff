"""Backtest: replay a simulated history the rules were not tuned on and score what they did.

At every step (as the hourly DAG would, at a coarser cadence) the production steps run -- load,
fetch, detect, windows, history, plan, send, summary, the very functions the DAG calls -- against a
temporary history database, on what was visible then; the first window given to each case is kept
and later checked against the true delivery.
Scored against the simulator's ground truth: windows kept and their width (vs. the carrier's own
estimate), precision/recall per exception, false "lost" calls, and time from first evidence to
detection.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from lastmile.config import Settings
from lastmile.core.detection import EXCEPTION_TYPES
from lastmile.core.windows import STILL_COMING
from lastmile.sim import simulator
from lastmile.steps import pipeline
from lastmile.store import schema
from lastmile.store.db import engine_for, prepare


@dataclass
class BacktestResult:
    seed: int
    steps: int
    windows: pd.DataFrame  # one row per case's first window, with the truth
    first_seen: pd.DataFrame  # first detection time per (shipment, type)
    truth: pd.DataFrame
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    emails: int = 0  # e-mails the customers would have received


def run(seed: int = 11, n_orders: int = 3000, step_hours: int = 6, workdir: Path | None = None) -> BacktestResult:
    """Replay `seed` from one week after the shop opens to its last day, every `step_hours`, through
    the production steps (the same functions the DAG runs) against a temporary history database."""
    config = simulator.SimConfig(seed=seed, n_orders=n_orders)
    with tempfile.TemporaryDirectory(prefix="lastmile-backtest-") as tmp:
        folder = workdir or Path(tmp)
        sim_dir = folder / "sim"
        simulator.ensure(sim_dir, seed, n_orders)
        settings = Settings(db_url=f"sqlite:///{folder / 'history.db'}", source="simulated", email_transport="file",
                            out_dir=folder / "out", sim_dir=sim_dir, sim_seed=seed, sim_orders=n_orders)
        prepare(settings.db_url)
        start = config.start + timedelta(days=7)
        end = config.start + timedelta(days=config.days)
        steps, t = 0, start
        while t <= end:
            pipeline.run_all(settings, t)
            steps += 1
            t += timedelta(hours=step_hours)
        first_seen, windows, emails = _replayed(settings)
        truth = pd.read_csv(sim_dir / "ground_truth.csv", dtype=str, keep_default_na=False)
    result = BacktestResult(seed, steps, windows, first_seen, truth, emails=emails)
    result.scores = score(result, end)
    return result


def _replayed(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """What the replay's history says customers heard: the first call of each exception, the first
    window each parcel was given (its gravest exception then), and the e-mails sent."""
    d, sh, es = schema.detections.c, schema.shipments.c, schema.estimates.c
    with engine_for(settings.db_url).connect() as conn:
        calls = pd.read_sql(select(d.shipment_id, d.exception_type, d.batch_key, d.severity, d.open,
                                   d.window_earliest, d.window_latest, d.window_basis), conn)
        ships = pd.read_sql(select(sh.shipment_id, sh.dest_tz), conn)
        estimates = pd.read_sql(select(es.shipment_id, es.est_delivery_date, es.observed_at), conn)
        emails = conn.execute(select(func.count()).select_from(schema.outbox).where(
            schema.outbox.c.state == "sent")).scalar_one()
    calls["detected_at"] = pd.to_datetime(calls["batch_key"], utc=True)
    first_seen = (calls.sort_values("detected_at").drop_duplicates(["shipment_id", "exception_type"])
                  [["shipment_id", "exception_type", "detected_at"]].reset_index(drop=True))
    given = calls[calls["window_earliest"].notna() & calls["open"].astype(bool)
                  & calls["exception_type"].isin(STILL_COMING)]
    given = (given.sort_values(["detected_at", "severity"], ascending=[True, False])
             .drop_duplicates("shipment_id").merge(ships, on="shipment_id"))
    estimates["observed_at"] = pd.to_datetime(estimates["observed_at"], utc=True)
    carrier = []
    for row in given.itertuples():
        seen = estimates[(estimates["shipment_id"] == row.shipment_id) & (estimates["observed_at"] <= row.detected_at)]
        carrier.append(seen.sort_values("observed_at")["est_delivery_date"].iloc[-1] if not seen.empty else None)
    windows = pd.DataFrame({
        "shipment_id": given["shipment_id"], "exception_type": given["exception_type"],
        "given_at": given["detected_at"], "earliest": pd.to_datetime(given["window_earliest"]).dt.date,
        "latest": pd.to_datetime(given["window_latest"]).dt.date, "basis": given["window_basis"],
        "carrier_estimate": [pd.Timestamp(c).date() if c is not None else None for c in carrier],
        "dest_tz": given["dest_tz"]}).reset_index(drop=True)
    return first_seen, windows, int(emails)


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
    lines = [f"backtest seed {result.seed}: {result.steps} steps through the production steps, "
             f"{len(result.truth)} shipments, {result.emails} e-mails sent"]
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
