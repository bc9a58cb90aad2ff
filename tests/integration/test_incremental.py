"""The incremental core gives exactly what re-detecting everything gives, run after run.

The same simulated shop is run hour by hour (crossing local midnights in New York, Los Angeles,
London and Berlin) twice: once re-detecting only what changed (the default), once re-detecting
every shipment every run (LASTMILE_FULL_DETECT=1). Detections, windows, cases and e-mails agree.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from lastmile.config import Settings
from lastmile.steps import pipeline
from lastmile.store import schema
from lastmile.store.db import prepare
from lastmile.store.db import utc as utc_

START = datetime(2026, 11, 18, 20, tzinfo=UTC)
RUNS = [START + timedelta(hours=3 * n) for n in range(14)]  # 20:00Z to 11:00Z two days later


@pytest.fixture(scope="module")
def sim_400(tmp_path_factory) -> Path:
    from lastmile.sim import simulator

    folder = tmp_path_factory.mktemp("sim-400")
    simulator.ensure(folder, seed=7, n_orders=400)
    return folder


def _state(settings: Settings) -> dict[str, object]:
    cd, ca, ob = schema.current_detections.c, schema.cases.c, schema.outbox.c
    with prepare(settings.db_url).connect() as conn:
        return {
            "detections": sorted(conn.execute(select(
                cd.shipment_id, cd.exception_type, cd.open, cd.window_earliest, cd.window_latest)).tuples()),
            "cases": sorted(conn.execute(select(
                ca.case_id, ca.state, ca.exception_type, ca.shipment_id, ca.window_earliest, ca.window_latest,
                ca.resolution)).tuples()),
            "outbox": sorted(conn.execute(select(ob.message_key, ob.state)).tuples()),
        }


def test_changed_only_equals_everything_every_run(tmp_path, sim_400):
    base = Settings(db_url="", source="simulated", email_transport="file", out_dir=tmp_path, sim_dir=sim_400,
                    sim_seed=7, sim_orders=400)
    incremental = dataclasses.replace(base, db_url=f"sqlite:///{tmp_path / 'incremental.db'}",
                                      out_dir=tmp_path / "incremental")
    full = dataclasses.replace(base, db_url=f"sqlite:///{tmp_path / 'full.db'}", out_dir=tmp_path / "full",
                               full_detect=True)
    prepare(incremental.db_url), prepare(full.db_url)
    checked: list[int] = []
    for as_of in RUNS:
        pipeline.run_all(incremental, as_of)
        pipeline.run_all(full, as_of)
        assert _state(incremental) == _state(full), f"differs after the run at {as_of.isoformat()}"
        with prepare(incremental.db_url).connect() as conn:
            checked.append(conn.execute(select(schema.run_steps.c.counts).where(
                schema.run_steps.c.step == "detect_exceptions",
                schema.run_steps.c.as_of == as_of)).scalar_one().count('"mode": "changed"'))
    assert sum(checked) == len(RUNS) - 1, "every run after the first re-detected only what changed"
    assert _state(full)["outbox"], "the shop produced e-mails to compare"


def test_looking_at_everything_in_small_parts_gives_what_one_piece_gives(tmp_path, sim_400, monkeypatch):
    """The first run (and a full one) detect a bounded number of order lines at a time: the parts
    are learned from before any is detected, so the outcome is the same as in one piece."""
    from lastmile.steps import detect_exceptions

    states, samples, counts = [], [], []
    for name, lines in (("whole", detect_exceptions.PART_LINES), ("parts", 7)):
        monkeypatch.setattr(detect_exceptions, "PART_LINES", lines)
        settings = Settings(db_url=f"sqlite:///{tmp_path / name}.db", source="simulated", email_transport="file",
                            out_dir=tmp_path / name, sim_dir=sim_400, sim_seed=7, sim_orders=400, full_detect=True)
        prepare(settings.db_url)
        for as_of in RUNS[:3]:
            pipeline.run_all(settings, as_of)
        states.append(_state(settings))
        ts, rs = schema.transit_samples, schema.run_steps.c
        with prepare(settings.db_url).connect() as conn:
            samples.append(sorted(conn.execute(select(ts)).tuples()))
            counts.append([{k: v for k, v in json.loads(c).items() if k != "arrived"} for c in conn.execute(
                select(rs.counts).where(rs.step == "detect_exceptions").order_by(rs.as_of)).scalars()])
    assert states[0] == states[1] and samples[0] == samples[1] and counts[0] == counts[1]
    assert counts[1][0]["shipments_checked"] > 7 * 3, "the shop is many parts"
    # The first run learned the shop's past before detecting: those samples count from before any day.
    learned_at = [c.name for c in schema.transit_samples.columns].index("learned_at")
    assert any(utc_(row[learned_at]) == detect_exceptions.KNOWN_BEFORE_START for row in samples[1])
    assert states[0]["outbox"]


def _kept_vs_learned_again(settings: Settings, as_of: datetime) -> tuple[dict, dict]:
    """Every kept threshold table and window level, and the same learned again from the samples now."""
    from lastmile.core import thresholds
    from lastmile.steps.compute_windows import learned_levels
    from lastmile.steps.detect_exceptions import learned_thresholds

    t = schema.learned_statistics
    with prepare(settings.db_url).connect() as conn, conn.begin() as tx:
        rows = conn.execute(select(t.c.kind, t.c.cutoff, t.c.payload)).all()
        kept = {(kind, utc_(cutoff)): json.loads(payload) for kind, cutoff, payload in rows}
        conn.execute(t.delete())
        cutoffs = {cutoff for _, cutoff in kept}
        configured = thresholds.load()
        again = {("thresholds", c): table.to_json()
                 for c, table in learned_thresholds(conn, configured, cutoffs, as_of).items()}
        for c, levels in learned_levels(conn, cutoffs, as_of).items():
            again.update({(kind, c): lv.to_json() for kind, lv in zip(
                ("transit", "estimate_errors", "after_exception"), levels, strict=True)})
        tx.rollback()
    return kept, {key: again[key] for key in kept}


def test_what_is_kept_is_what_learning_again_gives_in_any_order(tmp_path, sim_400):
    """Thresholds and window levels are learned once per cutoff and kept; after every run, in any
    order (an earlier date again, a gap, the latest again), each kept value equals what learning it
    again from the samples as they stand gives: nothing stale survives a sample that changed."""
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'h.db'}", source="simulated", email_transport="file",
                        out_dir=tmp_path, sim_dir=sim_400, sim_seed=7, sim_orders=400)
    prepare(settings.db_url)
    order = [*RUNS[:6], RUNS[2], RUNS[9], RUNS[7], RUNS[13], RUNS[13], RUNS[11]]
    reused = 0
    for as_of in order:
        pipeline.run_all(settings, as_of)
        kept, again = _kept_vs_learned_again(settings, as_of)
        assert kept, f"nothing kept after the run at {as_of.isoformat()}"
        assert kept == again, f"a kept value is stale after the run at {as_of.isoformat()}"
        with prepare(settings.db_url).connect() as conn:
            reused += sum(1 for computed_at in conn.execute(select(schema.learned_statistics.c.computed_at)).scalars()
                          if computed_at is not None and utc_(computed_at) < as_of)
    assert reused, "runs after the first read what earlier runs learned"


def test_a_late_delivery_scan_is_learned_into_the_days_already_kept(tmp_path, sim_400):
    """A feed that hands over a delivery hours late: the parcel counts for the cutoffs already kept
    since it was delivered, so those are learned again (not left as they were)."""
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'h.db'}", source="simulated", email_transport="file",
                        out_dir=tmp_path, sim_dir=sim_400, sim_seed=7, sim_orders=400)
    prepare(settings.db_url)
    for as_of in RUNS[:5]:
        pipeline.run_all(settings, as_of)
    t, sc, ts = schema.learned_statistics.c, schema.scans.c, schema.tracking_state.c
    with prepare(settings.db_url).begin() as conn:
        earliest_cutoff = min(utc_(c) for c in conn.execute(select(t.cutoff).where(t.kind == "transit")).scalars())
        moving = select(sc.shipment_id).where(sc.status == "in_transit", sc.occurred_at < earliest_cutoff
                                              - timedelta(hours=2))
        sid = conn.execute(select(ts.shipment_id).where(ts.finished_at.is_(None), ts.shipment_id.in_(moving))
                           .order_by(ts.shipment_id).limit(1)).scalar_one()
        conn.execute(schema.scans.insert(), [{
            "scan_id": "late-delivery", "shipment_id": sid, "occurred_at": earliest_cutoff - timedelta(minutes=30),
            "utc_offset_minutes": 0, "status": "delivered", "reason": None, "carrier_status": "delivered",
            "carrier_status_detail": "", "message": "Delivered", "city": None, "country": None, "raw": "{}",
            "first_seen_at": RUNS[5] - timedelta(minutes=10)}])
    pipeline.run_all(settings, RUNS[5])
    with prepare(settings.db_url).connect() as conn:
        learned_sample = conn.execute(select(schema.transit_samples.c.delivered_at).where(
            schema.transit_samples.c.shipment_id == sid)).scalar_one()
    assert utc_(learned_sample) < earliest_cutoff
    kept, again = _kept_vs_learned_again(settings, RUNS[5])
    assert kept == again


def _settings(tmp_path: Path, sim_400: Path) -> Settings:
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'h.db'}", source="simulated", email_transport="file",
                        out_dir=tmp_path, sim_dir=sim_400, sim_seed=7, sim_orders=400)
    prepare(settings.db_url)
    return settings


def test_what_the_previous_run_fetched_is_not_looked_at_again(tmp_path, sim_400):
    """A run's own scans were seen by its detection: the next run, with nothing new, re-detects
    nothing (before, every hour re-detected the parcels of the hour before too). A scan stamped with
    the previous run's instant after its detection ran (a fetch cleared and run again) is looked at."""
    from lastmile.steps.detect_exceptions import arrived_with, candidates
    from lastmile.store import progress
    from lastmile.store.queries import feed_states

    settings = _settings(tmp_path, sim_400)
    for as_of in RUNS[:3]:
        pipeline.run_all(settings, as_of)
    soon = RUNS[2] + timedelta(minutes=5)  # no destination crosses a midnight in between
    engine = prepare(settings.db_url)
    with engine.connect() as conn:
        assert arrived_with(conn, RUNS[2])["scans"] > 0, "the run fetched scans"
        assert candidates(conn, settings, soon, RUNS[2], feed_states(conn, settings, soon)) == set()
    sc, ts = schema.scans.c, schema.tracking_state.c
    with engine.begin() as conn:
        sid = conn.execute(select(ts.shipment_id).where(ts.finished_at.is_(None), ts.shipment_id.in_(
            select(sc.shipment_id).where(sc.status == "in_transit"))).order_by(ts.shipment_id).limit(1)).scalar_one()
        late = {"scan_id": "fetched-again", "shipment_id": sid, "occurred_at": RUNS[2] - timedelta(hours=1),
                "utc_offset_minutes": 0, "status": "delivered", "reason": None, "carrier_status": "delivered",
                "carrier_status_detail": "", "message": "Delivered", "city": None, "country": None, "raw": "{}",
                "first_seen_at": RUNS[2]}
        conn.execute(schema.scans.insert(), [late])
        progress.record_scans(conn, [late])
    with engine.connect() as conn:
        assert sid in candidates(conn, settings, soon, RUNS[2], feed_states(conn, settings, soon))
    pipeline.run_all(settings, RUNS[3])
    with engine.connect() as conn:
        assert conn.execute(select(schema.transit_samples.c.shipment_id).where(
            schema.transit_samples.c.shipment_id == sid)).scalar_one() == sid, "its delivery was learned"


