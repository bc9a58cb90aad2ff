"""Score detections against the simulator's ground truth (precision and recall per exception)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import select

from lastmile.config import Settings
from lastmile.core.detection import EXCEPTION_TYPES
from lastmile.store import schema
from lastmile.store.db import engine_for

# A rule can only fire after its own waiting time, and a parcel is late only once its promised
# date has passed: truth younger than this is not yet knowable, so it is left out of the score.
SETTLE = timedelta(days=14)


@dataclass(frozen=True)
class Score:
    exception_type: str
    truth: int
    detected: int
    true_positives: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.detected if self.detected else float("nan")

    @property
    def recall(self) -> float:
        return self.true_positives / self.truth if self.truth else float("nan")


def settled_truth(truth: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Shipments old enough at `as_of` that every exception they had is observable."""
    t = truth.copy()
    t["promised_date"] = pd.to_datetime(t["promised_date"])
    cutoff = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None) - SETTLE
    evidence = pd.to_datetime(t["evidence_at"].replace("", None), utc=True, format="ISO8601").dt.tz_localize(None)
    return t[(t["promised_date"] <= cutoff) & (evidence.isna() | (evidence <= cutoff))]


def score(truth: pd.DataFrame, detections: pd.DataFrame, as_of: datetime) -> list[Score]:
    """Per exception type over settled shipments: true types (multi-label) vs detected types."""
    settled = settled_truth(truth, as_of)
    universe = set(settled["shipment_id"])
    true_sets = {k: set() for k in EXCEPTION_TYPES}
    for sid, types in zip(settled["shipment_id"], settled["types"], strict=True):
        for kind in filter(None, str(types).split(";")):
            true_sets[kind].add(sid)
    found = detections.groupby("exception_type")["shipment_id"].agg(set).to_dict()
    out = []
    for kind in EXCEPTION_TYPES:
        detected = found.get(kind, set()) & universe
        out.append(Score(kind, len(true_sets[kind]), len(detected), len(true_sets[kind] & detected)))
    return out


def format_scores(scores: list[Score]) -> str:
    lines = [f"{'exception':<22}{'truth':>7}{'detected':>10}{'precision':>11}{'recall':>8}"]
    for s in scores:
        lines.append(f"{s.exception_type:<22}{s.truth:>7}{s.detected:>10}{s.precision:>11.2f}{s.recall:>8.2f}")
    return "\n".join(lines)


def detections_and_truth(settings: Settings, as_of: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulator's ground truth and the current detections (as of the newest run), for scoring."""
    truth = pd.read_csv(settings.sim_dir / "ground_truth.csv", dtype=str, keep_default_na=False)
    with engine_for(settings.db_url).connect() as conn:
        # Every shipment's current detections (a run re-detects only what changed since the last).
        dets = pd.read_sql(select(schema.current_detections), conn)
    return truth, dets
