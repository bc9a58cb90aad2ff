"""An hour's lookups cost what they look up, however long the history that surrounds it.

Work is counted in SQLite's virtual-machine instructions (a progress handler), not in seconds: the
count is the same on every machine and every run, so "flat" can be asserted exactly. SQLite here has
no planner statistics (nothing runs ANALYZE), so what it picks from a query's shape alone is tested;
that is also what a fresh production SQLite history does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, event, insert

from lastmile.config import Settings
from lastmile.steps.compute_windows import compute_windows
from lastmile.steps.detect_exceptions import _detection_counts
from lastmile.steps.send_messages import sent_to_orders
from lastmile.steps.summarise import summarise
from lastmile.store import schema, tallies
from lastmile.store.db import batch_key_for, engine_for, prepare, writing
from lastmile.store.queries import previous_detection

NOW = datetime(2026, 11, 20, 14, tzinfo=UTC)
STEPS = ("load_orders", "fetch_tracking[a]", "detect_exceptions", "compute_windows", "record_history",
         "plan_messages", "send_messages", "summarise")


def work(engine: Engine, look: Callable[[Connection], Any]) -> tuple[int, Any]:
    """(SQLite VM instructions `look` took, in hundreds; what it returned)."""
    ticks = [0]

    def tick() -> int:
        ticks[0] += 1
        return 0  # go on

    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.set_progress_handler(tick, 100)  # type: ignore[union-attr]
        try:
            found = look(conn)
        finally:
            raw.set_progress_handler(None, 100)  # type: ignore[union-attr]
    return ticks[0], found


def _history(tmp_path: Any, name: str) -> Engine:
    url = f"sqlite:///{tmp_path / name}"
    prepare(url)
    return engine_for(url)


def _settings(engine: Engine, tmp_path: Any) -> Settings:
    return Settings(db_url=engine.url.render_as_string(hide_password=False), source="simulated",
                    email_transport="file", out_dir=tmp_path, sim_dir=tmp_path / "sim", sim_seed=7)


def _run_log(engine: Engine, hours: int) -> None:
    """Every step of `hours` hourly runs before NOW, as the steps log them."""
    rows = [{"batch_key": batch_key_for(at), "step": step, "as_of": at, "counts": json.dumps({"arrived": {"scans": h}})}
            for h in range(1, hours + 1) for at in [NOW - timedelta(hours=h)] for step in STEPS]
    with engine.begin() as conn:
        conn.execute(insert(schema.run_steps), rows)


def test_the_run_log_is_read_by_its_key_a_year_of_runs_costs_what_a_day_does(tmp_path):
    day, year = _history(tmp_path, "day.db"), _history(tmp_path, "year.db")
    _run_log(day, 24)
    _run_log(year, 24 * 365)

    def previous_and_its_counts(conn: Connection) -> tuple[datetime | None, dict[str, Any]]:
        previous = previous_detection(conn, batch_key_for(NOW))
        return previous, _detection_counts(conn, previous)  # type: ignore[arg-type]

    (short, found_day), (long, found_year) = work(day, previous_and_its_counts), work(year, previous_and_its_counts)
    # What detection reads of the previous run: the newest one before this, its own counts.
    assert found_day == found_year == (NOW - timedelta(hours=1), {"arrived": {"scans": 1}})
    assert long <= short + 2, (short, long)  # walking 8,760 runs' 70,080 rows was ~ +14,000


def _outbox(engine: Engine, orders: int, state: str = "sent") -> None:
    """One message about each of `orders` orders of one customer."""
    with engine.begin() as conn:
        conn.execute(insert(schema.customers).prefix_with("OR IGNORE"), [{
            "customer_id": "C1", "name": "A customer", "email": "c1@example.com", "tz": "Europe/Berlin",
            "country": "DE", "locale": "de_DE"}])
        conn.execute(insert(schema.outbox), [{
            "message_key": f"CASE-O{n}-1/notice/late", "case_id": f"CASE-O{n}-1", "order_id": f"O{n}",
            "kind": "notice", "state": state, "customer_id": "C1", "recipient": "c1@example.com",
            "recipient_name": "A customer", "subject": "s", "body_text": "t", "body_html": "<html></html>",
            "planned_at": NOW - timedelta(hours=n), "planned_batch": batch_key_for(NOW - timedelta(hours=n)),
            "sent_at": NOW - timedelta(hours=n) if state == "sent" else None, "attempts": 1}
            for n in range(orders)])


def test_the_daily_cap_reads_this_runs_orders_messages_not_every_message_ever_sent(tmp_path):
    few, many = _history(tmp_path, "few.db"), _history(tmp_path, "many.db")
    _outbox(few, 20)
    _outbox(many, 5000)

    def sent_about_two_orders(conn: Connection) -> list[tuple[str, Any, Any, str]]:
        return sent_to_orders(conn, {"O3", "O7"})

    (small, found_few), (large, found_many) = work(few, sent_about_two_orders), work(many, sent_about_two_orders)
    assert sorted(o for o, *_ in found_few) == sorted(o for o, *_ in found_many) == ["O3", "O7"]
    assert all(tz == "Europe/Berlin" for *_, tz in found_many)
    assert large <= small + 2, (small, large)


def test_a_message_not_yet_sent_does_not_count_against_the_daily_cap(tmp_path):
    engine = _history(tmp_path, "planned.db")
    _outbox(engine, 3, state="planned")
    _, found = work(engine, lambda conn: sent_to_orders(conn, {"O0", "O1", "O2"}))
    assert found == []


def _open_detections(engine: Engine, n: int, batch: str) -> None:
    with engine.begin() as conn:
        conn.execute(insert(schema.current_detections), [{
            "shipment_id": f"S{i}", "exception_type": "late", "order_line_id": f"L{i}", "severity": 2,
            "open": True, "first_evidence_at": NOW - timedelta(days=1), "evidence": "{}", "batch_key": batch}
            for i in range(n)])


def plans(engine: Engine, run: Callable[[], Any]) -> dict[str, str]:
    """Each SELECT `run` issued on `engine`'s database (through any engine: steps that write hold
    SQLite's lock from their first statement through one of their own), with SQLite's plan for it."""
    seen: dict[str, Any] = {}

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if conn.engine.url.database == engine.url.database and statement.lstrip().upper().startswith("SELECT"):
            seen.setdefault(statement, params)

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        return {statement: " / ".join(row[3] for row in raw.execute(  # type: ignore[union-attr]
            f"EXPLAIN QUERY PLAN {statement}", params).fetchall()) for statement, params in seen.items()}


def test_windows_read_their_own_batchs_open_detections_through_the_batch(tmp_path):
    engine = _history(tmp_path, "windows.db")
    _open_detections(engine, 500, batch_key_for(NOW - timedelta(hours=1)))
    counts: dict[str, Any] = {}
    seen = plans(engine, lambda: counts.update(compute_windows(_settings(engine, tmp_path), NOW)))
    assert counts["open_detections"] == 0  # the 500 open ones are an earlier batch's
    [plan] = [p for statement, p in seen.items() if "FROM current_detections" in statement]
    # (without its index: "SEARCH current_detections USING INDEX ix_current_detections_open_type (open=?)",
    # every open detection of every batch)
    assert "ix_current_detections_batch_open (batch_key=? AND open=?)" in plan, plan


def test_the_summary_counts_this_runs_rejects_through_their_batch(tmp_path):
    engine = _history(tmp_path, "summary.db")
    with engine.begin() as conn:
        conn.execute(insert(schema.quarantine), [{
            "source": "orders_csv", "record_id": f"R{i}", "field": "email", "file": "orders.csv", "row_no": i,
            "reason": "not an address", "payload": "{}", "first_batch": batch_key_for(NOW - timedelta(hours=i)),
            "first_seen_at": NOW - timedelta(hours=i)} for i in range(1, 200)])
    summary: dict[str, Any] = {}
    seen = plans(engine, lambda: summary.update(summarise(_settings(engine, tmp_path), NOW)))
    [plan] = [p for statement, p in seen.items() if "quarantine.first_batch" in statement]
    assert "ix_quarantine_first_batch_source (first_batch=?)" in plan, plan


def test_a_poll_lists_the_parcels_in_flight_from_one_index_alone(tmp_path):
    from lastmile.steps.fetch_tracking import _in_flight
    from lastmile.store import progress

    engine = _history(tmp_path, "poll.db")
    settings = _settings(engine, tmp_path)
    with engine.begin() as conn:
        conn.execute(insert(schema.shipments), [{
            "shipment_id": f"S{i}", "order_line_id": f"L{i}", "order_id": f"O{i}", "customer_id": "C1",
            "carrier": "USPS", "service": "Priority", "tracking_code": f"9400{i:018d}",
            "created_at": NOW - timedelta(days=2), "promised_date": (NOW + timedelta(days=2)).date(),
            "origin": "US-HOUSTON", "destination": "US-BROOKLYN", "dest_tz": "America/New_York", "sequence": 1}
            for i in range(50)])
        progress.track(conn, [f"S{i}" for i in range(50)])
    listed: list[dict[str, Any]] = []

    def poll() -> None:
        with engine.connect() as conn:
            listed.extend(_in_flight(conn, settings, settings.tracking_accounts[0], NOW))

    seen = plans(engine, poll)
    assert len(listed) == 50
    [plan] = [p for statement, p in seen.items() if "FROM tracking_state" in statement]
    assert plan.count("COVERING INDEX ix_tracking_state_poll") == 2, plan  # in flight, and finished after NOW


def test_the_whole_historys_counts_are_read_from_their_tallies_not_from_the_rows(tmp_path):
    """What ops read every hour (messages by state and kind, cases by state, rejects by source,
    detections by type) was a walk over every row ever written; now it is a few rows."""
    from lastmile.store.queries import detections_by_type

    from tally_check import case, message, reject

    engine = _history(tmp_path, "counts.db")
    with engine.begin() as conn:
        conn.execute(insert(schema.outbox), [message(n, "sent") for n in range(300)])
        conn.execute(insert(schema.cases), [case(n, "resolved") for n in range(300)])
        conn.execute(insert(schema.quarantine), [reject(n) for n in range(300)])
    _open_detections(engine, 300, batch_key_for(NOW - timedelta(hours=1)))
    summary: dict[str, Any] = {}
    seen = plans(engine, lambda: summary.update(summarise(_settings(engine, tmp_path), NOW)))
    assert (summary["outbox_by_state"], summary["cases_by_state"]) == ({"sent": 300}, {"resolved": 300})
    walks = {s: p for s, p in seen.items()
             if any(f"SCAN {t}" in p for t in ("outbox", "cases", "quarantine", "current_detections"))}
    assert walks == {}

    few = _history(tmp_path, "few_detections.db")
    _open_detections(few, 10, "b")
    for history in (few, engine):  # as every detection does before it reads them
        with writing(history) as conn:
            tallies.fold(conn)
    (small, found_few), (large, found_many) = work(few, detections_by_type), work(engine, detections_by_type)
    assert found_few == ({"late": 10}, {"late": 10}) and found_many == ({"late": 300}, {"late": 300})
    assert large <= small + 2, (small, large)