def test_a_previous_runs_fetch_redone_with_as_many_rows_is_still_looked_at(tmp_path, sim_400):
    """After the previous detection, a backfill moved one of its run's estimates earlier and its
    fetch, run again, stored a new one: as many rows stamped with its instant, but not the same."""
    from lastmile.steps.detect_exceptions import candidates
    from lastmile.store.queries import feed_states

    settings = _settings(tmp_path, sim_400)
    for as_of in RUNS[:3]:
        pipeline.run_all(settings, as_of)
    soon = RUNS[2] + timedelta(minutes=5)
    es, ts = schema.estimates.c, schema.tracking_state.c
    engine = prepare(settings.db_url)
    with engine.begin() as conn:
        moved = conn.execute(select(es.shipment_id, es.est_delivery_date).where(es.observed_at == RUNS[2])
                             .order_by(es.shipment_id).limit(1)).one()
        conn.execute(schema.estimates.update().where(es.shipment_id == moved[0], es.est_delivery_date == moved[1])
                     .values(observed_at=RUNS[1]))
        sid = conn.execute(select(ts.shipment_id).where(ts.finished_at.is_(None), ts.shipment_id.not_in(
            select(es.shipment_id).where(es.observed_at == RUNS[2]))).order_by(ts.shipment_id).limit(1)).scalar_one()
        conn.execute(schema.estimates.insert(), [{"shipment_id": sid, "est_delivery_date": RUNS[2].date() + timedelta(days=9),
                                                  "observed_at": RUNS[2]}])
    with engine.connect() as conn:
        assert sid in candidates(conn, settings, soon, RUNS[2], feed_states(conn, settings, soon))


