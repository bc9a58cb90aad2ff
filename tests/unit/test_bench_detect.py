"""The detection benchmark's inputs and reference: a generated shop shaped like the simulator's, and
DuckDB SQL that finds exactly what `detect()` finds. No timings here: speed lives in bench/detect.py."""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from lastmile.core.detection import EXCEPTION_TYPES, Thresholds, detect
from lastmile.core.thresholds import ThresholdTable
from lastmile.sim import replay, simulator

from builders import SHIPMENT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # bench/ lives beside include/, not in the package

from bench import detect as bench  # noqa: E402


@pytest.fixture(scope="module")
def shop() -> bench.Frames:
    return bench.as_of_view(bench.generate(2000, seed=5))


@pytest.fixture(scope="module")
def simulated() -> replay.Replay:
    return replay.replay_frames(simulator.SimConfig(seed=7, n_orders=3000))


def per_type(found: pd.DataFrame) -> dict[str, int]:
    return bench.counts_by_type(found)


def test_generated_frames_have_the_pipeline_columns_and_types(shop):
    assert list(shop.shipments.columns) == [*SHIPMENT_COLUMNS, "feed_unknown"]
    assert list(shop.scans.columns) == ["shipment_id", "occurred_at", "status", "reason", "message"]
    assert list(shop.estimates.columns) == ["shipment_id", "est_delivery_date", "observed_at"]
    assert str(shop.scans["occurred_at"].dt.tz) == "UTC" and str(shop.shipments["created_at"].dt.tz) == "UTC"
    assert isinstance(shop.shipments["promised_date"].iloc[0], date)
    assert isinstance(shop.estimates["est_delivery_date"].iloc[0], date)
    assert shop.shipments["shipment_id"].is_unique
    # Nothing after the instant the data set stands for.
    assert shop.scans["occurred_at"].max() <= pd.Timestamp(bench.AS_OF)
    assert shop.shipments["created_at"].max() <= pd.Timestamp(bench.AS_OF)


def test_every_parcel_starts_with_its_label_and_scans_never_tie(shop):
    first = shop.scans.sort_values("occurred_at").groupby("shipment_id").first()
    assert (first["status"] == "pre_transit").all()
    created = shop.shipments.set_index("shipment_id")["created_at"]
    assert (first["occurred_at"] == created.loc[first.index]).all()
    assert set(first.index) == set(shop.shipments["shipment_id"])
    # Ties would make "the last scan" ambiguous between engines.
    assert not shop.scans.duplicated(["shipment_id", "occurred_at"]).any()


def test_reshipments_replace_a_parcel_of_the_same_line(shop):
    ships = shop.shipments.set_index("shipment_id")
    reships = ships[ships["sequence"] >= 2]
    assert len(reships) > 0
    replaced = ships.loc[reships["replaces_shipment_id"]]
    assert (replaced["order_line_id"].to_numpy() == reships["order_line_id"].to_numpy()).all()
    assert (replaced["sequence"].to_numpy() + 1 == reships["sequence"].to_numpy()).all()
    assert ships.loc[ships["sequence"] == 1, "replaces_shipment_id"].isna().all()


def test_generated_shop_is_shaped_like_the_simulated_one(simulated):
    at = bench.AS_OF
    sim = bench.as_of_view(bench.Frames(simulated.shipments, simulated.scans, simulated.estimates), at)
    gen = bench.as_of_view(bench.generate(len(sim.shipments), seed=7), at)
    n_sim, n_gen = len(sim.shipments), len(gen.shipments)
    assert len(gen.scans) / n_gen == pytest.approx(len(sim.scans) / n_sim, rel=0.1)
    assert len(gen.estimates) / n_gen == pytest.approx(len(sim.estimates) / n_sim, rel=0.15)
    sim_found = per_type(detect(sim.shipments, sim.scans, sim.estimates, at))
    gen_found = per_type(detect(gen.shipments, gen.scans, gen.estimates, at))
    assert all(gen_found[k] > 0 and sim_found[k] > 0 for k in EXCEPTION_TYPES)
    for kind in ("late", "stalled", "reshipped", "failed_attempt", "lost"):
        assert gen_found[kind] / n_gen == pytest.approx(sim_found[kind] / n_sim, rel=0.35), kind


@pytest.mark.parametrize("days_before", [0, 25])
def test_duckdb_sql_finds_exactly_what_detect_finds(shop, days_before):
    at = bench.AS_OF - timedelta(days=days_before)
    found = detect(shop.shipments, shop.scans, shop.estimates, at)
    con = bench.duckdb_connect(threads=1)
    bench.duckdb_load(con, shop.shipments, shop.scans, shop.estimates)
    sql = bench.duckdb_detect(con, at)
    assert per_type(found) == per_type(sql)
    assert bench.disagreements(found, sql).empty  # row by row: open, severity, first evidence, evidence


def test_duckdb_sql_reads_the_thresholds(shop):
    strict = Thresholds(stalled_after=2, lost_after=5, pickup_after=1)
    found = detect(shop.shipments, shop.scans, shop.estimates, bench.AS_OF, strict)
    con = bench.duckdb_connect(threads=1)
    bench.duckdb_load(con, shop.shipments, shop.scans, shop.estimates)
    assert bench.disagreements(found, bench.duckdb_detect(con, bench.AS_OF, strict)).empty
    assert per_type(found)["stalled"] != per_type(detect(shop.shipments, shop.scans, shop.estimates,
                                                        bench.AS_OF))["stalled"]


def test_duckdb_sql_reads_thresholds_per_carrier_and_service(shop):
    table = ThresholdTable(Thresholds(), {("DHL", None): Thresholds(lost_after=9),
                                          ("USPS", "Priority"): Thresholds(stalled_after=2, pickup_after=1)})
    found = detect(shop.shipments, shop.scans, shop.estimates, bench.AS_OF, table)
    con = bench.duckdb_connect(threads=1)
    bench.duckdb_load(con, shop.shipments, shop.scans, shop.estimates)
    assert bench.disagreements(found, bench.duckdb_detect(con, bench.AS_OF, table)).empty
    assert not found.equals(detect(shop.shipments, shop.scans, shop.estimates, bench.AS_OF))


def test_duckdb_sql_agrees_on_the_simulators_own_data(simulated):
    con = bench.duckdb_connect(threads=1)
    bench.duckdb_load(con, simulated.shipments, simulated.scans, simulated.estimates)
    for at in (bench.AS_OF - timedelta(days=30), bench.AS_OF):
        found = detect(simulated.shipments, simulated.scans, simulated.estimates, at)
        assert bench.disagreements(found, bench.duckdb_detect(con, at)).empty


def test_incremental_detection_matches_the_full_run_on_the_shipments_it_touches(shop):
    fresh = bench.new_scans(shop, share=0.02, seed=5)
    scans = pd.concat([shop.scans, fresh], ignore_index=True)
    ids = bench.affected(shop.shipments, fresh["shipment_id"])
    assert set(fresh["shipment_id"]) <= set(ids)
    full = detect(shop.shipments, scans, shop.estimates, bench.NEXT)
    part = detect(shop.shipments[shop.shipments["shipment_id"].isin(ids)], scans[scans["shipment_id"].isin(ids)],
                  shop.estimates[shop.estimates["shipment_id"].isin(ids)], bench.NEXT)
    assert bench.disagreements(part, full[full["shipment_id"].isin(ids)]).empty
