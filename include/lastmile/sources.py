"""Where orders and tracker payloads come from, chosen in one factory.

Each source yields raw records as the outside world has them (strings, vendor JSON); validation
and parsing happen downstream so that every source gets the same checks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from lastmile import simulator
from lastmile.accounts import SIMULATED, TrackingAccount
from lastmile.config import ConfigError, Settings

log = logging.getLogger(__name__)

# The shop-side entities, in the order they are validated. `subscriptions` is optional: a shop
# without standing orders has no such table or file. docs/order-sources.md lists their columns.
ENTITIES = ("customers", "subscriptions", "orders", "order_lines", "shipments")
OPTIONAL_ENTITIES = frozenset({"subscriptions"})


@dataclass
class RawOrders:
    customers: list[dict[str, Any]]
    subscriptions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    order_lines: list[dict[str, Any]]
    shipments: list[dict[str, Any]]
    # entity -> the newest `updated_at` read this time (incremental sources only)
    watermarks: dict[str, datetime] = field(default_factory=dict)


class OrderSource(Protocol):
    def load(self, as_of: datetime) -> RawOrders: ...


def raw_text(value: Any) -> str:
    """A database or Parquet value as the text our validators read: ISO dates, '' for missing.

    A timestamp without a zone stays without one, so validation rejects it rather than guess.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (datetime, date)):
        try:
            return value.isoformat()
        except ValueError:  # pandas NaT
            return ""
    if type(value).__name__ == "NaTType":
        return ""
    return str(value)


def _as_text(rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{str(k): raw_text(v) for k, v in row.items()} for row in rows]


def _instant(value: Any) -> datetime | None:
    text = raw_text(value)
    if not text:
        return None
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else None


class SqlShop:
    """The shop's own database, read incrementally: rows whose `updated_at` moved past the watermark.

    Each entity is a table or view of the same name with an `updated_at` (timestamptz) column.
    The read window starts `overlap` before the stored watermark, because a transaction that
    committed late can carry an `updated_at` older than rows already read; upserts make the
    re-read harmless. Rows updated after `as_of` wait for the run whose interval they belong to,
    so a rerun or backfill of an instant reads the same rows.
    """

    def __init__(self, url: str, watermarks: Mapping[str, datetime], overlap: timedelta = timedelta(hours=1)) -> None:
        self.url = url
        self.watermarks = dict(watermarks)
        self.overlap = overlap

    def load(self, as_of: datetime) -> RawOrders:
        from sqlalchemy import create_engine, inspect, text

        engine = create_engine(self.url, future=True)
        try:
            with engine.connect() as conn:
                present = {t.lower() for t in inspect(conn).get_table_names()} | \
                          {v.lower() for v in inspect(conn).get_view_names()}
                tables: dict[str, list[dict[str, Any]]] = {}
                marks: dict[str, datetime] = {}
                for entity in ENTITIES:
                    if entity not in present:
                        if entity in OPTIONAL_ENTITIES:
                            tables[entity] = []
                            continue
                        raise ConfigError(f"the shop database has no table or view {entity!r} "
                                          f"(see docs/order-sources.md)")
                    since = self.watermarks.get(entity)
                    where = "updated_at <= :as_of"
                    params: dict[str, Any] = {"as_of": as_of}
                    if since is not None:
                        where += " AND updated_at > :since"
                        params["since"] = since - self.overlap
                    # The entity name comes from ENTITIES, never from input.
                    rows = conn.execute(text(f"SELECT * FROM {entity} WHERE {where} ORDER BY updated_at"),
                                        params).mappings().all()
                    tables[entity] = _as_text(rows)
                    newest = max((v for v in (_instant(r["updated_at"]) for r in rows) if v), default=None)
                    if newest is not None:
                        marks[entity] = max(newest, since) if since else newest
        finally:
            engine.dispose()
        log.info("shop database: %s", ", ".join(f"{e} {len(tables[e])}" for e in ENTITIES))
        return RawOrders(**tables, watermarks=marks)


class FileShop:
    """A folder of exports: `<entity>.csv` or `<entity>.parquet` for each entity.

    Every file is read in full each run (upserts make that idempotent); rows with an `updated_at`
    after `as_of` wait for a later run.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, as_of: datetime) -> RawOrders:
        if not self.folder.is_dir():
            raise ConfigError(f"LASTMILE_ORDERS_PATH={self.folder}: no such folder")
        tables = {entity: self._read(entity, as_of) for entity in ENTITIES}
        return RawOrders(**tables)

    def _read(self, entity: str, as_of: datetime) -> list[dict[str, Any]]:
        import pandas as pd

        parquet, csv = self.folder / f"{entity}.parquet", self.folder / f"{entity}.csv"
        if parquet.exists():
            rows = _as_text(pd.read_parquet(parquet).astype(object).to_dict("records"))
        elif csv.exists():
            rows = pd.read_csv(csv, dtype=str, keep_default_na=False).to_dict("records")
        elif entity in OPTIONAL_ENTITIES:
            return []
        else:
            raise ConfigError(f"{self.folder}: no {entity}.csv or {entity}.parquet (see docs/order-sources.md)")
        return [r for r in rows if (_instant(r.get("updated_at")) or as_of) <= as_of]


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


def order_source(settings: Settings, watermarks: Mapping[str, datetime] | None = None) -> OrderSource:
    """The shop system named by LASTMILE_SOURCE."""
    if settings.source == "sql":
        if not settings.orders_db_url:
            raise ConfigError("LASTMILE_SOURCE=sql needs the Airflow connection lastmile_orders "
                              "(or LASTMILE_ORDERS_DB_URL outside Airflow)")
        return SqlShop(settings.orders_db_url, watermarks or {})
    if settings.source == "files":
        assert settings.orders_path is not None  # Settings.from_env insists
        return FileShop(settings.orders_path)
    return SimulatedShop(settings.sim_dir, settings.sim_seed, settings.sim_orders)


def tracking_source(settings: Settings, account: TrackingAccount | None = None) -> TrackingSource:
    """The carrier feed behind one tracking account; the simulator's when none is named."""
    if account is None or account.vendor == SIMULATED:
        return SimulatedShop(settings.sim_dir, settings.sim_seed, settings.sim_orders)
    if account.vendor == "easypost":
        from lastmile.easypost_client import DEFAULT_BASE_URL, EasyPostClient, EasyPostConfig

        return EasyPostClient(EasyPostConfig(api_key=account.api_key, base_url=account.base_url or DEFAULT_BASE_URL,
                                             timeout=account.timeout))
    if account.vendor == "aftership":
        from lastmile.aftership_client import DEFAULT_BASE_URL as AS_BASE
        from lastmile.aftership_client import AfterShipClient, AfterShipConfig

        return AfterShipClient(AfterShipConfig(api_key=account.api_key, base_url=account.base_url or AS_BASE,
                                               timeout=account.timeout))
    raise ConfigError(f"tracking account {account.name!r}: unknown vendor {account.vendor!r}")
