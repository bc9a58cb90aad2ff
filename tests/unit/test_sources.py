"""Order sources (files, SQL), carrier accounts from Connections, and feed health as ops see it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from lastmile.carriers.accounts import AccountError, account_from_env
from lastmile.config import ConfigError, Settings
from lastmile.shop import orders
from lastmile.shop.sources import FileShop, SqlShop
from lastmile.sim import simulator
from lastmile.store import queries, schema
from lastmile.store.db import batch_key_for, prepare, upsert

from builders import raw_customer, raw_line, raw_order, raw_shipment, write_shop

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)


def sim_tables(sim_dir: Path) -> dict[str, pd.DataFrame]:
    return {e: pd.read_csv(sim_dir / f"{e}.csv", dtype=str, keep_default_na=False)
            for e in ("customers", "subscriptions", "orders", "order_lines", "shipments")}


def sim_consistent_subset(tables: dict[str, pd.DataFrame], n: int) -> dict[str, pd.DataFrame]:
    """The first `n` shipments with their order lines, orders, customers and subscriptions."""
    ships = tables["shipments"].head(n)
    lines = tables["order_lines"][tables["order_lines"]["order_line_id"].isin(ships["order_line_id"])]
    placed = tables["orders"][tables["orders"]["order_id"].isin(lines["order_id"])]
    custs = tables["customers"][tables["customers"]["customer_id"].isin(placed["customer_id"])]
    subs = tables["subscriptions"][tables["subscriptions"]["customer_id"].isin(custs["customer_id"])]
    return {"customers": custs, "subscriptions": subs, "orders": placed, "order_lines": lines, "shipments": ships}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_source_reads_csv_and_parquet_exports_the_same_way(tmp_path, sim_dir, fmt):
    tables = sim_consistent_subset(sim_tables(sim_dir), 50)
    for name, frame in tables.items():
        frame = frame.copy()
        if fmt == "parquet":
            # a typed export: real timestamps and dates, as a warehouse writes them
            for col in ("placed_at", "created_at"):
                if col in frame:
                    frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
            frame.to_parquet(tmp_path / f"{name}.parquet")
        else:
            frame.to_csv(tmp_path / f"{name}.csv", index=False)
    raw = FileShop(tmp_path).load(AS_OF)
    valid = orders.validate(raw, as_of=AS_OF)
    assert len(valid.orders) + sum(r.source == "orders" for r in valid.rejections) == len(tables["orders"])
    assert valid.shipments and all(s["created_at"].tzinfo is not None for s in valid.shipments)
    assert {s["shipment_id"] for s in valid.shipments} == set(tables["shipments"]["shipment_id"])
    # only what the simulator injects (bad e-mails, a duplicated order id), each with its file and row
    assert {r.file for r in valid.rejections} <= {f"customers.{fmt}", f"orders.{fmt}"}
    assert all(r.row > 0 for r in valid.rejections)


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


SHIPMENT_COLUMNS = ("shipment_id, order_line_id, order_id, customer_id, carrier, service, tracking_code, created_at, "
                    "promised_date, origin, destination, dest_tz")


def test_sql_source_reads_incrementally_and_keeps_naive_timestamps_out(tmp_path):
    # (SQLite compares timestamps as text, so updated_at uses its own 'YYYY-MM-DD HH:MM:SS' form.)
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        for name, cols in (("customers", "customer_id, name, email, tz"), ("orders", "order_id, customer_id, "
                           "placed_at, currency"), ("order_lines", "order_line_id, order_id, sku, description, "
                           "quantity"), ("shipments", SHIPMENT_COLUMNS)):
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
        return {"account": account, "batch_key": batch_key_for(at), "vendor": "easypost", "as_of": at,
                "ok": ok, "shipments_asked": 1, "trackers_received": 1, "trackers_updated": 0, "scans_new": 0,
                "error": None if ok else "EasyPostUnavailable: gave up"}
    with prepare(settings.db_url).begin() as conn:
        upsert(conn, schema.feed_health, [row("easypost_a", 1, True), row("easypost_b", 2, True),
                                          row("easypost_b", 0, False), row("easypost_c", 7, True)])
        states = queries.feed_states(conn, settings, AS_OF)
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
    from lastmile.core import detection

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


# --------------------------------------------------------------------------- whole files: fail naming the file


def test_an_empty_orders_file_fails_naming_the_file(tmp_path):
    write_shop(tmp_path)
    (tmp_path / "orders.csv").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"orders\.csv: the file is empty"):
        FileShop(tmp_path).load(AS_OF)


def test_a_header_only_file_is_zero_rows(tmp_path):
    write_shop(tmp_path)
    (tmp_path / "shipments.csv").write_text(",".join(raw_shipment()) + "\n")
    raw = FileShop(tmp_path).load(AS_OF)
    assert raw.shipments == [] and raw.origins["shipments"] == []
    assert len(raw.orders) == 1


@pytest.mark.parametrize(("entity", "drop", "message"), [
    ("orders", ["currency"], r"orders\.csv: missing column currency "),
    # without it every message used to be suppressed while the run "succeeded"
    ("customers", ["email"], r"customers\.csv: missing column email "),
    ("shipments", ["dest_tz", "tracking_code"], r"shipments\.csv: missing columns tracking_code, dest_tz "),
])
def test_a_missing_column_fails_naming_the_file_and_the_column(tmp_path, entity, drop, message):
    write_shop(tmp_path)
    rows = pd.read_csv(tmp_path / f"{entity}.csv", dtype=str, keep_default_na=False).drop(columns=drop)
    rows.to_csv(tmp_path / f"{entity}.csv", index=False)
    with pytest.raises(ConfigError, match=message):
        FileShop(tmp_path).load(AS_OF)


def test_optional_columns_may_be_absent(tmp_path):
    customers = [{k: v for k, v in raw_customer().items() if k not in ("country", "locale")}]
    shipments = [{k: v for k, v in raw_shipment().items() if k not in ("sequence", "replaces_shipment_id")}]
    orders_ = [{k: v for k, v in raw_order().items() if k != "subscription_id"}]
    write_shop(tmp_path, customers=customers, shipments=shipments, orders=orders_)
    valid = orders.validate(FileShop(tmp_path).load(AS_OF), as_of=AS_OF)
    assert valid.rejections == [] and len(valid.shipments) == 1


def test_a_missing_column_in_a_parquet_file_fails_naming_the_file(tmp_path):
    write_shop(tmp_path)
    frame = pd.read_csv(tmp_path / "order_lines.csv", dtype=str, keep_default_na=False)
    frame.drop(columns=["quantity"]).to_parquet(tmp_path / "order_lines.parquet")
    (tmp_path / "order_lines.csv").unlink()
    with pytest.raises(ConfigError, match=r"order_lines\.parquet: missing column quantity"):
        FileShop(tmp_path).load(AS_OF)
    (tmp_path / "order_lines.parquet").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"order_lines\.parquet: not a readable Parquet file"):
        FileShop(tmp_path).load(AS_OF)


def test_a_csv_and_a_parquet_of_the_same_table_fail_rather_than_one_being_read_silently(tmp_path):
    write_shop(tmp_path)
    pd.read_csv(tmp_path / "orders.csv", dtype=str, keep_default_na=False).head(0).to_parquet(
        tmp_path / "orders.parquet")  # a stale copy beside the current export
    with pytest.raises(ConfigError, match=r"both orders\.csv and orders\.parquet"):
        FileShop(tmp_path).load(AS_OF)


def test_bad_bytes_in_a_column_nobody_reads_spoil_nothing(tmp_path):
    write_shop(tmp_path)
    path = tmp_path / "orders.csv"
    lines = path.read_bytes().split(b"\r\n")  # header, one order, ''
    lines[0] += b",note"
    lines[1] += b",\xff\xfe"
    path.write_bytes(b"\r\n".join(lines))
    valid = orders.validate(FileShop(tmp_path).load(AS_OF), as_of=AS_OF)
    assert valid.rejections == [] and len(valid.orders) == 1


def test_a_missing_column_in_a_shop_table_fails_naming_the_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        for name, cols in (("customers", "customer_id, name, email, tz"),
                           ("orders", "order_id, customer_id, placed_at"),  # no currency
                           ("order_lines", "order_line_id, order_id, sku, description, quantity"),
                           ("shipments", SHIPMENT_COLUMNS)):
            conn.execute(text(f"CREATE TABLE {name} ({cols}, updated_at TEXT)"))
        conn.execute(text("CREATE TABLE subscriptions (subscription_id, customer_id, cadence, sku, "
                          "next_delivery_date)"))  # no updated_at
    with pytest.raises(ConfigError, match="shop table subscriptions: missing column updated_at"):
        SqlShop(url, {}).load(AS_OF)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE subscriptions"))
    with pytest.raises(ConfigError, match="shop table orders: missing column currency"):
        SqlShop(url, {}).load(AS_OF)
    engine.dispose()


# --------------------------------------------------------------------------- bytes that are not UTF-8


def test_rows_with_bytes_that_are_not_utf8_are_quarantined_and_the_others_go_on(tmp_path):
    write_shop(tmp_path, customers=[raw_customer(), raw_customer(customer_id="C002", email="ada@example.org"),
                                    raw_customer(customer_id="C003", email="grace@example.org")],
               order_lines=[raw_line(), raw_line(order_line_id="NW-10482-2"), raw_line(order_line_id="NW-10482-3")])
    # A Latin-1 export: 'Café' and 'Zoë' as single bytes, in row 2 of each file.
    lines = (tmp_path / "order_lines.csv").read_bytes().split(b"\r\n")
    lines[2] = lines[2].replace(b"Ethiopia", b"Caf\xe9")
    (tmp_path / "order_lines.csv").write_bytes(b"\r\n".join(lines))
    people = (tmp_path / "customers.csv").read_bytes().split(b"\r\n")
    people[2] = people[2].replace("Zoë".encode(), b"Zo\xeb")
    (tmp_path / "customers.csv").write_bytes(b"\r\n".join(people))

    raw = FileShop(tmp_path).load(AS_OF)
    valid = orders.validate(raw, as_of=AS_OF)

    assert [ln["order_line_id"] for ln in valid.order_lines] == ["NW-10482-1", "NW-10482-3"]
    assert [c["customer_id"] for c in valid.customers] == ["C001", "C003"]
    found = {(r.source, r.record_id, r.field, r.file, r.row, r.reason) for r in valid.rejections}
    assert found == {("order_lines", "NW-10482-2", "description", "order_lines.csv", 2, "not valid UTF-8"),
                     ("customers", "C002", "name", "customers.csv", 2, "not valid UTF-8")}
    for rejection in valid.rejections:
        json.loads(rejection.payload)
        rejection.payload.encode("utf-8")  # storable: the odd byte is shown as \xNN
        assert "Zo" not in rejection.payload and "Zo" not in rejection.message()  # the name is redacted
    line_payload = json.loads(next(r for r in valid.rejections if r.source == "order_lines").payload)
    assert line_payload["description"].startswith("Caf\\xe9")


def test_a_byte_order_mark_is_tolerated(tmp_path):
    write_shop(tmp_path)
    path = tmp_path / "customers.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    valid = orders.validate(FileShop(tmp_path).load(AS_OF), as_of=AS_OF)
    assert valid.rejections == [] and [c["customer_id"] for c in valid.customers] == ["C001"]


def test_a_row_with_the_wrong_number_of_fields_or_a_bad_updated_at_is_quarantined_alone(tmp_path):
    write_shop(tmp_path, order_lines=[raw_line(updated_at="2026-11-19T10:00:00Z"),
                                      raw_line(order_line_id="NW-10482-2", updated_at="last tuesday"),
                                      raw_line(order_line_id="NW-10482-3", updated_at=""),
                                      raw_line(order_line_id="NW-10482-5", updated_at="2026-11-19T10:00:00")])
    path = tmp_path / "order_lines.csv"
    path.write_text(path.read_text().rstrip("\n") + "\nNW-10482-4,NW-10482,SKU,\"desc, with comma\",1,,extra\n")
    valid = orders.validate(FileShop(tmp_path).load(AS_OF), as_of=AS_OF)

    assert [ln["order_line_id"] for ln in valid.order_lines] == ["NW-10482-1", "NW-10482-3"]
    found = {(r.record_id, r.field, r.row) for r in valid.rejections}
    # a time without an offset is not taken as "no time": when it changed cannot be known
    assert found == {("NW-10482-2", "updated_at", 2), ("NW-10482-5", "updated_at", 4), ("NW-10482-4", "(row)", 5)}


# --------------------------------------------------------------------------- places


def test_file_rows_keep_their_place_beside_them_never_in_them(tmp_path):
    write_shop(tmp_path, orders=[raw_order(), raw_order(order_id="NW-2", updated_at="2026-11-21T10:00:00Z"),
                                 raw_order(order_id="NW-3", currency="EURO")])
    raw = FileShop(tmp_path).load(AS_OF)
    assert [o["order_id"] for o in raw.orders] == ["NW-10482", "NW-3"]  # NW-2 changed after as_of: waits
    assert [(o.file, o.row) for o in raw.origins["orders"]] == [("orders.csv", 1), ("orders.csv", 3)]
    assert all(set(row) <= set(raw_order()) | {"updated_at"} for row in raw.orders)
    (rejection,) = orders.validate(raw, as_of=AS_OF).rejections
    assert (rejection.record_id, rejection.field, rejection.file, rejection.row) == ("NW-3", "currency",
                                                                                   "orders.csv", 3)
    assert "orders.csv" in rejection.message() and "row 3" in rejection.message()


def test_sql_rows_are_placed_in_their_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        for name, cols in (("customers", "customer_id, name, email, tz"),
                           ("orders", "order_id, customer_id, placed_at, currency"),
                           ("order_lines", "order_line_id, order_id, sku, description, quantity"),
                           ("shipments", SHIPMENT_COLUMNS)):
            conn.execute(text(f"CREATE TABLE {name} ({cols}, updated_at TEXT)"))
        conn.execute(text("INSERT INTO customers VALUES ('C1', 'Ada', 'ada@example.org', 'Europe/London', "
                          "'2026-11-01 10:00:00+00:00')"))
        for oid, currency in (("O1", "usd"), ("O1", "eur"), ("O1", "gbp"), ("", "usd"), ("", "usd"),
                              ("O2", "EURO")):
            conn.execute(text("INSERT INTO orders VALUES (:oid, 'C1', '2026-11-01T10:00:00+00:00', :cur, "
                              "'2026-11-01 10:00:00+00:00')"), {"oid": oid, "cur": currency})
    valid = orders.validate(SqlShop(url, {}).load(AS_OF), as_of=AS_OF)
    engine.dispose()

    assert [o["order_id"] for o in valid.orders] == ["O1"]
    found = sorted((r.record_id, r.field, r.file, r.row) for r in valid.rejections)
    # a table has no row numbers (row 0), but repeated or empty ids get their position in the read
    assert found == [("(empty)", "order_id", "shop table orders", 4), ("(empty)", "order_id", "shop table orders", 5),
                     ("O1", "order_id", "shop table orders", 2), ("O1", "order_id", "shop table orders", 3),
                     ("O2", "currency", "shop table orders", 0)]
