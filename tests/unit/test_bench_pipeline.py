"""bench/pipeline's history is shaped like months of operation: the run log holds the hours run
before the ones it times, so a step that walks the log pays for it in the bench too. No timings here."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from lastmile.store import schema
from lastmile.store.db import batch_key_for, engine_for, prepare

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench/ lives beside include/, not in the package

from bench import pipeline as bench  # noqa: E402

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)


def test_the_run_log_repeats_the_up_to_date_run_once_an_hour_before_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    prepare(url)
    key = batch_key_for(AS_OF)
    with engine_for(url).begin() as conn:
        conn.execute(insert(schema.run_steps), [{"batch_key": key, "step": step, "as_of": AS_OF,
                                                 "counts": json.dumps({"step": step})}
                                                for step in ("load_orders", "detect_exceptions")])
        conn.execute(insert(schema.feed_health), [{
            "account": "easypost_bench", "batch_key": key, "vendor": "easypost", "as_of": AS_OF, "ok": True,
            "shipments_asked": 3, "trackers_received": 3, "trackers_updated": 1, "scans_new": 1, "error": None}])
    bench.run_log(url, AS_OF, 48)
    rs, fh = schema.run_steps.c, schema.feed_health.c
    with engine_for(url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.run_steps)).scalar() == 2 * 49
        assert conn.execute(select(func.count()).select_from(schema.feed_health)).scalar() == 49
        oldest = conn.execute(select(rs.batch_key, rs.as_of, rs.counts).order_by(rs.batch_key).limit(1)).one()
        newest_health = conn.execute(select(func.max(fh.batch_key))).scalar()
    assert oldest.batch_key == batch_key_for(AS_OF - timedelta(hours=48))
    assert json.loads(oldest.counts) == {"step": "detect_exceptions"}
    assert newest_health == key  # nothing after the up-to-date run: it stays the newest


def test_the_sizes_take_turns_hour_by_hour_and_a_failing_size_closes_the_others(tmp_path, monkeypatch):
    """A growth ratio compares each hour with the same hour at the other size, run beside it."""
    events: list[tuple[int, str]] = []

    def fake(n, database, folder, feed):
        try:
            events.append((n, "ready"))
            yield
            for k in range(len(bench.RUNS)):
                if n == 5 and k == 2 and feed == "fail":
                    raise RuntimeError("the hour failed")
                events.append((n, f"hour {k}"))
                yield
            return {"n": n}
        finally:
            events.append((n, "closed"))

    monkeypatch.setattr(bench, "bench", fake)
    assert bench.interleaved([1, 5], "sqlite", tmp_path, "changes") == {1: {"n": 1}, 5: {"n": 5}}
    hours = [e for e in events if e[1].startswith("hour")]
    assert [e[1] for e in events[:2]] == ["ready", "ready"]
    assert hours[:4] == [(1, "hour 0"), (5, "hour 0"), (5, "hour 1"), (1, "hour 1")]
    assert all({hours[2 * k][1], hours[2 * k + 1][1]} == {f"hour {k}"} for k in range(len(bench.RUNS)))

    events.clear()
    with pytest.raises(RuntimeError, match="the hour failed"):
        bench.interleaved([1, 5], "sqlite", tmp_path / "again", "fail")
    assert {e for e in events if e[1] == "closed"} == {(1, "closed"), (5, "closed")}


def _hours_scans(url: str) -> set[tuple[str, str, str]]:
    """The scans the timed hours stored (first seen after the up-to-date run): shipment, time, status."""
    sc = schema.scans.c
    with engine_for(url).connect() as conn:
        return {(r.shipment_id, str(r.occurred_at)[:19], r.status) for r in conn.execute(
            select(sc.shipment_id, sc.occurred_at, sc.status).where(sc.first_seen_at > AS_OF))}


def test_every_feed_stores_the_hours_scans_the_pushed_one_through_the_real_webhook_read(tmp_path):
    """The feeds differ in how an hour asks the carrier, not in what it learns: a feed that stored
    nothing would make its hours look cheap."""
    stored = {}
    for feed in ("changes", "pushed"):
        (tmp_path / feed).mkdir()
        run = bench.bench(300, "sqlite", tmp_path / feed, feed)
        for _ in run:
            pass
        stored[feed] = _hours_scans(f"sqlite:///{tmp_path / feed / 'history.db'}")
        with engine_for(f"sqlite:///{tmp_path / feed / 'history.db'}").connect() as conn:
            pushed = conn.execute(select(func.count()).select_from(schema.tracker_events)).scalar()
        assert pushed == (len(stored[feed]) if feed == "pushed" else 0)
    assert len(stored["changes"]) > 50 and stored["pushed"] == stored["changes"]