def test_a_previous_runs_load_orders_redone_alone_is_looked_at(tmp_path, sim_400, monkeypatch):
    """load_orders of the previous run's batch, cleared and run again on its own after that run's
    detection, wrote other content for a shipment that batch had already changed (the shop cancelled
    its order meanwhile): the next run looks at it. Run again with the same content: nothing new."""
    from lastmile.shop.records import RawOrders
    from lastmile.steps import load_orders as load_module
    from lastmile.steps.detect_exceptions import candidates
    from lastmile.store.db import batch_key_for
    from lastmile.store.queries import feed_states

    settings = _settings(tmp_path, sim_400)
    for as_of in RUNS[:4]:  # (the fourth run's batch changed shipments in flight)
        pipeline.run_all(settings, as_of)
    soon = RUNS[3] + timedelta(minutes=5)
    bc, ts, sh, od = schema.batch_changes.c, schema.tracking_state.c, schema.shipments.c, schema.orders.c
    engine = prepare(settings.db_url)
    with engine.connect() as conn:
        sid, oid = conn.execute(select(bc.shipment_id, sh.order_id).join(schema.shipments, sh.shipment_id == bc.shipment_id)
                                .join(schema.tracking_state, ts.shipment_id == bc.shipment_id)
                                .where(bc.batch_key == batch_key_for(RUNS[3]), ts.finished_at.is_(None))
                                .order_by(bc.shipment_id).limit(1)).one()
        order = dict(conn.execute(select(schema.orders).where(od.order_id == oid)).mappings().one())
        assert candidates(conn, settings, soon, RUNS[3], feed_states(conn, settings, soon)) == set()

    def load_again(status: object) -> dict[str, object]:
        """load_orders of the fourth run cleared and run again, alone: the shop now says `status`."""
        row = {**order, "placed_at": utc_(order["placed_at"]).isoformat(), "status": status}
        shop = RawOrders(customers=[], subscriptions=[], orders=[row], order_lines=[], shipments=[])
        monkeypatch.setattr(load_module, "order_source", lambda *_: type("Shop", (), {"load": lambda _s, _at: shop})())
        return pipeline.load_orders(settings, RUNS[3])

    def looked_at() -> set[str]:
        with engine.connect() as conn:
            return candidates(conn, settings, soon, RUNS[3], feed_states(conn, settings, soon))

    assert load_again("cancelled")["orders"] == 1
    assert sid in looked_at()
    pipeline.detect_exceptions(settings, RUNS[3])  # its detection run again too: that one saw it
    assert looked_at() == set()
    assert load_again("cancelled")["orders"] == 0  # the same content once more: nothing written, nothing new
    assert looked_at() == set()


