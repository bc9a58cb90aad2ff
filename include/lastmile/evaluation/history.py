"""Replay a shop's own history export through the production steps, and say what customers would have heard.

    python -m lastmile backtest --history DIR --out OUT [--step-hours 24]

Every `step_hours` from the first order to the last scan, the steps the DAG runs (load, fetch,
detect, windows, history, plan, send, summary) run as of that instant against a temporary
history database; the export is seen as it stood then (shop/export.py). Afterwards:

- OUT/calls.csv    shipment_id, exception_type, first_called_at   (the first run that called it)
- OUT/windows.csv  shipment_id, as_of, exception_type, earliest, latest, basis   (every window given)
- OUT/report.txt   what those calls and windows were worth, judged by what happened later in the
                   export: calls on parcels later delivered vs. true calls, detection lag, windows
                   inside / before / after and width beside the hindsight oracle's, e-mails per case.

Runs happen at the hour that is midday where most parcels go, so quiet hours hold no e-mail back.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from lastmile.config import ConfigError, Settings
from lastmile.shop import export
from lastmile.steps import pipeline
from lastmile.store import schema
from lastmile.store.db import engine_for, prepare

# The calls judged by what happened later, and how (docs/backtest.md).
SILENCE_CALLS = ("stalled", "stuck_before_pickup")
ORACLE_COVERAGE = (0.025, 0.975)


@dataclass
class HistoryReplay:
    steps: int
    calls: pd.DataFrame  # shipment_id, exception_type, first_called_at, first_evidence_at
    windows: pd.DataFrame  # shipment_id, as_of, exception_type, earliest, latest, basis
    truth: pd.DataFrame  # shipment_id, delivered_at, promised_date, dest_tz, cancelled
    emails: int
    cases: int
    quarantined: dict[str, int] = field(default_factory=dict)  # records refused, per source
    scores: dict[str, Any] = field(default_factory=dict)


def _span(folder: Path) -> tuple[datetime, datetime, str]:
    """(first order, last scan, the time zone most parcels go to) of an export."""
    shop = export.tables(folder)
    scans, _estimates = export.events(folder)
    placed = [t for t in (export.instant(r.get("placed_at", "")) for r in shop["orders"]) if t]
    seen = [at for events in scans.values() for at, _row in events if at]
    if not placed or not seen:
        raise ConfigError(f"{folder}: no order with a readable placed_at, or no scan with a readable "
                          f"occurred_at: nothing to replay (see docs/backtest.md)")
    zones = Counter(r.get("dest_tz") for r in shop["shipments"] if _zone_ok(r.get("dest_tz")))
    return min(placed), max(seen), zones.most_common(1)[0][0] if zones else "UTC"


def _zone_ok(name: Any) -> bool:
    try:
        ZoneInfo(str(name))
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return bool(name)


def replay(folder: Path, out: Path, step_hours: int = 24, workdir: Path | None = None) -> HistoryReplay:
    """Run the production steps over the export every `step_hours`, write calls.csv and windows.csv."""
    if step_hours < 1:
        raise ConfigError(f"--step-hours {step_hours}: give a whole number of hours, 1 or more")
    folder = folder.resolve()
    export.check(folder)  # a missing table or column fails here, naming the file, before any run
    first, last, zone = _span(folder)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lastmile-history-") as tmp:
        work = workdir or Path(tmp)
        settings = Settings(db_url=f"sqlite:///{work / 'history.db'}", source="export", email_transport="file",
                            out_dir=work / "out", sim_dir=work / "sim", sim_seed=0, orders_path=folder,
                            tracking_accounts=("export",))
        prepare(settings.db_url)
        # Midday where most parcels go, the day after the first order.
        midday = datetime.combine(first.astimezone(ZoneInfo(zone)).date() + timedelta(days=1), time(12),
                                  ZoneInfo(zone)).astimezone(ZoneInfo("UTC"))
        t, steps = midday, 0
        # Each run would log every quarantined record again: the report counts them once instead.
        quiet = logging.getLogger("lastmile")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            while t <= last + timedelta(hours=step_hours):
                pipeline.run_all(settings, t)
                t += timedelta(hours=step_hours)
                steps += 1
        finally:
            quiet.setLevel(level)
        calls, windows, emails, cases = _heard(settings)
        truth, quarantined = _truth(settings)
    result = HistoryReplay(steps, calls, windows, truth, emails, cases, quarantined=quarantined)
    result.scores = score(result)
    _write(out, result)
    return result


def _heard(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    """From the replay's history: each exception's first call (an open detection), every window given."""
    d = schema.detections.c
    with engine_for(settings.db_url).connect() as conn:
        rows = pd.read_sql(select(d.batch_key, d.shipment_id, d.exception_type, d.open, d.first_evidence_at,
                                  d.window_earliest, d.window_latest, d.window_basis), conn)
        emails = conn.execute(select(func.count()).select_from(schema.outbox).where(
            schema.outbox.c.state == "sent")).scalar_one()
        cases = conn.execute(select(func.count()).select_from(schema.cases)).scalar_one()
    rows["as_of"] = pd.to_datetime(rows["batch_key"], utc=True)
    rows["first_evidence_at"] = pd.to_datetime(rows["first_evidence_at"], utc=True)
    called = rows[rows["open"].astype(bool)].sort_values("as_of")
    calls = (called.drop_duplicates(["shipment_id", "exception_type"])
             .rename(columns={"as_of": "first_called_at"})
             [["shipment_id", "exception_type", "first_called_at", "first_evidence_at"]].reset_index(drop=True))
    given = called[called["window_earliest"].notna()]
    windows = pd.DataFrame({
        "shipment_id": given["shipment_id"], "as_of": given["as_of"], "exception_type": given["exception_type"],
        "earliest": pd.to_datetime(given["window_earliest"]).dt.date,
        "latest": pd.to_datetime(given["window_latest"]).dt.date, "basis": given["window_basis"]}).reset_index(drop=True)
    return calls, windows, int(emails), int(cases)


def _truth(settings: Settings) -> tuple[pd.DataFrame, dict[str, int]]:
    """What happened, in hindsight, to every shipment the replay accepted (a quarantined row is not
    judged): its first delivery, its promise, whether its order was cancelled; and what was
    quarantined, per source."""
    sh, sc, od, q = schema.shipments.c, schema.scans.c, schema.orders.c, schema.quarantine.c
    with engine_for(settings.db_url).connect() as conn:
        ships = pd.read_sql(select(sh.shipment_id, sh.promised_date, sh.dest_tz, od.status).join(
            schema.orders, od.order_id == sh.order_id), conn)
        delivered = dict(conn.execute(select(sc.shipment_id, func.min(sc.occurred_at)).where(
            sc.status == "delivered").group_by(sc.shipment_id)).all())
        quarantined = dict(conn.execute(select(q.source, func.count()).group_by(q.source)).all())
    truth = pd.DataFrame({
        "shipment_id": ships["shipment_id"],
        "delivered_at": pd.to_datetime([delivered.get(s) for s in ships["shipment_id"]], utc=True),
        "promised_date": [pd.Timestamp(d).date() for d in ships["promised_date"]],
        "dest_tz": ships["dest_tz"],
        "cancelled": ships["status"].isin(["cancelled", "refunded"]).to_numpy()})
    return truth, {str(k): int(v) for k, v in sorted(quarantined.items())}


def _local_day(instant: Any, tz: str) -> date:
    return pd.Timestamp(instant).tz_convert(ZoneInfo(tz)).date()


def score(result: HistoryReplay) -> dict[str, Any]:
    """Calls judged by later delivery; the first window per parcel judged by its delivery date."""
    truth = result.truth.set_index("shipment_id")
    delivered = truth[truth["delivered_at"].notna()]
    delivered_day = {sid: _local_day(at, tz) for sid, at, tz in
                     zip(delivered.index, delivered["delivered_at"], delivered["dest_tz"], strict=True)}
    on_time = {sid for sid, day in delivered_day.items() if day <= truth.at[sid, "promised_date"]}
    out: dict[str, Any] = {"shipments": len(truth), "delivered": len(delivered), "on_time": len(on_time),
                           "never_delivered": int((truth["delivered_at"].isna() & ~truth["cancelled"]).sum())}
    calls = result.calls.merge(result.truth[["shipment_id", "delivered_at", "cancelled"]], on="shipment_id",
                               how="left")
    per_type: dict[str, dict[str, Any]] = {}
    for kind, group in calls.groupby("exception_type"):
        before = group[group["delivered_at"].isna() | (group["first_called_at"] < group["delivered_at"])]
        later_delivered = before[before["delivered_at"].notna()]
        lag = (group["first_called_at"] - group["first_evidence_at"]).dt.total_seconds() / 3600
        per_type[str(kind)] = {
            "calls": len(group),
            "called_before_delivery": len(before),
            "of_which_later_delivered": len(later_delivered),
            "share_of_delivered_called": len(later_delivered) / len(delivered) if len(delivered) else float("nan"),
            "share_of_on_time_called": (len(set(before["shipment_id"]) & on_time) / len(on_time)
                                        if on_time else float("nan")),
            # never delivered, and not because the order was cancelled: the real losses
            "never_delivered_called": int((before["delivered_at"].isna() & ~before["cancelled"].fillna(False)
                                           .astype(bool)).sum()),
            "lag_median_h": float(lag.median()) if len(lag) else float("nan"),
            "lag_p95_h": float(lag.quantile(0.95)) if len(lag) else float("nan"),
        }
    out["calls"] = per_type
    out["windows"] = _score_windows(result.windows, delivered_day, truth)
    out["quarantined"] = result.quarantined
    out["emails"] = result.emails
    out["cases"] = result.cases
    out["emails_per_case"] = result.emails / result.cases if result.cases else float("nan")
    return out


def _score_windows(windows: pd.DataFrame, delivered_day: dict[str, date], truth: pd.DataFrame) -> dict[str, Any]:
    """The first window each parcel was given, against its delivery; and the hindsight oracle: for
    each exception type, the narrowest window (in days from the day it was given) that would have
    held 95% of those deliveries, known only afterwards."""
    first = windows.sort_values("as_of").drop_duplicates("shipment_id")
    first = first[first["shipment_id"].isin(delivered_day)]
    if first.empty:
        return {"n": 0}
    given_day = [_local_day(at, truth.at[sid, "dest_tz"]) for sid, at in zip(first["shipment_id"], first["as_of"],
                                                                                strict=True)]
    day = [delivered_day[sid] for sid in first["shipment_id"]]
    f = first.assign(given_day=given_day, delivered=day)
    f["before"] = f["delivered"] < f["earliest"]
    f["after"] = f["delivered"] > f["latest"]
    f["width"] = [(lt - e).days + 1 for e, lt in zip(f["earliest"], f["latest"], strict=True)]
    f["waited"] = [(d - g).days for d, g in zip(f["delivered"], f["given_day"], strict=True)]
    oracle = []
    for _kind, group in f.groupby("exception_type"):
        lo, hi = np.quantile(group["waited"], ORACLE_COVERAGE)
        oracle.extend([int(np.ceil(hi)) - int(np.floor(lo)) + 1] * len(group))
    by_type = {str(k): {"n": len(g), "inside": float((~g["before"] & ~g["after"]).mean()),
                        "by_latest": float((~g["after"]).mean()), "median_width_days": float(g["width"].median())}
               for k, g in f.groupby("exception_type")}
    return {"n": len(f), "inside": float((~f["before"] & ~f["after"]).mean()),
            "before_earliest": float(f["before"].mean()), "after_latest": float(f["after"].mean()),
            "by_latest": float((~f["after"]).mean()), "median_width_days": float(f["width"].median()),
            "oracle_median_width_days": float(np.median(oracle)), "by_type": by_type}


def _write(out: Path, result: HistoryReplay) -> None:
    with (out / "calls.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["shipment_id", "exception_type", "first_called_at"])
        for r in result.calls.sort_values(["first_called_at", "shipment_id"]).itertuples():
            writer.writerow([r.shipment_id, r.exception_type, r.first_called_at.isoformat()])
    with (out / "windows.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["shipment_id", "as_of", "exception_type", "earliest", "latest", "basis"])
        for r in result.windows.sort_values(["as_of", "shipment_id"]).itertuples():
            writer.writerow([r.shipment_id, r.as_of.isoformat(), r.exception_type, r.earliest.isoformat(),
                             r.latest.isoformat(), r.basis])
    (out / "report.txt").write_text(format_replay(result) + "\n")


def _pct(value: float) -> str:
    return "   -" if value != value else f"{value * 100:5.1f}%"  # NaN: not applicable


def format_replay(result: HistoryReplay) -> str:
    s = result.scores
    lines = [f"history replay: {result.steps} runs, {s['shipments']} shipments ({s['delivered']} delivered, "
             f"{s['on_time']} by their promised date, {s['never_delivered']} never delivered), "
             f"{s['emails']} e-mails to {s['cases']} cases ({s['emails_per_case']:.2f} per case)", "",
             "quarantined records (see the quarantine table; judged nowhere below): "
             + (", ".join(f"{k} {v}" for k, v in s["quarantined"].items()) or "none"), "",
             "calls (before delivery)   calls  later delivered  % of delivered  % of on-time  never delivered"
             "  lag med h  lag p95 h"]
    for kind, c in sorted(s["calls"].items()):
        lines.append(f"  {kind:22} {c['called_before_delivery']:7d} {c['of_which_later_delivered']:16d} "
                     f"{_pct(c['share_of_delivered_called']):>15} {_pct(c['share_of_on_time_called']):>13} "
                     f"{c['never_delivered_called']:16d} {c['lag_median_h']:10.1f} {c['lag_p95_h']:10.1f}")
    w = s["windows"]
    if w.get("n"):
        lines += ["", f"first window per parcel: n={w['n']}  inside {_pct(w['inside'])}  by the latest date "
                      f"{_pct(w['by_latest'])}  before {_pct(w['before_earliest'])}  after {_pct(w['after_latest'])}",
                  f"  median width {w['median_width_days']:.0f} days; hindsight oracle (95% of the same "
                  f"deliveries, known afterwards) {w['oracle_median_width_days']:.0f} days"]
        for kind, t in sorted(w["by_type"].items()):
            lines.append(f"  after {kind:22} n={t['n']:5d}  inside {_pct(t['inside'])}  by latest "
                         f"{_pct(t['by_latest'])}  median width {t['median_width_days']:.0f}")
    return "\n".join(lines)
