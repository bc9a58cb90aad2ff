"""The DAG on real-shaped sources: the shop's own Postgres (LASTMILE_SOURCE=sql) and two EasyPost
accounts served by local EasyPost look-alikes, one of which goes down.

What a user notices: the shop's orders and the carrier's scans land in the history tables; a late
update to an old order and a reshipment are picked up by the watermark; when one carrier account is
down its fetch task fails (the alert) while the other account's exceptions are still detected, and
the parcels of the down account are never called stalled or lost for lack of scans.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pendulum
import pytest
from servers.easypost import EasyPostServer
from servers.webhook import WebhookServer
from shop_db import create_shop, execute
from sqlalchemy import create_engine, select

from lastmile.core import detection
from lastmile.sim import simulator
from lastmile.store import schema
from lastmile.store.db import prepare

from conftest import ROOT

T1 = pendulum.datetime(2026, 11, 20, 14, tz="UTC")  # a Friday
T2 = pendulum.datetime(2026, 11, 25, 14, tz="UTC")  # three business days later
pytestmark = pytest.mark.slow


def account_of(shipment: dict[str, str]) -> str | None:
    # European parcels are tracked through a second EasyPost account; the rest use the default one.
    return "easypost_eu" if shipment["dest_tz"].startswith("Europe/") else None


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sim-small")
    simulator.ensure(folder, seed=7, n_orders=600)
    return folder


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / "delivery_exceptions.py")).dags["delivery_exceptions"]


def publish(servers: dict[str | None, EasyPostServer], sim_dir: Path, shop_url: str, as_of: pendulum.DateTime) -> int:
    """Put on each account's server the trackers EasyPost would hold at `as_of` (from the simulator)."""
    timelines, faults = simulator.read_timelines(sim_dir), simulator.read_faults(sim_dir)
    engine = create_engine(shop_url)
    with engine.connect() as conn:
        ships = pd.read_sql("SELECT * FROM shipments", conn)
    engine.dispose()
    count = 0
    for server in servers.values():
        server.reset()
    for row in ships.to_dict("records"):
        timeline = timelines.get(row["shipment_id"])
        payload = simulator.tracker_payload(row, timeline, as_of, faults) if timeline else None
        if payload is not None:
            servers[row["tracking_account"] if isinstance(row["tracking_account"], str) else None].put_tracker(payload)
            count += 1
    return count


def connection_env(monkeypatch, name: str, server: EasyPostServer) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(
        {"conn_type": "easypost", "host": server.url, "password": server.api_key, "extra": {"timeout": 2}}))


def frame(url: str, table) -> pd.DataFrame:
    engine = create_engine(url)
    with engine.connect() as conn:
        out = pd.read_sql(select(table), conn)
    engine.dispose()
    return out


def task_states(run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: ti.state
            for ti in run.get_task_instances()}


