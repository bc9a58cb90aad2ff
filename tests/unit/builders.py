"""Tiny hand-made inputs for tests: frames for rule tests (one call per shipment, one per scan), raw
shop rows, and the context an e-mail is rendered from."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pandas as pd

from lastmile.core.brand import load_brand

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


# --------------------------------------------------------------------------- shop-side raw rows (strings, as a CSV has them)


def raw_customer(**over: str) -> dict[str, Any]:
    return {"customer_id": "C001", "name": "Zoë O'Brien", "email": "zoe.obrien@example.com",
            "tz": "Europe/London", "country": "", "locale": "en_GB", **over}


def raw_order(**over: str) -> dict[str, Any]:
    return {"order_id": "NW-10482", "customer_id": "C001", "placed_at": "2026-11-16T14:03:00+00:00",
            "subscription_id": "", "currency": "gbp", **over}


def raw_line(**over: str) -> dict[str, Any]:
    return {"order_line_id": "NW-10482-1", "order_id": "NW-10482", "sku": "ETH-340-WB",
            "description": "Ethiopia Yirgacheffe, 340 g whole bean", "quantity": "2", **over}


def raw_shipment(**over: str) -> dict[str, Any]:
    return {"shipment_id": "SH-1", "order_line_id": "NW-10482-1", "order_id": "NW-10482", "customer_id": "C001",
            "carrier": "RoyalMail", "service": "Tracked48", "tracking_code": "EZ1000000001",
            "created_at": "2026-11-17T09:00:00Z", "promised_date": "2026-11-20", "origin": "Bristol",
            "destination": "Leeds", "dest_tz": "Europe/London", "sequence": "1", "replaces_shipment_id": "",
            **over}


def write_csv(path: Any, rows: list[dict[str, Any]], encoding: str = "utf-8") -> None:
    """Rows as a CSV export (header: every key, in order of appearance); `encoding` as the shop's system writes it."""
    import csv

    with open(path, "w", newline="", encoding=encoding) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)), restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_shop(folder: Any, **tables: list[dict[str, Any]]) -> None:
    """A files source: one clean row per entity unless given (customers=[...], orders=[...], ...)."""
    from pathlib import Path

    defaults = {"customers": [raw_customer()], "orders": [raw_order()], "order_lines": [raw_line()],
                "shipments": [raw_shipment()]}
    for entity, rows in {**defaults, **tables}.items():
        write_csv(Path(folder) / f"{entity}.csv", rows)


# --------------------------------------------------------------------------- e-mail contexts

BRAND = load_brand()
TRACKING_CODE = "9400111899223197428490"
ITEM = "Ethiopia Yirgacheffe, 340 g whole bean"
EARLIEST, LATEST = date(2026, 11, 24), date(2026, 11, 27)
# Evidence as detection writes it for each rule (see detection._evidence).
EVIDENCE: dict[str, dict[str, Any]] = {
    "late": {"rule": "late", "promised": "2026-11-20"},
    "stalled": {"rule": "stalled", "business_days_silent": 4, "last_scan": "Departed USPS facility MEMPHIS TN"},
    "lost": {"rule": "lost", "business_days_silent": 9, "carrier_says_lost": False},
    "failed_attempt": {"rule": "failed_attempt", "carrier_message": "Notice left (no secure location available)"},
    "address_problem": {"rule": "address_problem", "carrier_message": "Insufficient address"},
    "customs_hold": {"rule": "customs_hold", "carrier_message": "Held by customs"},
    "returned": {"rule": "returned", "carrier_message": "Refused by addressee"},
    "damaged": {"rule": "damaged", "carrier_message": "Damaged in transit"},
    "stuck_before_pickup": {"rule": "stuck_before_pickup", "business_days_waiting": 3},
    "reshipped": {"rule": "reshipped", "shipment_number": 2, "replaces": "SH-1"},
}
NEEDS_A_PERSON = ("lost", "damaged", "returned")  # no window: a person owns what happens next


def email_context(exception_type: str = "late", *, locale: str = "en_US", window: bool = True,
                  **over: Any) -> dict[str, Any]:
    """The context messages._message gives emails.render for a notice (override any key)."""
    ctx = {
        "customer_name": "Zoë O'Brien", "locale": locale, "order_id": "NW-10482", "case_id": "case-7f3a91",
        "items": [{"quantity": 2, "description": ITEM, "sku": "ETH-340-WB"}], "carrier": "USPS",
        "tracking_code": TRACKING_CODE, "tracking_url": BRAND.tracking_url.format(tracking_code=TRACKING_CODE),
        "owner": BRAND.owner_team, "brand": BRAND, "exception_type": exception_type,
        "shipments_in_chain": 2 if exception_type == "reshipped" else 1, "evidence": EVIDENCE[exception_type],
        "promised_date": date(2026, 11, 20), "carrier_estimate": date(2026, 11, 23),
        "window_earliest": EARLIEST if window else None, "window_latest": LATEST if window else None,
        "goodwill": None, "subscription_next": None, "delivered_date": None, "broken_window_latest": None,
        "update": None, "check_in_by": None, "last_scan_status": None, "today": date(2026, 11, 20),
    }
    ctx.update(over)
    return ctx
