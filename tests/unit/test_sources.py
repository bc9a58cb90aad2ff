"""Order sources (files, SQL), carrier accounts from Connections, and feed health as ops see it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from lastmile import orders, pipeline, schema, simulator
from lastmile.accounts import AccountError, account_from_env
from lastmile.config import ConfigError, Settings
from lastmile.db import engine_for, upsert
from lastmile.sources import FileShop, SqlShop

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)


def sim_tables(sim_dir: Path) -> dict[str, pd.DataFrame]:
    return {e: pd.read_csv(sim_dir / f"{e}.csv", dtype=str, keep_default_na=False)
            for e in ("customers", "subscriptions", "orders", "order_lines", "shipments")}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_source_reads_csv_and_parquet_exports_the_same_way(tmp_path, sim_dir, fmt):
    tables = sim_tables(sim_dir)
    for name, frame in tables.items():
        frame = frame.head(50).copy()
        if fmt == "parquet":
            # a typed export: real timestamps and dates, as a warehouse writes them
            for col in ("placed_at", "created_at"):
                if col in frame:
                    frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
            frame.to_parquet(tmp_path / f"{name}.parquet")
        else:
            frame.to_csv(tmp_path / f"{name}.csv", index=False)
    raw = FileShop(tmp_path).load(AS_OF)
    valid = orders.validate(raw)
    assert len(valid.orders) + sum(r.source == "orders" for r in valid.rejections) == 50
    assert valid.shipments and all(s["created_at"].tzinfo is not None for s in valid.shipments)
    assert {s["shipment_id"] for s in valid.shipments} == set(tables["shipments"].head(50)["shipment_id"])


def test_files_source_names_the_missing_file(tmp_path):
    (tmp_path / "customers.csv").write_text("customer_id,name,email,tz\n")
    with pytest.raises(ConfigError, match="orders.csv or orders.parquet"):
        FileShop(tmp_path).load(AS_OF)


def test_files_source_without_subscriptions_is_fine_and_rows_from_the_future_wait(tmp_path, sim_dir):
    tables = sim_tables(sim_dir)
    for name in ("customers", "orders", "order_lines", "shipments"):
        frame = tables[name].head(20).copy()
        frame["updated_at"] = "2026-11-20T10:00:00+00:00"
        if name == "orders":
            frame.loc[0, "updated_at"] = "2026-11-21T10:00:00+00:00"  # after as_of
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    raw = FileShop(tmp_path).load(AS_OF)
    assert raw.subscriptions == []
    assert len(raw.orders) == 19


def test_settings_say_what_is_missing():
    with pytest.raises(ConfigError, match="LASTMILE_ORDERS_PATH"):
        Settings.from_env({"LASTMILE_SOURCE": "files"})
    with pytest.raises(ConfigError, match="expected one of simulated, sql, files"):
        Settings.from_env({"LASTMILE_SOURCE": "erp"})
    s = Settings.from_env({"LASTMILE_TRACKING_ACCOUNTS": "easypost_default, aftership_eu"})
    assert s.tracking_accounts == ("easypost_default", "aftership_eu")


def test_accounts_come_from_airflow_connection_env_in_json_or_uri_form():
    env = {"AIRFLOW_CONN_EASYPOST_DEFAULT": json.dumps({"conn_type": "easypost", "password": "EZTKsecret",
                                                        "host": "http://127.0.0.1:9/v2", "extra": {"timeout": 3}}),
           "AIRFLOW_CONN_AS_SHOP": "aftership://:ASKEY@127.0.0.1:8081/tracking/2025-07?scheme=http",
           "AIRFLOW_CONN_NOKEY": json.dumps({"conn_type": "easypost"}),
           "AIRFLOW_CONN_MYSTERY": json.dumps({"conn_type": "http", "password": "x"})}
    ep = account_from_env("easypost_default", env)
    assert (ep.vendor, ep.base_url, ep.timeout) == ("easypost", "http://127.0.0.1:9/v2", 3.0)
    assert "EZTKsecret" not in repr(ep)
    aftership = account_from_env("as_shop", env)
    assert (aftership.vendor, aftership.api_key, aftership.base_url) == (
        "aftership", "ASKEY", "http://127.0.0.1:8081/tracking/2025-07")
    with pytest.raises(AccountError, match="no password"):
        account_from_env("nokey", env)
    with pytest.raises(AccountError, match="cannot tell the vendor"):
        account_from_env("mystery", env)
    with pytest.raises(AccountError, match="AIRFLOW_CONN_GONE"):
        account_from_env("gone", env)


def test_reshipments_without_numbers_are_chained_by_creation_time():
    def ship(sid, created, seq=None):
        return {"shipment_id": sid, "order_line_id": "L1", "created_at": created, "sequence": seq,
                "replaces_shipment_id": None}
    known = [ship("A", datetime(2026, 11, 1, tzinfo=UTC), 1)]
    new = [ship("C", datetime(2026, 11, 9, tzinfo=UTC)), ship("B", datetime(2026, 11, 5, tzinfo=UTC))]
    orders.number_shipments(new, known)
    by_id = {s["shipment_id"]: s for s in new}
    assert (by_id["B"]["sequence"], by_id["B"]["replaces_shipment_id"]) == (2, "A")
    assert (by_id["C"]["sequence"], by_id["C"]["replaces_shipment_id"]) == (3, "B")


def test_sql_source_reads_incrementally_and_keeps_naive_timestamps_out(tmp_path):
    # (SQLite compares timestamps as text, so updated_at uses its own 'YYYY-MM-DD HH:MM:SS' form.)
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        for name, cols in (("customers", "customer_id, name, email, tz"), ("orders", "order_id, customer_id, "
                           "placed_at, currency"), ("order_lines", "order_line_id, order_id, sku, description, "
                           "quantity"), ("shipments", "shipment_id, order_line_id")):
            conn.execute(text(f"CREATE TABLE {name} ({cols}, updated_at TEXT)"))
        conn.execute(text("INSERT INTO orders VALUES ('O1', 'C1', '2026-11-01T10:00:00+00:00', 'usd', "
                          "'2026-11-01 10:00:00+00:00'), ('O2', 'C1', '2026-11-02 10:00:00', 'usd', "
                          "'2026-11-19 10:00:00+00:00'), ('O3', 'C1', '2026-11-03T10:00:00+00:00', 'usd', "
                          "'2026-11-21 10:00:00+00:00')"))
    first = SqlShop(url, {}).load(AS_OF)
    assert [o["order_id"] for o in first.orders] == ["O1", "O2"]  # O3 changed after as_of
    assert first.watermarks["orders"] == datetime(2026, 11, 19, 10, tzinfo=UTC)
    valid = orders.validate(first)
    (bad,) = [r for r in valid.rejections if r.record_id == "O2"]
    assert bad.field == "placed_at" and "no UTC offset" in bad.reason
    # next run: only what changed since (with an hour's overlap for late commits)
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET currency = 'eur', updated_at = '2026-11-20 15:00:00+00:00' "
                          "WHERE order_id = 'O1'"))
    later = SqlShop(url, first.watermarks).load(AS_OF + timedelta(hours=2))
    assert [o["order_id"] for o in later.orders] == ["O2", "O1"]
    engine.dispose()


def test_feed_states_down_stale_and_ok(tmp_path):
    settings = Settings.from_env({"LASTMILE_OUT_DIR": str(tmp_path),
                                  "LASTMILE_TRACKING_ACCOUNTS": "easypost_a,easypost_b,easypost_c,easypost_d",
                                  "LASTMILE_FEED_STALE_HOURS": "6"})
    def row(account, hours_ago, ok):
        at = AS_OF - timedelta(hours=hours_ago)
        return {"account": account, "batch_key": pipeline.batch_key_for(at), "vendor": "easypost", "as_of": at,
                "ok": ok, "shipments_asked": 1, "trackers_received": 1, "trackers_updated": 0, "scans_new": 0,
                "error": None if ok else "EasyPostUnavailable: gave up"}
    with engine_for(settings.db_url).begin() as conn:
        upsert(conn, schema.feed_health, [row("easypost_a", 1, True), row("easypost_b", 2, True),
                                          row("easypost_b", 0, False), row("easypost_c", 7, True)])
        states = pipeline.feed_states(conn, settings, AS_OF)
    assert {a: s["state"] for a, s in states.items()} == {
        "easypost_a": "ok", "easypost_b": "down", "easypost_c": "stale", "easypost_d": "never"}
    assert states["easypost_b"]["error"].startswith("EasyPostUnavailable")


def test_track_command_prints_normalised_scans_from_easypost(easypost_server, monkeypatch, capsys):
    from lastmile.__main__ import main

    easypost_server.add_tracker("EZ1000000001", status="delivered", status_detail="arrived_at_destination",
                                message="Delivered, front porch")
    easypost_server.add_tracker("EZ1000000002", status="in_transit", status_detail="teleported")
    monkeypatch.setenv("AIRFLOW_CONN_EASYPOST_DEFAULT", json.dumps(
        {"conn_type": "easypost", "host": easypost_server.url, "password": easypost_server.api_key}))
    assert main(["track", "--carrier", "easypost", "EZ1000000001", "EZ1000000002"]) == 0
    out = capsys.readouterr().out
    delivered = [ln for ln in out.splitlines() if ln.startswith("EZ1000000001") and "Delivered, front porch" in ln]
    assert delivered and " delivered " in delivered[0]
    assert any(ln.startswith("EZ1000000002") and "unmapped" in ln and "easypost:in_transit/teleported" in ln
               for ln in out.splitlines())


def test_track_command_fails_loudly_when_the_key_is_refused(easypost_server, monkeypatch, capsys):
    from lastmile.__main__ import main

    monkeypatch.setenv("AIRFLOW_CONN_EASYPOST_DEFAULT", json.dumps(
        {"conn_type": "easypost", "host": easypost_server.url, "password": "EZTKwrong"}))
    assert main(["track", "--carrier", "easypost", "EZ1000000001"]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "EZTKwrong" not in err


def test_out_of_order_delivered_scan_does_not_reopen_a_delivery(sim_dir):
    """A 'delivered' that arrives before an 'out for delivery' stamped later: still delivered."""
    from lastmile import detection

    ships = pd.read_csv(sim_dir / "shipments.csv", dtype=str, keep_default_na=False).head(1)
    sid = ships.iloc[0]["shipment_id"]
    created = pd.Timestamp(ships.iloc[0]["created_at"])

    def scan(hours, status):
        return {"shipment_id": sid, "occurred_at": created + pd.Timedelta(hours=hours), "status": status,
                "reason": None, "message": status}
    scans = pd.DataFrame([scan(1, "pre_transit"), scan(5, "in_transit"), scan(30, "delivered"),
                          scan(31, "out_for_delivery")])
    found = detection.detect(ships, scans, pd.DataFrame(), (created + pd.Timedelta(days=30)).to_pydatetime())
    assert not found["open"].any() if not found.empty else True
    assert "stalled" not in set(found["exception_type"]) and "lost" not in set(found["exception_type"])


def test_simulator_tables_are_a_valid_files_source(sim_dir):
    """The demo's own export folder works as LASTMILE_ORDERS_PATH (columns as documented)."""
    raw = FileShop(sim_dir).load(AS_OF)
    assert len(raw.shipments) == len(simulator.read_table(sim_dir, "shipments"))