def test_sql_orders_and_two_easypost_accounts_one_down(dag, monkeypatch, tmp_path, small_sim, postgres_url,
                                                       postgres_database):
    create_shop(postgres_database, small_sim, account_of)
    shop = create_engine(postgres_database).url
    monkeypatch.setenv("AIRFLOW_CONN_LASTMILE_ORDERS", json.dumps({
        "conn_type": "postgres", "host": shop.host, "port": shop.port, "login": shop.username,
        "schema": shop.database}))
    monkeypatch.setenv("LASTMILE_SOURCE", "sql")
    monkeypatch.setenv("LASTMILE_TRACKING_ACCOUNTS", "easypost_default,easypost_eu")
    monkeypatch.setenv("LASTMILE_DB_URL", postgres_url)
    prepare(postgres_url)
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    monkeypatch.setenv("LASTMILE_SIM_DIR", str(small_sim))

    with EasyPostServer() as default, EasyPostServer() as eu, WebhookServer() as ops:
        monkeypatch.setenv("AIRFLOW_CONN_LASTMILE_OPS_WEBHOOK", json.dumps({"conn_type": "http", "host": ops.url}))
        servers = {None: default, "easypost_eu": eu}
        connection_env(monkeypatch, "easypost_default", default)
        connection_env(monkeypatch, "easypost_eu", eu)
        published = publish(servers, small_sim, postgres_database, T1)

        # --- T1: both feeds up
        run = dag.test(logical_date=T1)
        assert run.state == "success", task_states(run)
        shipments = frame(postgres_url, schema.shipments)
        scans = frame(postgres_url, schema.scans)
        health = frame(postgres_url, schema.feed_health).set_index("account")
        assert set(shipments["tracking_account"].dropna()) == {"easypost_eu"}
        assert health.loc["easypost_default", "ok"] and health.loc["easypost_eu", "ok"]
        # every tracker the two servers held was read and its scans stored, each scan once
        assert health["trackers_received"].sum() == published
        assert scans["scan_id"].is_unique
        eu_ids = set(shipments.loc[shipments["tracking_account"] == "easypost_eu", "shipment_id"])
        assert eu_ids and set(scans["shipment_id"]) & eu_ids and set(scans["shipment_id"]) - eu_ids
        # the EU account was asked only for EU parcels
        asked = {c for r in eu.requests for c in r.query.get("tracking_codes[]", [])}
        eu_codes = set(shipments.loc[shipments["tracking_account"] == "easypost_eu", "tracking_code"])
        assert asked and asked <= eu_codes
        assert not frame(postgres_url, schema.detections).empty
        quarantine = frame(postgres_url, schema.quarantine)
        assert ("orders", "order_id") in set(zip(quarantine["source"], quarantine["field"], strict=True))

        # --- between T1 and T2 the shop changes an old shipment's promise and reships a line
        old = shipments.sort_values("created_at").iloc[0]
        execute(postgres_database, "UPDATE shipments SET promised_date = '2026-12-24', updated_at = :at "
                "WHERE shipment_id = :sid", at=T2 - timedelta(hours=2), sid=old["shipment_id"])
        line = shipments[shipments["tracking_account"].isna()].sort_values("created_at").iloc[-1]
        execute(postgres_database, "INSERT INTO shipments (shipment_id, order_line_id, order_id, customer_id, "
                "carrier, service, tracking_code, created_at, promised_date, origin, destination, dest_tz, "
                "updated_at) SELECT 'SH-RESHIP-1', order_line_id, order_id, customer_id, carrier, service, "
                "'RESHIP0000001', :at, '2026-11-30', origin, destination, dest_tz, :at FROM shipments "
                "WHERE shipment_id = :sid", at=T2 - timedelta(hours=3), sid=line["shipment_id"])
        execute(postgres_database, "INSERT INTO shipments (shipment_id, order_line_id, order_id, customer_id, "
                "carrier, service, tracking_code, created_at, promised_date, origin, destination, dest_tz, "
                "updated_at) VALUES ('SH-BAD-TZ', 'X-1', 'X', 'C00001', 'UPS', 'Ground', 'BADTZ0001', :at, "
                "'2026-11-30', 'US-HOUSTON', 'US-BROOKLYN', 'Mars/Olympus', :at)", at=T2 - timedelta(hours=1))

        # --- T2: the default feed has news, the EU account is down (nothing listens any more)
        publish(servers, small_sim, postgres_database, T2)
        eu.stop()
        run = dag.test(logical_date=T2)
        states = task_states(run)
        assert states["fetch_tracking[1]"] == "failed", states  # the alert: the EU account's task
        assert states["fetch_tracking[0]"] == "success", states
        assert all(states[t] == "success" for t in ("detect_exceptions", "plan_messages", "summarise")), states
        # ops were told, on their webhook, which account's task failed and why
        (alert,) = ops.texts()
        assert "delivery_exceptions.fetch_tracking[" in alert and "easypost_eu" in alert
        assert "down" in alert and eu.api_key not in alert

    health = frame(postgres_url, schema.feed_health)
    down = health[(health["account"] == "easypost_eu") & ~health["ok"]]
    assert len(down) == 1 and "connection" in down.iloc[0]["error"].lower()

    shipments = frame(postgres_url, schema.shipments).set_index("shipment_id")
    assert str(shipments.loc[old["shipment_id"], "promised_date"]) == "2026-12-24"  # late update picked up
    reship = shipments.loc["SH-RESHIP-1"]
    assert reship["sequence"] == 2 and reship["replaces_shipment_id"] == line["shipment_id"]
    quarantine = frame(postgres_url, schema.quarantine)
    bad = quarantine[quarantine["record_id"] == "SH-BAD-TZ"]
    assert list(bad["field"]) == ["dest_tz"] and "Mars/Olympus" in bad.iloc[0]["reason"]

    dets = frame(postgres_url, schema.detections)
    t2 = dets[dets["batch_key"] == "2026-11-25T14:00:00Z"]
    silence = {"stalled", "stuck_before_pickup"}
    eu_t2 = t2[t2["shipment_id"].isin(eu_ids)]
    # Exceptions of the account that is up are still found ...
    assert not t2[~t2["shipment_id"].isin(eu_ids) & t2["open"]].empty
    assert "reshipped" in set(t2.loc[t2["shipment_id"] == "SH-RESHIP-1", "exception_type"])
    # ... and no parcel of the down account is called stalled or lost for lack of scans,
    silent_lost = eu_t2[(eu_t2["exception_type"] == "lost")
                        & eu_t2["evidence"].map(lambda e: not json.loads(e).get("carrier_says_lost"))]
    assert eu_t2[eu_t2["exception_type"].isin(silence) & eu_t2["open"]].empty
    assert silent_lost.empty
    # although the same data with the feed taken at its word would have called some of them so.
    scans = frame(postgres_url, schema.scans)
    estimates = frame(postgres_url, schema.estimates)
    naive = detection.detect(shipments.reset_index(), scans, estimates, T2)
    naive_eu = naive[naive["shipment_id"].isin(eu_ids) & naive["open"]]
    assert not naive_eu[naive_eu["exception_type"].isin(silence | {"lost"})].empty

    steps = frame(postgres_url, schema.run_steps)
    detect_counts = json.loads(steps[(steps["batch_key"] == "2026-11-25T14:00:00Z")
                                     & (steps["step"] == "detect_exceptions")].iloc[0]["counts"])
    assert detect_counts["feeds"] == {"easypost_default": "ok", "easypost_eu": "down"}
    # Every parcel of the down account still in flight is looked at again, in an unknown state (with
    # the other parcels of their order lines); the ones it had finished by T1 are left as they were.
    finished = pd.to_datetime(frame(postgres_url, schema.tracking_state).set_index("shipment_id")["finished_at"],
                              utc=True).reindex(shipments.index)
    eu_now = shipments[(shipments["tracking_account"] == "easypost_eu")
                       & (pd.to_datetime(shipments["created_at"], utc=True) <= T2)]
    eu_flying = eu_now[~(finished.reindex(eu_now.index) <= T1)]
    assert 0 < len(eu_flying) <= detect_counts["unknown_state_shipments"] < len(eu_now)
