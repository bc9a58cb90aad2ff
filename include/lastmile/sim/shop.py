"""The simulated shop on disk, seen as both the shop system and the carrier API (the default run)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from lastmile.shop.records import Origin, RawOrders
from lastmile.sim import simulator


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

        def numbered(entity: str) -> list[tuple[dict[str, Any], Origin]]:
            rows = simulator.read_table(self.folder, entity)
            return [(row, Origin(f"{entity}.csv", n)) for n, row in enumerate(rows, start=1)]

        orders = [(o, at) for o, at in numbered("orders") if placed(o)]
        order_ids = {o["order_id"] for o, _ in orders}
        tables = {
            "customers": numbered("customers"),
            "subscriptions": numbered("subscriptions"),
            "orders": orders,
            "order_lines": [(ln, at) for ln, at in numbered("order_lines") if ln["order_id"] in order_ids],
            "shipments": [(s, at) for s, at in numbered("shipments")
                          if s["order_id"] in order_ids and datetime.fromisoformat(s["created_at"]) <= as_of],
        }
        return RawOrders(**{e: [row for row, _ in pairs] for e, pairs in tables.items()},
                         origins={e: [at for _, at in pairs] for e, pairs in tables.items()})

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