def test_a_feed_read_again_after_the_detection_that_found_it_down_has_its_parcels_looked_at(
        tmp_path, sim_400, monkeypatch):
    """The previous run's fetch failed, its detection treated the feed's parcels as unknown; then
    the fetch was cleared and run again, and succeeded. The history now says the feed was fine at
    that instant, but the detections say otherwise: the next run looks at every parcel of the feed."""
    from lastmile.carriers.tracking import ParsedTrackers
    from lastmile.steps import fetch_tracking as fetch_module
    from lastmile.steps.detect_exceptions import candidates
    from lastmile.steps.feeds import FeedRead
    from lastmile.store import progress
    from lastmile.store.queries import feed_states

    settings = _settings(tmp_path, sim_400)
    for as_of in RUNS[:2]:
        pipeline.run_all(settings, as_of)
    with monkeypatch.context() as patch:
        patch.setattr(fetch_module, "read_feed",
                      lambda *_: FeedRead(ParsedTrackers(), 0, "ConnectionError: the carrier did not answer"))
        counts = pipeline.run_all(settings, RUNS[2])
    assert counts["feeds"][settings.tracking_accounts[0]]["state"] == "down"
    pipeline.fetch_tracking(settings, RUNS[2])  # cleared and run again: the carrier answers
    soon = RUNS[2] + timedelta(minutes=5)
    engine = prepare(settings.db_url)
    with engine.connect() as conn:
        flying = set(conn.execute(progress.in_flight(RUNS[2])).scalars())
        assert feed_states(conn, settings, RUNS[2])[settings.tracking_accounts[0]]["state"] == "ok"
        found = candidates(conn, settings, soon, RUNS[2], feed_states(conn, settings, soon))
    assert flying and flying <= found


