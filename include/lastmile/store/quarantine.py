"""Quarantine: every rejected record is kept with its file, row, field and reason, never dropped."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from lastmile.core.rejections import Rejection

log = logging.getLogger("lastmile")

RECORD_ID_WIDTH = 128  # quarantine.record_id
FILE_WIDTH = 255  # quarantine.file


def _clip(text: str, width: int) -> str:
    """Ids longer than the column are themselves a reason for quarantine: keep them findable, clipped."""
    return text if len(text) <= width else f"{text[:width - 12]}…(+{len(text) - width + 12})"


KEY = ("source", "file", "row_no", "record_id", "field")


def store_rejections(conn: Connection, rejections: list[Rejection], as_of: datetime) -> int:
    """Keep every rejected record in `quarantine` (once per source, place, id and field) and log it:
    a warning the first time, one line for those already quarantined (a feed that keeps returning a
    broken record must not fill every hourly log with the same warnings)."""
    from sqlalchemy import select

    from lastmile.store import schema
    from lastmile.store.db import batch_key_for, upsert
    from lastmile.store.queries import chunks

    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    messages: dict[tuple[Any, ...], str] = {}
    for r in rejections:
        row = {"source": r.source, "record_id": _clip(r.record_id or "(empty)", RECORD_ID_WIDTH),
               "field": _clip(r.field, 64), "file": _clip(r.file, FILE_WIDTH), "row_no": r.row,
               "reason": r.reason, "payload": r.payload, "first_batch": batch_key_for(as_of),
               "first_seen_at": as_of}
        key = tuple(row[k] for k in KEY)
        rows.setdefault(key, row)
        messages.setdefault(key, r.message())
    q = schema.quarantine.c
    sources = sorted({key[0] for key in rows})
    known = {tuple(found) for part in chunks(key[3] for key in rows) for found in conn.execute(
        select(*(q[k] for k in KEY)).where(q.source.in_(sources), q.record_id.in_(part)))}
    for key, message in messages.items():
        if key not in known:
            log.warning("quarantined %s", message)
    if again := sum(1 for key in rows if key in known):
        log.info("%d record(s) rejected again as before: already in quarantine", again)
    return upsert(conn, schema.quarantine, list(rows.values()))
