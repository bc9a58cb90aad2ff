"""Rejected input: every bad record is kept with the field and the reason, never silently dropped."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

log = logging.getLogger("lastmile")


@dataclass(frozen=True)
class Rejection:
    source: str  # which feed or table: "orders", "customers", "easypost", ...
    record_id: str  # the id a person can search for: order id, tracking code#scan index, ...
    field: str
    reason: str
    payload: str  # the raw record as JSON, for audit and replay

    @classmethod
    def of(cls, source: str, record_id: str, field: str, reason: str, record: Any) -> Rejection:
        return cls(source, str(record_id), field, reason, json.dumps(record, default=str, sort_keys=True))

    def message(self) -> str:
        """One line for ops logs: names the record and the field, never the customer's data."""
        return f"{self.source} record {self.record_id}: field {self.field!r}: {self.reason}"


def store_rejections(conn: Connection, rejections: list[Rejection], as_of: datetime) -> int:
    """Keep every rejected record in `quarantine` (once per source, id and field) and log it."""
    from lastmile import schema
    from lastmile.db import batch_key_for, upsert

    for r in rejections:
        log.warning("quarantined %s", r.message())
    rows = [{"source": r.source, "record_id": r.record_id, "field": r.field, "reason": r.reason,
             "payload": r.payload, "first_batch": batch_key_for(as_of), "first_seen_at": as_of}
            for r in rejections]
    return upsert(conn, schema.quarantine, rows)
