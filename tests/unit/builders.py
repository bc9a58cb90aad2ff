"""Tiny hand-made frames for rule tests: one call per shipment, one per scan."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

SHIPMENT_COLUMNS = ["shipment_id", "order_line_id", "order_id", "customer_id", "carrier", "service",
                    "tracking_code", "created_at", "promised_date", "origin", "destination", "dest_tz",
                    "sequence", "replaces_shipment_id"]


def shipment(sid: str = "S1", *, created: str, promised: str, tz: str = "America/New_York", line: str = "L1",
             sequence: int = 1, replaces: str | None = None, carrier: str = "UPS", service: str = "Ground",
             ) -> dict[str, Any]:
    return {"shipment_id": sid, "order_line_id": line, "order_id": line.split("-")[0], "customer_id": "C1",
            "carrier": carrier, "service": service, "tracking_code": f"TC{sid}",
            "created_at": pd.Timestamp(created), "promised_date": pd.Timestamp(promised).date(),
            "origin": "US-HOUSTON", "destination": "US-BROOKLYN", "dest_tz": tz, "sequence": sequence,
            "replaces_shipment_id": replaces}


def scan(sid: str, at: str, status: str = "in_transit", reason: str | None = None,
         message: str = "Arrived at facility") -> dict[str, Any]:
    return {"shipment_id": sid, "occurred_at": pd.Timestamp(at), "status": status, "reason": reason,
            "message": message}


def frames(shipments: list[dict[str, Any]], scans: list[dict[str, Any]],
           estimates: list[tuple[str, str, str]] = ()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    est = pd.DataFrame([{"shipment_id": s, "est_delivery_date": pd.Timestamp(d).date(),
                         "observed_at": pd.Timestamp(o)} for s, d, o in estimates],
                       columns=["shipment_id", "est_delivery_date", "observed_at"])
    sc = pd.DataFrame(scans, columns=["shipment_id", "occurred_at", "status", "reason", "message"])
    return pd.DataFrame(shipments, columns=SHIPMENT_COLUMNS), sc, est


def utc(text: str) -> datetime:
    return pd.Timestamp(text).to_pydatetime()
