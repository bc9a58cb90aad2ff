"""A simulated shop's whole carrier history as the pipeline's frames, parsed once by the EasyPost
parser the pipeline uses: for comparing generators and detection engines on the simulator's data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from lastmile.carriers import tracking
from lastmile.sim import simulator

FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass
class Replay:
    shipments: pd.DataFrame
    scans: pd.DataFrame
    estimates: pd.DataFrame
    truth: pd.DataFrame


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