def test_an_account_configured_since_is_compared_with_the_account_that_read_its_parcels(tmp_path, sim_400):
    """Parcels moved to a new carrier account were read, until now, through the first account.
    If the new account is not read yet, their state is now unknown: they are looked at again. If it
    reads fine, nothing changed for them: they are not."""
    import dataclasses

    from lastmile.steps.detect_exceptions import candidates
    from lastmile.store import progress

    settings = _settings(tmp_path, sim_400)
    for as_of in RUNS[:3]:
        pipeline.run_all(settings, as_of)
    soon = RUNS[2] + timedelta(minutes=5)
    engine = prepare(settings.db_url)
    sh = schema.shipments.c
    with engine.begin() as conn:
        moved = sorted(conn.execute(select(sh.shipment_id).where(sh.shipment_id.in_(progress.in_flight(RUNS[2])))
                                    .order_by(sh.shipment_id).limit(5)).scalars())
        conn.execute(schema.shipments.update().where(sh.shipment_id.in_(moved)).values(tracking_account="simulated_eu"))
        progress.track(conn, moved)  # what load_orders does with a shipment it writes: the poll's copy follows
    both = dataclasses.replace(settings, tracking_accounts=("simulated", "simulated_eu"))
    with engine.connect() as conn:
        unread = candidates(conn, both, soon, RUNS[2], {"simulated": {"state": "ok"}, "simulated_eu": {"state": "never"}})
        fine = candidates(conn, both, soon, RUNS[2], {"simulated": {"state": "ok"}, "simulated_eu": {"state": "ok"}})
    assert set(moved) <= unread
    assert fine == set()
