"""Run one lastmile pipeline step inside an Airflow task."""

from __future__ import annotations

import importlib
import json
import logging
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)


def as_of_from_context(context: dict[str, Any]) -> datetime:
    """The instant a run computes for: its data interval's end, never the wall clock.

    A manual run with no logical date falls back to when it was asked to run (`run_after`).
    """
    for key in ("data_interval_end", "logical_date"):
        value = context.get(key)
        if value is not None:
            return value
    return context["dag_run"].run_after


def run_step(step: str, **context: Any) -> dict[str, Any]:
    """Call lastmile.pipeline.<step>(settings, as_of); the return value (counts only) goes to XCom."""
    pipeline = importlib.import_module("lastmile.pipeline")  # heavy (pandas): import at run time only
    from lastmile.config import Settings

    as_of = as_of_from_context(context)
    settings = Settings.from_env()
    kwargs = {}
    if step == "send_messages" and settings.email_transport == "sendgrid":
        from lastmile_airflow.connections import sendgrid_config

        kwargs["sendgrid"] = sendgrid_config()
    counts = getattr(pipeline, step)(settings, as_of, **kwargs)
    log.info("lastmile %s as of %s: %s", step, as_of.isoformat(), json.dumps(counts, sort_keys=True, default=str))
    return counts
