"""What every step does around its rule: the run's instant, its counts on record, its quarantine."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from lastmile.core.rejections import Rejection
from lastmile.store import schema
from lastmile.store.db import batch_key_for, upsert
from lastmile.store.quarantine import store_rejections
from lastmile.store.queries import newer_batch

log = logging.getLogger("lastmile")


def utc_instant(as_of: datetime) -> datetime:
    """The run's instant in UTC; a naive one is refused (never guess a zone)."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of!r} must carry a time zone")
    return as_of.astimezone(UTC)


def record_step(conn: Connection, as_of: datetime, step: str, counts: dict[str, Any]) -> dict[str, Any]:
    """Keep a step's counts for its batch (run_steps: the summary, the ops page, the analyst views)."""
    upsert(conn, schema.run_steps, [{"batch_key": batch_key_for(as_of), "step": step, "as_of": as_of,
                                     "counts": json.dumps(counts, sort_keys=True)}], update=["counts"])
    log.info("%s %s: %s", step, batch_key_for(as_of), json.dumps(counts, sort_keys=True))
    return counts


def quarantine(conn: Connection, rejections: list[Rejection], as_of: datetime) -> int:
    return store_rejections(conn, rejections, as_of)


def superseded(conn: Connection, as_of: datetime, step: str, nothing: dict[str, Any]) -> dict[str, Any] | None:
    """When a newer run already recorded case history, this older run leaves current detections,
    cases and the outbox to it: record `nothing` done (and by whom it was superseded) and say so."""
    newer = newer_batch(conn, batch_key_for(as_of))
    if newer is None:
        return None
    log.info("%s %s: the newer run %s owns the current state; this run leaves it alone",
             step, batch_key_for(as_of), newer)
    return record_step(conn, as_of, step, {**nothing, "superseded_by": newer})
