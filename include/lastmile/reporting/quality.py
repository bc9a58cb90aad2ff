"""Data-quality checks on the exception history: each is a SQL count of rows that should not exist.

Run daily by the `exception_report` DAG, each as a common-sql check operator against the history
Connection (one task per check, with lineage); a failing check fails its task, which alerts ops.
The SQL is plain and portable (SQLite and Postgres) so an analyst can paste it to see the offending
rows (replace `count(*)` with `*`). `run_checks` runs the same SQL outside Airflow.

This module stays light (no SQLAlchemy at import): the DAG file reads CHECKS while it is parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine


@dataclass(frozen=True)
class Check:
    name: str
    why: str  # what a failure means, for the person reading the alert
    sql: str  # counts offending rows; may use :day_before (the day before the run's instant)


@dataclass(frozen=True)
class CheckResult:
    check: Check
    offending: int

    @property
    def ok(self) -> bool:
        return self.offending == 0

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.check.name}: {self.offending} offending rows — {self.check.why}"


CHECKS = (
    Check("case_without_evidence", "a case must keep the scans and dates that triggered it",
          "SELECT count(*) FROM cases WHERE evidence IS NULL OR evidence IN ('', '{}')"),
    Check("message_for_a_case_never_opened", "every e-mail must belong to a case that was opened",
          "SELECT count(*) FROM outbox o WHERE o.state = 'sent' AND NOT EXISTS "
          "(SELECT 1 FROM case_events e WHERE e.case_id = o.case_id AND e.event = 'opened')"),
    Check("case_without_opened_event", "every case's life starts with an 'opened' event",
          "SELECT count(*) FROM cases c WHERE NOT EXISTS "
          "(SELECT 1 FROM case_events e WHERE e.case_id = c.case_id AND e.event = 'opened')"),
    Check("feed_silent_for_a_day", "a carrier account had no successful fetch in the 24 hours before the report",
          "SELECT count(*) FROM (SELECT account FROM feed_health GROUP BY account "
          "HAVING max(CASE WHEN ok THEN as_of END) IS NULL "
          "OR max(CASE WHEN ok THEN as_of END) < :day_before) silent"),
    Check("ambiguous_message_older_than_a_day", "an e-mail that may or may not have reached the customer "
          "waits for a person (`python -m lastmile outbox`)",
          "SELECT count(*) FROM outbox WHERE state = 'ambiguous' AND planned_at < :day_before"),
    Check("window_in_the_past_when_planned", "a promised window must never start before the e-mail that "
          "carries it was planned",
          "SELECT count(*) FROM outbox WHERE window_earliest IS NOT NULL "
          "AND window_earliest < date(planned_at)"),
)


def run_checks(engine: Engine, as_of: datetime) -> list[CheckResult]:
    """Every check as of `as_of` (the report's data-interval end)."""
    from sqlalchemy import bindparam, text

    from lastmile.store.schema import TS

    params: dict[str, Any] = {"as_of": as_of, "day_before": as_of - timedelta(days=1)}
    results = []
    with engine.connect() as conn:
        for check in CHECKS:
            used = {k: v for k, v in params.items() if f":{k}" in check.sql}
            # Typed binds: each database compares instants in the form it stores them.
            stmt = text(check.sql).bindparams(*(bindparam(k, type_=TS) for k in used))
            results.append(CheckResult(check, int(conn.execute(stmt, used).scalar_one())))
    return results
