"""A shop's history export (docs/backtest.md), seen as of any instant: what had happened by then.

The export is the files-source tables (customers, orders, order_lines, shipments, and optionally
subscriptions) plus `scans.csv` and, optionally, `estimates.csv`. Replaying it through the
production steps needs each run to see only what existed at its instant: an order from its
`placed_at`, its customer and lines with it, a shipment from its `created_at`, a scan from its
`occurred_at`, an estimate from its `observed_at`. Rows whose time cannot be read are handed on
at once, so that validation quarantines them with their reason.

A record's final state is what the export holds (an order cancelled later is cancelled from the
start): exports carry no change history.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lastmile.config import ConfigError
from lastmile.core.timestamps import parse_timestamp
from lastmile.shop.records import ENTITIES, Origin, RawOrders
from lastmile.shop.sources import FileShop, read_csv_rows

SCAN_COLUMNS = ("shipment_id", "occurred_at", "status", "message")
ESTIMATE_COLUMNS = ("shipment_id", "est_delivery_date", "observed_at")


def instant(text: str) -> datetime | None:
    """An export's timestamp (with its offset), or None when it cannot be read."""
    try:
        return parse_timestamp(text)[0]
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class _Table:
    rows: list[dict[str, Any]]
    origins: list[Origin]


@functools.lru_cache(maxsize=32)
def _read(path: Path, _stamp: tuple[int, int], entity: str) -> _Table:
    """One export file, parsed once per version of it (a replay reads it at every step)."""
    rows, origins = FileShop._read(entity, path)  # noqa: SLF001 -- the same checks as the files source
    return _Table(rows, origins)


def tables(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """The export's shop tables as read (every row), for what a replay needs to know of its span."""
    files = FileShop(folder)
    return {e: _table(p, e).rows for e in ENTITIES if (p := files._file(e)) is not None}  # noqa: SLF001


def _table(path: Path, entity: str) -> _Table:
    stat = path.stat()
    return _read(path, (stat.st_mtime_ns, stat.st_size), entity)


class ExportShop:
    """The order side of a history export: the records that existed at each run's instant."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such folder (a history export: see docs/backtest.md)")
        self.files = FileShop(folder)

    def load(self, as_of: datetime) -> RawOrders:
        tables = {e: _table(p, e) for e in ENTITIES if (p := self.files._file(e)) is not None}  # noqa: SLF001

        def seen(row: dict[str, Any], column: str) -> bool:
            at = instant(str(row.get(column) or ""))
            return at is None or at <= as_of

        orders = [i for i, r in enumerate(tables["orders"].rows) if seen(r, "placed_at")]
        placed = {str(tables["orders"].rows[i].get("order_id") or "").strip() for i in orders}
        customers = {str(tables["orders"].rows[i].get("customer_id") or "").strip() for i in orders}
        keep: dict[str, list[int]] = {
            "customers": [i for i, r in enumerate(tables["customers"].rows)
                          if str(r.get("customer_id") or "").strip() in customers],
            "orders": orders,
            "order_lines": [i for i, r in enumerate(tables["order_lines"].rows)
                            if str(r.get("order_id") or "").strip() in placed],
            "shipments": [i for i, r in enumerate(tables["shipments"].rows) if seen(r, "created_at")],
        }
        if "subscriptions" in tables:
            keep["subscriptions"] = [i for i, r in enumerate(tables["subscriptions"].rows)
                                     if str(r.get("customer_id") or "").strip() in customers]
        return RawOrders(**{e: [tables[e].rows[i] for i in keep.get(e, [])] for e in ENTITIES},
                         origins={e: [tables[e].origins[i] for i in keep.get(e, [])] for e in ENTITIES})


class ExportCarrier:
    """The carrier side of a history export: each shipment's scans (and estimates) up to an instant,
    as one tracker per shipment in the export's own shape (carriers.tracking.parse_export)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def trackers(self, shipments: list[dict[str, Any]], as_of: datetime) -> Any:
        scans, estimates = events(self.folder)
        for shipment in shipments:
            sid = shipment["shipment_id"]
            happened = [row for at, row in scans.get(sid, ()) if at is None or at <= as_of]
            if not happened:
                continue  # the carrier does not know the parcel yet
            known = [row for at, row in estimates.get(sid, ())
                     if at is not None and at <= as_of and not row["_flaw"]]
            yield sid, {"tracking_code": shipment.get("tracking_code") or sid,
                        "status": happened[-1].get("status") or "unknown", "scans": happened,
                        "est_delivery_date": known[-1]["est_delivery_date"] if known else None}


def check(folder: Path) -> None:
    """Fail at once, naming the file, on what no run could read: a missing table or column."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (a history export: see docs/backtest.md)")
    ExportShop(folder).load(datetime(9999, 1, 1, tzinfo=UTC))
    events(folder)


def events(folder: Path) -> tuple[dict[str, list[tuple[datetime | None, dict[str, Any]]]],
                                  dict[str, list[tuple[datetime | None, dict[str, Any]]]]]:
    """(scans, estimates) per shipment id, each with its instant (None: unreadable), oldest first."""
    scans_file, estimates_file = folder / "scans.csv", folder / "estimates.csv"
    if not scans_file.exists():
        raise ConfigError(f"{folder}: no scans.csv (a history export: see docs/backtest.md)")
    stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in (scans_file, estimates_file))
    return _grouped(folder, stamp)


@functools.lru_cache(maxsize=4)
def _grouped(folder: Path, _stamp: tuple[int, ...]) -> tuple[dict[str, list[tuple[datetime | None, dict[str, Any]]]],
                                                             dict[str, list[tuple[datetime | None, dict[str, Any]]]]]:
    out = []
    for name, columns, time_column in (("scans.csv", SCAN_COLUMNS, "occurred_at"),
                                        ("estimates.csv", ESTIMATE_COLUMNS, "observed_at")):
        grouped: dict[str, list[tuple[datetime | None, dict[str, Any]]]] = defaultdict(list)
        path = folder / name
        if path.exists():
            header, rows, origins = read_csv_rows(path)
            missing = [c for c in columns if c not in header]
            if missing:
                raise ConfigError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                                  f"(see docs/backtest.md)")
            for row, origin in zip(rows, origins, strict=True):
                # Where it was read, and what was wrong with it while reading (bytes that are not
                # UTF-8, a wrong number of fields): the parser quarantines such a row with its place.
                row = {**row, "_origin": (origin.file, origin.row),
                       "_flaw": origin.flaws[0] if origin.flaws else None}
                grouped[row["shipment_id"]].append((instant(row[time_column]), row))
            for events in grouped.values():
                events.sort(key=lambda e: (e[0] is not None, e[0].timestamp() if e[0] else 0.0))
        out.append(dict(grouped))
    return out[0], out[1]
