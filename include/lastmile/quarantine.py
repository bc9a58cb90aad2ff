"""Rejected input: every bad record is kept with its file, row, field and reason, never dropped."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

log = logging.getLogger("lastmile")

RECORD_ID_WIDTH = 128  # quarantine.record_id
FILE_WIDTH = 255  # quarantine.file


@dataclass(frozen=True)
class Rejection:
    source: str  # which feed or table: "orders", "customers", "easypost", ...
    record_id: str  # the id a person can search for: order id, tracking code#scan index, ...
    field: str
    reason: str
    payload: str  # the raw record as JSON, for audit and replay
    file: str = ""  # the file (or shop table) it was read from; '' for an API payload
    row: int = 0  # 1-based data row in that file (the header is not counted); 0 when not a file

    @classmethod
    def of(cls, source: str, record_id: str, field: str, reason: str, record: Any,
           file: str = "", row: int = 0) -> Rejection:
        return cls(source, str(record_id), field, reason, json.dumps(record, default=str, sort_keys=True),
                   file, row)

    def at(self, file: str, row: int) -> Rejection:
        """The same rejection, placed in the file and row it came from."""
        return dataclasses.replace(self, file=file, row=row)

    def message(self) -> str:
        """One line for ops logs: names the record, the place and the field, never the customer's data."""
        where = f" ({self.file} row {self.row})" if self.file and self.row else (f" ({self.file})" if self.file else "")
        return f"{self.source} record {self.record_id}{where}: field {self.field!r}: {self.reason}"


def _clip(text: str, width: int) -> str:
    """Ids longer than the column are themselves a reason for quarantine: keep them findable, clipped."""
    return text if len(text) <= width else f"{text[:width - 12]}…(+{len(text) - width + 12})"


def store_rejections(conn: Connection, rejections: list[Rejection], as_of: datetime) -> int:
    """Keep every rejected record in `quarantine` (once per source, place, id and field) and log it."""
    from lastmile import schema
    from lastmile.db import batch_key_for, upsert

    for r in rejections:
        log.warning("quarantined %s", r.message())
    rows = {}
    for r in rejections:
        row = {"source": r.source, "record_id": _clip(r.record_id or "(empty)", RECORD_ID_WIDTH),
               "field": _clip(r.field, 64), "file": _clip(r.file, FILE_WIDTH), "row_no": r.row,
               "reason": r.reason, "payload": r.payload, "first_batch": batch_key_for(as_of),
               "first_seen_at": as_of}
        rows.setdefault(tuple(row[k] for k in ("source", "file", "row_no", "record_id", "field")), row)
    return upsert(conn, schema.quarantine, list(rows.values()))
