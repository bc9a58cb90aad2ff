"""Where orders and tracker payloads come from, chosen in one factory.

Each source yields raw records as the outside world has them (strings, vendor JSON); validation
and parsing happen downstream so that every source gets the same checks.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from lastmile.config import ConfigError
from lastmile.shop.records import (
    COLUMNS_READ,
    ENTITIES,
    KEYS,
    OPTIONAL_ENTITIES,
    REQUIRED_COLUMNS,
    Origin,
    RawOrders,
)

log = logging.getLogger(__name__)

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


def _check_columns(entity: str, columns: Sequence[str], where: str, also: Sequence[str] = ()) -> None:
    """ConfigError naming `where` and the missing column(s), before a single row is read."""

    present = set(columns)
    missing = [c for c in (*REQUIRED_COLUMNS[entity], *also) if c not in present]
    if missing:
        found = ", ".join(_shown(c) for c in columns) or "none"
        raise ConfigError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                          f"(columns found: {found}; see docs/order-sources.md)")


def _shown(text: str) -> str:
    """Text for a message: bytes that were not UTF-8 as \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a byte that is not UTF-8


def read_csv_rows(path: Path, read: Collection[str] | None = None
                  ) -> tuple[list[str], list[dict[str, str]], list[Origin]]:
    """(header, rows, origins) of a CSV export; only whole-file problems raise (ConfigError).

    The file is UTF-8 (a byte-order mark is skipped). A row holding bytes that are not UTF-8, or
    with more or fewer fields than the header, is read and flagged for quarantine; the rest go on.
    Blank lines are skipped; rows are numbered from 1 after the header.
    """
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    if not data.strip():
        raise ConfigError(f"{path}: the file is empty; it needs at least a header row "
                          f"(see docs/order-sources.md)")
    try:
        text, mixed = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, mixed = data.decode("utf-8", "surrogateescape"), True
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[dict[str, str]] = []
    origins: list[Origin] = []
    try:
        header = next((r for r in reader if r), [])
        if not header:
            raise ConfigError(f"{path}: the file has no header row (see docs/order-sources.md)")
        doubled = sorted({c for c in header if header.count(c) > 1})
        if doubled:
            raise ConfigError(f"{path}: column {', '.join(_shown(c) for c in doubled)} appears more than once")
        width = len(header)
        for fields in reader:
            if not fields:
                continue
            flaws: list[tuple[str, str]] = []
            if len(fields) != width:
                flaws.append(("(row)", f"the row has {len(fields)} fields; the header has {width}"))
                fields = (fields + [""] * width)[:width]
            row = dict(zip(header, fields, strict=True))
            if mixed:
                # Only the columns we read can spoil a record: an extra column is ignored, bytes and all.
                flaws.extend((name, "not valid UTF-8") for name, value in row.items()
                             if (read is None or name in read) and _NOT_UTF8.search(value))
            rows.append(row)
            origins.append(Origin(path.name, len(rows), tuple(flaws)))
    except csv.Error as err:
        raise ConfigError(f"{path}: data row {len(rows) + 1} cannot be read as CSV: {err}") from None
    return header, rows, origins


def _read_parquet_rows(path: Path) -> tuple[list[str], list[dict[str, Any]], list[Origin]]:
    import pandas as pd
    import pyarrow.parquet as pq

    try:
        header = list(pq.read_schema(path).names)
        frame = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001  (pyarrow raises several kinds for a file it cannot read)
        raise ConfigError(f"{path}: not a readable Parquet file: {err}") from None
    rows = _as_text(frame.astype(object).to_dict("records"))
    return header, rows, [Origin(path.name, n) for n in range(1, len(rows) + 1)]


