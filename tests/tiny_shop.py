"""A tiny shop on disk (files source) and carrier scans written as fetch_tracking writes them.

For tests that drive the real step functions through long sequences of runs: each order line's
life is scripted day by day, and every run calls the same steps as the DAG (fetch excepted: the
scans it would have stored are stored directly, with an ok feed row, so detection trusts them).
"""

from __future__ import annotations

import csv
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lastmile.carriers.tracking import scan_id
from lastmile.config import Settings
from lastmile.steps import pipeline
from lastmile.store import progress, schema
from lastmile.store.db import batch_key_for, engine_for, prepare, upsert

START = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)  # a Monday
COLUMNS = {
    "customers": ["customer_id", "name", "email", "tz", "country", "locale"],
    "orders": ["order_id", "customer_id", "placed_at", "subscription_id", "currency", "status"],
    "order_lines": ["order_line_id", "order_id", "sku", "description", "quantity"],
    "shipments": ["shipment_id", "order_line_id", "order_id", "customer_id", "carrier", "service", "tracking_code",
                  "created_at", "promised_date", "origin", "destination", "dest_tz", "sequence",
                  "replaces_shipment_id"],
}
# What the carrier may say on a given day: (status, reason, message)
EVENTS = {
    "in_transit": ("in_transit", None, "Arrived at facility"),
    "out_for_delivery": ("out_for_delivery", None, "Out for delivery"),
    "failed_attempt": ("exception", "failed_attempt", "Delivery attempted, nobody home"),
    "address_problem": ("exception", "address_problem", "Address incomplete"),
    "damaged": ("exception", "damaged", "Parcel damaged"),
    "delivered": ("delivered", None, "Delivered"),
    "returned": ("returned", "return_to_sender", "Returned to sender"),
}


def day(n: int) -> datetime:
    return START + timedelta(days=n)


@dataclasses.dataclass
class TinyShop:
    folder: Path
    lines: int = 3
    tz: str = "America/New_York"

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, list[dict[str, Any]]] = {k: [] for k in COLUMNS}
        self.scans: list[dict[str, Any]] = []
        for n in range(1, self.lines + 1):
            self.rows["customers"].append({"customer_id": f"C{n}", "name": f"Customer {n}",
                                           "email": f"customer{n}@example.com", "tz": self.tz, "country": "US",
                                           "locale": "en_US"})
            self.rows["orders"].append({"order_id": f"O{n}", "customer_id": f"C{n}",
                                        "placed_at": (START - timedelta(days=3)).isoformat(), "subscription_id": "",
                                        "currency": "USD", "status": "open"})
            self.rows["order_lines"].append({"order_line_id": f"O{n}-1", "order_id": f"O{n}", "sku": "SKU-1",
                                             "description": "A kettle", "quantity": 1})
            self.ship(f"O{n}-1", -3)
        self.write()

    def chain(self, line: str) -> list[dict[str, Any]]:
        return [s for s in self.rows["shipments"] if s["order_line_id"] == line]

    def current(self, line: str) -> str:
        return self.chain(line)[-1]["shipment_id"]

    def ship(self, line: str, on_day: int) -> str:
        """A (re)shipment of `line` created on `on_day`, promised four days later."""
        chain = self.chain(line)
        sid = f"S{line}-{len(chain) + 1}"
        created = day(on_day) - timedelta(hours=4)
        self.rows["shipments"].append({
            "shipment_id": sid, "order_line_id": line, "order_id": line.split("-")[0],
            "customer_id": "C" + line.split("-")[0][1:], "carrier": "UPS", "service": "Ground",
            "tracking_code": f"1Z{sid.replace('-', '')}", "created_at": created.isoformat(),
            "promised_date": (created + timedelta(days=4)).date().isoformat(), "origin": "US-HOUSTON",
            "destination": "US-BROOKLYN", "dest_tz": self.tz, "sequence": len(chain) + 1,
            "replaces_shipment_id": chain[-1]["shipment_id"] if chain else ""})
        self.scan(sid, "pre_transit", created + timedelta(minutes=5))
        return sid

    def scan(self, sid: str, event: str, at: datetime) -> None:
        status, reason, message = EVENTS.get(event, ("pre_transit", None, "Label created"))
        self.scans.append({"shipment_id": sid, "occurred_at": at, "status": status, "reason": reason,
                           "message": message})

    def write(self) -> None:
        for entity, columns in COLUMNS.items():
            with (self.folder / f"{entity}.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.rows[entity])

    def settings(self, db_url: str, out_dir: Path) -> Settings:
        prepare(db_url)  # migrations are an explicit step, here the test's
        return Settings.from_env({"LASTMILE_SOURCE": "files", "LASTMILE_ORDERS_PATH": str(self.folder),
                                  "LASTMILE_DB_URL": db_url, "LASTMILE_OUT_DIR": str(out_dir),
                                  "LASTMILE_SEND_LOCK_WAIT_SECONDS": "30"})


def store_scans(settings: Settings, scans: list[dict[str, Any]], as_of: datetime) -> None:
    """What fetch_tracking stores for the simulated account: the scans seen by `as_of`, a healthy feed."""
    rows = [{"scan_id": scan_id(s["shipment_id"], s["occurred_at"], s["status"], s["reason"] or "", s["message"]),
             "shipment_id": s["shipment_id"], "occurred_at": s["occurred_at"], "utc_offset_minutes": 0,
             "status": s["status"], "reason": s["reason"], "carrier_status": s["status"],
             "carrier_status_detail": s["reason"] or "", "message": s["message"], "city": None, "country": "US",
             "raw": "{}", "first_seen_at": as_of}
            for s in scans if s["occurred_at"] <= as_of]
    with engine_for(settings.db_url).begin() as conn:
        upsert(conn, schema.scans, rows)
        progress.record_scans(conn, rows)
        upsert(conn, schema.feed_health, [{
            "account": "simulated", "batch_key": batch_key_for(as_of), "vendor": "simulated", "as_of": as_of,
            "ok": True, "shipments_asked": 0, "trackers_received": 0, "trackers_updated": 0, "scans_new": len(rows),
            "error": None}], update=["ok"])


def run(settings: Settings, shop: TinyShop, as_of: datetime) -> dict[str, Any]:
    """Every step of one run as of `as_of`, in DAG order, through the production step functions."""
    pipeline.load_orders(settings, as_of)
    store_scans(settings, shop.scans, as_of)
    for step in ("detect_exceptions", "compute_windows", "record_history", "plan_messages", "send_messages"):
        getattr(pipeline, step)(settings, as_of)
    return pipeline.summarise(settings, as_of)
