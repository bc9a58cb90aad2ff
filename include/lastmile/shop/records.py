"""The shop's records as a source hands them over: raw rows, where each was read, the entities.

Shared by the sources (which read them) and the validation (which types them), so neither
imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# The shop-side entities, in the order they are validated. `subscriptions` is optional: a shop
# without standing orders has no such table or file. docs/order-sources.md lists their columns.
ENTITIES = ("customers", "subscriptions", "orders", "order_lines", "shipments")
OPTIONAL_ENTITIES = frozenset({"subscriptions"})


@dataclass(frozen=True)
class Origin:
    """Where a raw row was read: a file and its 1-based data row, or a shop table (row 0)."""

    file: str = ""
    row: int = 0
    # (field, reason) found while reading, e.g. bytes that are not UTF-8: the row is quarantined.
    flaws: tuple[tuple[str, str], ...] = ()


@dataclass
class RawOrders:
    customers: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    order_lines: list[dict[str, Any]]
    shipments: list[dict[str, Any]]
    # entity -> the newest `updated_at` read this time (incremental sources only)
    watermarks: dict[str, datetime] = field(default_factory=dict)
    # entity -> where each of its rows came from, in the same order as the rows. Kept beside the
    # rows (never in them) so that a place never reaches a payload, a typed row or the history.
    origins: dict[str, list[Origin]] = field(default_factory=dict)

    def places(self, entity: str) -> list[Origin]:
        """The origin of each row of `entity`; unplaced (Origin()) when the source did not say."""
        rows = getattr(self, entity)
        places = self.origins.get(entity)
        if places is None:
            return [Origin()] * len(rows)
        if len(places) != len(rows):
            raise ValueError(f"RawOrders.{entity}: {len(rows)} rows but {len(places)} origins")
        return places


class OrderSource(Protocol):
    def load(self, as_of: datetime) -> RawOrders: ...


# Each entity's id column.
KEYS = {"customers": "customer_id", "subscriptions": "subscription_id", "orders": "order_id",
        "order_lines": "order_line_id", "shipments": "shipment_id"}

# The columns each entity's converter below cannot do without (`_required`, `_tz`, `_instant`,
# `_date`, `_int` on them): a source whose file or table lacks one fails before reading a row.
# `email` is a column every customers file must have, although a row's value may be empty.
# The others (docs/order-sources.md) are optional: `country`, `locale`, `status`, `subscription_id`,
# `sequence`, `replaces_shipment_id`, `tracking_account`, `dest_country`, `updated_at` (files).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "name", "email", "tz"),
    "subscriptions": ("subscription_id", "customer_id", "cadence", "sku", "next_delivery_date"),
    "orders": ("order_id", "customer_id", "placed_at", "currency"),
    "order_lines": ("order_line_id", "order_id", "sku", "description", "quantity"),
    "shipments": ("shipment_id", "order_line_id", "order_id", "customer_id", "carrier", "service",
                  "tracking_code", "created_at", "promised_date", "origin", "destination", "dest_tz"),
}

# Every column some step reads: the required ones and the optional ones (docs/order-sources.md).
# Any other column of an export is ignored, whatever it holds.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("country", "locale"),
    "subscriptions": ("status",),
    "orders": ("subscription_id", "status"),
    "order_lines": (),
    "shipments": ("sequence", "replaces_shipment_id", "tracking_account", "dest_country"),
}
COLUMNS_READ: dict[str, frozenset[str]] = {
    entity: frozenset((*REQUIRED_COLUMNS[entity], *OPTIONAL_COLUMNS[entity], "updated_at"))
    for entity in REQUIRED_COLUMNS
}
