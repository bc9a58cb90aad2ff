"""Data-quality checks: each flags exactly the rows that break it, on SQLite and on Postgres."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from lastmile.reporting.quality import run_checks
from lastmile.store import schema
from lastmile.store.db import prepare, upsert

AS_OF = datetime(2026, 11, 23, 6, tzinfo=UTC)


def case(case_id: str, evidence: str = '{"late": {"rule": "late"}}') -> dict:
    return {"case_id": case_id, "order_line_id": f"L-{case_id}", "order_id": "O1", "customer_id": "C1",
            "shipment_id": f"S-{case_id}", "exception_type": "late", "severity": 1, "state": "told",
            "shipments_in_chain": 1, "opened_at": AS_OF - timedelta(days=2),
            "first_evidence_at": AS_OF - timedelta(days=2), "evidence": evidence, "owner": "Care team",
            "last_batch": "b"}


def message(key: str, case_id: str, state: str = "sent", planned_days_ago: float = 1,
            window: date | None = None) -> dict:
    planned = AS_OF - timedelta(days=planned_days_ago)
    return {"message_key": key, "case_id": case_id, "order_id": "O1", "kind": "notice", "state": state,
            "customer_id": "C1", "subject": "s", "body_text": "t", "body_html": "h", "planned_at": planned,
            "planned_batch": "b", "attempts": 1, "window_earliest": window, "window_latest": window}


def feed(account: str, hours_ago: float, ok: bool) -> dict:
    at = AS_OF - timedelta(hours=hours_ago)
    return {"account": account, "batch_key": at.isoformat(), "vendor": "easypost", "as_of": at, "ok": ok,
            "shipments_asked": 1, "trackers_received": 1, "trackers_updated": 1, "scans_new": 1}


def fill(url: str) -> None:
    with prepare(url).begin() as conn:
        upsert(conn, schema.cases, [case("GOOD"), case("NO-EVIDENCE", evidence="{}"), case("NEVER-OPENED")])
        upsert(conn, schema.case_events, [
            {"case_id": c, "batch_key": "b", "at": AS_OF, "event": "opened", "detail": "late"}
            for c in ("GOOD", "NO-EVIDENCE")])
        upsert(conn, schema.outbox, [
            message("GOOD/notice/late", "GOOD", window=date(2026, 11, 25)),
            message("NEVER-OPENED/notice/late", "NEVER-OPENED"),
            message("GOOD/update/x", "GOOD", state="ambiguous", planned_days_ago=3),
            message("GOOD/update/y", "GOOD", state="ambiguous", planned_days_ago=0.2),
            message("GOOD/notice/past", "GOOD", window=date(2026, 11, 20))])
        upsert(conn, schema.feed_health, [feed("easypost_default", 2, True), feed("easypost_eu", 30, True),
                                          feed("easypost_eu", 1, False)])


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_each_check_flags_exactly_the_rows_that_break_it(db, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'h.db'}" if db == "sqlite" else request.getfixturevalue("postgres_url")
    fill(url)
    results = {r.check.name: r.offending for r in run_checks(prepare(url), AS_OF)}
    assert results == {
        "case_without_evidence": 1,
        "message_for_a_case_never_opened": 1,
        "case_without_opened_event": 1,
        "feed_silent_for_a_day": 1,  # easypost_eu: last success 30 h ago, failing since
        "ambiguous_message_older_than_a_day": 1,
        "window_in_the_past_when_planned": 1,
    }
