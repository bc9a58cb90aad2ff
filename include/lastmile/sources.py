"""Where orders and tracker payloads come from, chosen in one factory.

Each source yields raw records as the outside world has them (strings, vendor JSON); validation
and parsing happen downstream so that every source gets the same checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from lastmile import simulator
from lastmile.config import Settings


@dataclass
class RawOrders:
    customers: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    order_lines: list[dict[str, Any]]
    shipments: list[dict[str, Any]]


class OrderSource(Protocol):
    def load(self, as_of: datetime) -> RawOrders: ...


class TrackingSource(Protocol):
    def trackers(self, shipments: list[dict[str, Any]], as_of: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """(shipment_id, EasyPost-shaped Tracker) for each shipment the carrier knows at `as_of`."""
        ...


class SimulatedShop:
    """The seeded simulator's data set on disk, seen as both the shop system and the carrier API."""

    def __init__(self, folder: Path, seed: int, n_orders: int = simulator.SimConfig.n_orders) -> None:
        simulator.ensure(folder, seed, n_orders)
        self.folder = folder
        self._timelines: dict[str, simulator.Timeline] | None = None
        self._faults: dict[str, list[str]] | None = None

    def load(self, as_of: datetime) -> RawOrders:
        def placed(row: dict[str, Any]) -> bool:
            return datetime.fromisoformat(row["placed_at"]) <= as_of

        orders = [o for o in simulator.read_table(self.folder, "orders") if placed(o)]
        order_ids = {o["order_id"] for o in orders}
        shipments = [s for s in simulator.read_table(self.folder, "shipments")
                     if s["order_id"] in order_ids and datetime.fromisoformat(s["created_at"]) <= as_of]
        return RawOrders(
            customers=simulator.read_table(self.folder, "customers"),
            subscriptions=simulator.read_table(self.folder, "subscriptions"),
            orders=orders,
            order_lines=[ln for ln in simulator.read_table(self.folder, "order_lines") if ln["order_id"] in order_ids],
            shipments=shipments,
        )

    def trackers(self, shipments: list[dict[str, Any]], as_of: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        if self._timelines is None:
            self._timelines = simulator.read_timelines(self.folder)
            self._faults = simulator.read_faults(self.folder)
        for shipment in shipments:
            timeline = self._timelines.get(shipment["shipment_id"])
            if timeline is None:
                continue
            payload = simulator.tracker_payload(shipment, timeline, as_of, self._faults)
            if payload is not None:
                yield shipment["shipment_id"], payload


def order_source(settings: Settings) -> OrderSource:
    return SimulatedShop(settings.sim_dir, settings.sim_seed, settings.sim_orders)


def tracking_source(settings: Settings) -> TrackingSource:
    return SimulatedShop(settings.sim_dir, settings.sim_seed, settings.sim_orders)
