"""summarise: the batch's counts and the history's state → the run's story for ops."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from lastmile.config import Settings
from lastmile.core.cases import LIVE_STATES
from lastmile.steps.common import utc_instant
from lastmile.store import schema, tallies
from lastmile.store.db import batch_key_for, engine_for, masked_url
from lastmile.store.queries import feed_states, unmapped_codes

if TYPE_CHECKING:
    pass

log = logging.getLogger("lastmile")


def summarise(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """What this run found, who was told and what failed: for the task log and the demo."""
    as_of = utc_instant(as_of)
    batch = batch_key_for(as_of)
    with engine_for(settings.db_url).connect() as conn:
        steps = {r.step: json.loads(r.counts) for r in conn.execute(
            select(schema.run_steps).where(schema.run_steps.c.batch_key == batch))}
        # (the whole history's counts from their tallies: a walk of every message, case and reject
        # ever written would make every hour cost the history)
        outbox = tallies.counts(conn, tallies.OUTBOX_BY_STATE)
        kinds = tallies.counts(conn, tallies.SENT_BY_KIND)
        quarantined = tallies.counts(conn, tallies.QUARANTINED_BY_SOURCE)
        quarantined_now = dict(conn.execute(select(schema.quarantine.c.source, func.count()).where(
            schema.quarantine.c.first_batch == batch).group_by(schema.quarantine.c.source)).all())
        cases = tallies.counts(conn, tallies.CASES_BY_STATE)
        open_by_type = dict(conn.execute(select(schema.cases.c.exception_type, func.count()).where(
            schema.cases.c.state.in_(LIVE_STATES)).group_by(schema.cases.c.exception_type)).all())
        this_run = dict(conn.execute(select(schema.outbox.c.state, func.count()).where(
            and_(schema.outbox.c.planned_batch == batch)).group_by(schema.outbox.c.state)).all())
        feeds = feed_states(conn, settings, as_of)
        unmapped_now = unmapped_codes(conn, as_of - timedelta(microseconds=1), as_of)
        unmapped_week = unmapped_codes(conn, as_of - timedelta(days=7), as_of)
    return {
        "batch": batch,
        "orders": steps.get("load_orders", {}).get("orders", 0),
        "shipments": steps.get("load_orders", {}).get("shipments", 0),
        "scans_new": sum(c.get("scans_new", 0) for step, c in steps.items() if step.startswith("fetch_tracking")),
        "feeds": feeds,
        "unknown_state_shipments": steps.get("detect_exceptions", {}).get("unknown_state_shipments", 0),
        "exceptions_open_by_type": steps.get("detect_exceptions", {}).get("open_by_type", {}),
        "exceptions_all_by_type": steps.get("detect_exceptions", {}).get("all_by_type", {}),
        "cases_by_state": dict(sorted(cases.items())),
        "open_cases_by_type": dict(sorted(open_by_type.items())),
        "emails_sent_this_run": steps.get("send_messages", {}).get("sent", 0),
        "emails_failed_this_run": steps.get("send_messages", {}).get("failed", 0),
        "messages_planned_this_run": dict(sorted(this_run.items())),
        # The language each e-mail planned this run is written in, and those whose customer's locale
        # has no catalog of its own ("de_AT → de", "xx_YY → en"; lastmile.email.locales).
        "languages_planned_this_run": steps.get("plan_messages", {}).get("by_language", {}),
        "language_fallbacks_this_run": steps.get("plan_messages", {}).get("language_fallbacks", {}),
        "outbox_by_state": dict(sorted(outbox.items())),
        "sent_by_kind": dict(sorted(kinds.items())),
        "quarantined_by_source": dict(sorted(quarantined.items())),
        "quarantined_this_run": dict(sorted(quarantined_now.items())),
        "unmapped_codes_this_run": unmapped_now,
        "unmapped_codes_last_7_days": unmapped_week,
        "ran": bool(steps),
        "outbox_index": str(settings.outbox_dir / "index.html"),
        "history_db": masked_url(settings.db_url),
    }
