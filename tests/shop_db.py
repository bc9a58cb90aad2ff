"""A shop's own order database for tests, in the shape docs/order-sources.md asks for.

Filled from the seeded simulator, with `updated_at` set to when each row last changed, so that an
incremental read by watermark sees exactly what a live shop database would have shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sqlalchemy import create_engine, text

DDL = {
    "customers": "customer_id text, name text, email text, tz text, country text, locale text",
    "subscriptions": "subscription_id text, customer_id text, cadence text, sku text, started_at timestamptz, "
                     "next_delivery_date date, status text",
    "orders": "order_id text, customer_id text, placed_at timestamptz, subscription_id text, currency text",
    "order_lines": "order_line_id text, order_id text, sku text, description text, quantity integer",
    "shipments": "shipment_id text, order_line_id text, order_id text, customer_id text, carrier text, "
                 "service text, tracking_code text, created_at timestamptz, promised_date date, origin text, "
                 "destination text, dest_tz text, sequence integer, replaces_shipment_id text, "
                 "tracking_account text",
}
# No primary keys on purpose: a shop's export view can repeat an id, and we must quarantine that.


def create_shop(url: str, sim_dir: Path, account_of: Callable[[dict[str, str]], str | None]) -> None:
    """Create the five tables and load the simulated shop; shipments get their tracking account."""
    tables = {name: pd.read_csv(sim_dir / f"{name}.csv", dtype=str, keep_default_na=False) for name in DDL}
    placed = tables["orders"].drop_duplicates("order_id").set_index("order_id")["placed_at"]
    tables["customers"]["updated_at"] = "2026-09-01T00:00:00+00:00"
    tables["subscriptions"]["updated_at"] = tables["subscriptions"]["started_at"]
    tables["orders"]["updated_at"] = tables["orders"]["placed_at"]
    tables["order_lines"]["updated_at"] = tables["order_lines"]["order_id"].map(placed)
    ships = tables["shipments"]
    ships["tracking_account"] = [account_of(r) for r in ships.to_dict("records")]
    ships["updated_at"] = ships["created_at"]
    engine = create_engine(url)
    with engine.begin() as conn:
        for name, columns in DDL.items():
            conn.execute(text(f"CREATE TABLE {name} ({columns}, updated_at timestamptz NOT NULL)"))
            frame = tables[name].replace({"": None})
            for col in ("placed_at", "created_at", "started_at", "updated_at"):
                if col in frame:
                    frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
            for col in ("next_delivery_date", "promised_date"):
                if col in frame:
                    frame[col] = pd.to_datetime(frame[col]).dt.date
            for col in ("quantity", "sequence"):
                if col in frame:
                    frame[col] = pd.to_numeric(frame[col]).astype("Int64")
            frame.to_sql(name, conn, if_exists="append", index=False)
    engine.dispose()


def execute(url: str, sql: str, **params: object) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(sql), params)
    engine.dispose()
