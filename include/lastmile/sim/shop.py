"""The simulated shop on disk, seen as both the shop system and the carrier API (the default run)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from lastmile.shop.records import Origin, RawOrders
from lastmile.sim import simulator

WATERMARK = "orders_and_shipments"  # the newest placed_at / created_at read so far
OVERLAP = timedelta(hours=1)


class SimulatedShop:
    """The seeded simulator's data set on disk, seen as both the shop system and the carrier API."""

    def __init__(self, folder: Path, seed: int, n_orders: int = simulator.SimConfig.n_orders,
                 watermarks: Mapping[str, datetime] | None = None) -> None:
        simulator.ensure(folder, seed, n_orders)
        self.folder = folder
        self.since = (watermarks or {}).get(WATERMARK)
        self._timelines: dict[str, simulator.Timeline] | None = None
        self._faults: dict[str, list[str]] | None = None

    def load(self, as_of: datetime) -> RawOrders:
        """The orders placed and shipments created by `as_of` -- since the last read only.

        The simulated shop's rows never change once written, so the time they were placed or
        created is their `updated_at`: like the shop database, it is read incrementally (an hour of
        overlap; upserts make the re-read harmless), and a run at an older instant reads nothing new.
        """
        since = self.since - OVERLAP if self.since is not None else None

        def new(stamp: str) -> bool:
            at = datetime.fromisoformat(stamp)
            return at <= as_of and (since is None or at > since)

        def numbered(entity: str) -> list[tuple[dict[str, Any], Origin]]:
            rows = simulator.read_table(self.folder, entity)
            return [(row, Origin(f"{entity}.csv", n)) for n, row in enumerate(rows, start=1)]

        all_orders = numbered("orders")
        placed = {o["order_id"]: o for o, _ in all_orders if datetime.fromisoformat(o["placed_at"]) <= as_of}
        orders = [(o, at) for o, at in all_orders if new(o["placed_at"])]
        shipments = [(s, at) for s, at in numbered("shipments") if s["order_id"] in placed and new(s["created_at"])]
        order_ids = {o["order_id"] for o, _ in orders} | {s["order_id"] for s, _ in shipments}
        customer_ids = {placed[o]["customer_id"] for o in order_ids if o in placed}
        tables = {
            "customers": [(c, at) for c, at in numbered("customers") if c["customer_id"] in customer_ids],
            "subscriptions": [(s, at) for s, at in numbered("subscriptions") if s["customer_id"] in customer_ids],
            "orders": orders,
            "order_lines": [(ln, at) for ln, at in numbered("order_lines") if ln["order_id"] in
                            {o["order_id"] for o, _ in orders}],
            "shipments": shipments,
        }
        newest = max((datetime.fromisoformat(r[key]) for e, key in (("orders", "placed_at"), ("shipments", "created_at"))
                      for r, _ in tables[e]), default=None)
        marks = {WATERMARK: max(newest, self.since) if newest and self.since else (newest or self.since)}
        return RawOrders(**{e: [row for row, _ in pairs] for e, pairs in tables.items()},
                         origins={e: [at for _, at in pairs] for e, pairs in tables.items()},
                         watermarks={k: v for k, v in marks.items() if v is not None})

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
