"""Quarantine: every rejected record is kept with its file, row, field and reason, never dropped."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import Connection

from lastmile.core.rejections import Rejection

log = logging.getLogger("lastmile")

RECORD_ID_WIDTH = 128  # quarantine.record_id
FILE_WIDTH = 255  # quarantine.file


def _clip(text: str, width: int) -> str:
    """Ids longer than the column are themselves a reason for quarantine: keep them findable, clipped."""
    return text if len(text) <= width else f"{text[:width - 12]}…(+{len(text) - width + 12})"


def store_rejections(conn: Connection, rejections: list[Rejection], as_of: datetime) -> int:
    """Keep every rejected record in `quarantine` (once per source, place, id and field) and log it."""
    from lastmile.store import schema
    from lastmile.store.db import batch_key_for, upsert

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