def _sql_origins(entity: str, rows: list[dict[str, Any]]) -> list[Origin]:
    """Row 0 (a table has no row numbers), except where one read holds an id more than once or
    rows without one: those get their position in the read, so that each is quarantined apart."""

    table = f"shop table {entity}"
    ids = [str(r.get(KEYS[entity]) or "").strip() for r in rows]
    seen: dict[str, int] = {}
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
    return [Origin(table, n if (not i or seen[i] > 1) else 0) for n, i in enumerate(ids, start=1)]


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
                inspector = inspect(conn)
                present = {t.lower() for t in inspector.get_table_names()} | \
                          {v.lower() for v in inspector.get_view_names()}
                tables: dict[str, list[dict[str, Any]]] = {}
                origins: dict[str, list[Origin]] = {}
                marks: dict[str, datetime] = {}
                for entity in ENTITIES:
                    if entity not in present:
                        if entity in OPTIONAL_ENTITIES:
                            tables[entity], origins[entity] = [], []
                            continue
                        raise ConfigError(f"the shop database has no table or view {entity!r} "
                                          f"(see docs/order-sources.md)")
                # Every table's columns first: a missing one fails the run before any row is read.
                for entity in ENTITIES:
                    if entity in present:
                        _check_columns(entity, [c["name"] for c in inspector.get_columns(entity)],
                                       f"shop table {entity}", also=("updated_at",))
                for entity in ENTITIES:
                    if entity not in present:
                        continue
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
                    origins[entity] = _sql_origins(entity, tables[entity])
                    newest = max((v for v in (_instant(r["updated_at"]) for r in rows) if v), default=None)
                    if newest is not None:
                        marks[entity] = max(newest, since) if since else newest
        finally:
            engine.dispose()
        log.info("shop database: %s", ", ".join(f"{e} {len(tables[e])}" for e in ENTITIES))
        return RawOrders(**tables, watermarks=marks, origins=origins)


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
        files = {entity: self._file(entity) for entity in ENTITIES}
        read = {entity: self._read(entity, path) for entity, path in files.items() if path is not None}
        tables: dict[str, list[dict[str, Any]]] = {entity: [] for entity in ENTITIES}
        origins: dict[str, list[Origin]] = {entity: [] for entity in ENTITIES}
        for entity, (rows, places) in read.items():
            for row, origin in zip(rows, places, strict=True):
                at, origin = _updated_at(row, origin)
                if at is None or at <= as_of:  # rows changed after as_of wait for a later run
                    tables[entity].append(row)
                    origins[entity].append(origin)
        return RawOrders(**tables, origins=origins)

    def _file(self, entity: str) -> Path | None:
        parquet, csv_file = self.folder / f"{entity}.parquet", self.folder / f"{entity}.csv"
        if parquet.exists() and csv_file.exists():
            raise ConfigError(f"{self.folder}: both {entity}.csv and {entity}.parquet are there; keep the one "
                              f"that is current (an old copy would be read as the shop's {entity})")
        if parquet.exists():
            return parquet
        if csv_file.exists():
            return csv_file
        if entity in OPTIONAL_ENTITIES:
            return None
        raise ConfigError(f"{self.folder}: no {entity}.csv or {entity}.parquet (see docs/order-sources.md)")

    @staticmethod
    def _read(entity: str, path: Path) -> tuple[list[dict[str, Any]], list[Origin]]:
        """The rows of one export, after its header was checked."""
        if path.suffix == ".parquet":
            header, rows, origins = _read_parquet_rows(path)
        else:
            header, rows, origins = read_csv_rows(path, COLUMNS_READ[entity])
        _check_columns(entity, header, str(path))
        return rows, origins


def _updated_at(row: dict[str, Any], origin: Origin) -> tuple[datetime | None, Origin]:
    """A file row's `updated_at` (None: absent or without offset); one that is no timestamp is a flaw."""
    try:
        at = _instant(row.get("updated_at"))
    except (TypeError, ValueError):
        at, reason = None, "updated_at is not a timestamp (ISO 8601)"
    else:
        if at is not None or not raw_text(row.get("updated_at")).strip():
            return at, origin
        reason = "updated_at has no UTC offset: when it changed cannot be known (add +00:00 or Z)"
    if origin.flaws:  # already quarantined (e.g. not UTF-8): no second reason needed
        return None, origin
    return None, replace(origin, flaws=(("updated_at", reason),))


