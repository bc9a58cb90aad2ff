"""What an hourly run looks at again: only what the shop or the carrier changed.

A files source hands over its whole export every hour; only new or changed records are validated,
written and re-detected. Which parcels are in flight is kept per shipment as scans arrive, and
answers for any instant (a rerun of an earlier hour sees the parcels in flight then).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from lastmile.shop import changes
from lastmile.shop.records import Origin, RawOrders
from lastmile.steps import pipeline
from lastmile.store import progress, schema
from lastmile.store.db import batch_key_for, prepare

from tiny_shop import TinyShop, day, run, store_scans


def _changed(settings, as_of) -> set[str]:
    bc = schema.batch_changes.c
    with prepare(settings.db_url).connect() as conn:
        return set(conn.execute(select(bc.shipment_id).where(bc.batch_key == batch_key_for(as_of))).scalars())


def test_an_unchanged_export_is_not_loaded_again_only_its_changed_rows_are(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop", lines=4)
    settings = shop.settings(db_url, tmp_path / "out")
    first = pipeline.load_orders(settings, day(0))
    assert first["shipments"] == 4 and _changed(settings, day(0)) == {f"SO{n}-1-1" for n in range(1, 5)}

    again = pipeline.load_orders(settings, day(0) + timedelta(hours=1))
    assert again["shipments"] == 0 and again["orders"] == 0 and again["unchanged_rows_skipped"] == 16
    assert _changed(settings, day(0) + timedelta(hours=1)) == set()

    shop.rows["orders"][2]["status"] = "cancelled"  # the shop cancels order 3
    shop.ship("O1-1", 1)                              # and reships line 1
    shop.write()
    later = pipeline.load_orders(settings, day(1))
    assert (later["orders"], later["shipments"]) == (1, 1)
    assert _changed(settings, day(1)) == {"SO3-1-1", "SO1-1-2"}


def test_a_quarantined_row_is_judged_again_when_its_parent_arrives(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop", lines=2)
    orphan_parent = next(o for o in shop.rows["orders"] if o["order_id"] == "O2")
    shop.rows["orders"].remove(orphan_parent)
    shop.write()
    settings = shop.settings(db_url, tmp_path / "out")
    assert pipeline.load_orders(settings, day(0))["quarantined"] == 2  # O2's line and shipment
    shop.rows["orders"].append(orphan_parent)
    shop.write()
    pipeline.load_orders(settings, day(1))
    with prepare(settings.db_url).connect() as conn:
        assert "SO2-1-1" in set(conn.execute(select(schema.shipments.c.shipment_id)).scalars())


def test_in_flight_answers_for_any_instant_whatever_order_scans_arrive(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop", lines=2)
    settings = shop.settings(db_url, tmp_path / "out")
    run(settings, shop, day(0))
    shop.scan("SO1-1-1", "delivered", day(2))
    store_scans(settings, shop.scans, day(3))  # seen on day 3, happened on day 2
    shop.scan("SO1-1-1", "returned", day(4))   # a later terminal scan does not move the finish
    store_scans(settings, shop.scans, day(5))

    def flying(at):
        with prepare(settings.db_url).connect() as conn:
            return set(conn.execute(progress.in_flight(at)).scalars())

    assert flying(day(5)) == {"SO2-1-1"}
    assert flying(day(2) - timedelta(minutes=1)) == {"SO1-1-1", "SO2-1-1"}, "an earlier hour sees it in flight"
    with prepare(settings.db_url).begin() as conn:
        progress.rebuild(conn)  # the same state, rebuilt from the scans in one pass
    assert flying(day(5)) == {"SO2-1-1"} and flying(day(2) - timedelta(minutes=1)) == {"SO1-1-1", "SO2-1-1"}
    with prepare(settings.db_url).connect() as conn:
        finished = conn.execute(select(schema.tracking_state.c.finished_at).where(
            schema.tracking_state.c.shipment_id == "SO1-1-1")).scalar_one()
    assert finished.replace(tzinfo=day(2).tzinfo) == day(2)


def test_digests_ignore_column_order_and_never_hide_a_duplicate_or_a_flawed_row():
    rows = [{"customer_id": "C1", "name": "A"}, {"name": "B", "customer_id": "C2"},
            {"customer_id": "C3", "name": "C"}, {"customer_id": "C3", "name": "C"},
            {"customer_id": "C4", "name": "D"}]
    origins = [Origin("customers.csv", n, (("name", "not valid UTF-8"),) if n == 5 else ()) for n in range(1, 6)]
    raw = RawOrders(customers=rows, subscriptions=[], orders=[], order_lines=[], shipments=[],
                    origins={"customers": origins})
    before = {"C1": changes.row_digest({"name": "A", "customer_id": "C1"}),
              "C2": changes.row_digest({"customer_id": "C2", "name": "changed"}),
              "C4": changes.row_digest(rows[4])}
    kept, digests, dropped = changes.changed_only(raw, lambda entity, ids: {i: before[i] for i in ids if i in before})
    assert dropped == 1
    assert [r["customer_id"] for r in kept.customers] == ["C2", "C3", "C3", "C4"]
    assert [o.row for o in kept.places("customers")] == [2, 3, 4, 5]
    assert set(digests["customers"]) == {"C2"}, "a duplicate or a flawed row is never remembered"


def test_a_full_collection_during_a_run_does_not_walk_the_loaded_code_again():
    # A fresh process, as an Airflow task or the CLI starts: what the steps' import loaded is frozen,
    # so a full garbage collection walks only what the run allocated since (gc.get_objects: what a
    # collection walks; frozen objects are not among them).
    import subprocess
    import sys

    probe = "import gc\nfrom lastmile.steps import pipeline\nprint(gc.get_freeze_count(), len(gc.get_objects()))"
    frozen, walked = map(int, subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                             check=True).stdout.split())
    assert walked < frozen / 20 and frozen > 10_000  # (pandas, SQLAlchemy, the rules: ~100,000 today)


def test_no_long_lived_airflow_process_freezes_its_objects():
    # The scheduler, the DAG processor, the API server and the triggerer load the plugins and parse
    # the DAG files; none of them may import the steps (and so freeze what they hold at that moment).
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    probe = ("import gc, pkgutil, importlib, runpy, sys\n"
             "import lastmile_airflow\n"
             "for m in pkgutil.iter_modules(lastmile_airflow.__path__): importlib.import_module('lastmile_airflow.' + m.name)\n"
             f"for dag in sorted(__import__('pathlib').Path({str(root / 'dags')!r}).glob('*.py')): runpy.run_path(str(dag))\n"
             "print(gc.get_freeze_count(), 'lastmile.steps.pipeline' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 False"  # (Airflow logs on stdout before it)

def test_detections_are_counted_by_type_open_and_in_all(db_url):
    from datetime import UTC, datetime

    from lastmile.store.db import upsert
    from lastmile.store.queries import detections_by_type

    mix = [("S1", "late", True), ("S2", "late", False), ("S3", "late", True), ("S1", "stalled", False),
           ("S4", "lost", True)]
    with prepare(db_url).begin() as conn:
        assert detections_by_type(conn) == ({}, {})
        upsert(conn, schema.current_detections, [
            {"shipment_id": sid, "exception_type": kind, "order_line_id": f"L-{sid}", "severity": 2, "open": is_open,
             "first_evidence_at": datetime(2026, 11, 20, tzinfo=UTC), "evidence": "{}", "batch_key": "b"}
            for sid, kind, is_open in mix])
        open_now, everything = detections_by_type(conn)
    assert open_now == {"late": 2, "lost": 1}
    assert everything == {"late": 3, "stalled": 1, "lost": 1}


def test_a_poll_asks_by_the_code_and_account_the_shop_sent_last(db_url, tmp_path):
    """tracking_state's copy of what a carrier is asked by follows the shipment through every load."""
    from datetime import UTC, date, datetime

    from lastmile.config import Settings
    from lastmile.steps.fetch_tracking import _in_flight
    from lastmile.store.db import upsert

    settings = Settings.from_env({"LASTMILE_DB_URL": db_url, "LASTMILE_OUT_DIR": str(tmp_path),
                                  "LASTMILE_TRACKING_ACCOUNTS": "easypost_us,easypost_eu"})
    created = datetime(2026, 11, 16, 15, tzinfo=UTC)

    def load(conn, sid: str, code: str, account: str | None) -> None:  # what load_orders writes
        upsert(conn, schema.shipments, [{
            "shipment_id": sid, "order_line_id": f"L-{sid}", "order_id": "O1", "customer_id": "C1",
            "carrier": "USPS", "service": "Priority", "tracking_code": code, "created_at": created,
            "promised_date": date(2026, 11, 19), "origin": "US-HOUSTON", "destination": "US-BROOKLYN",
            "dest_tz": "America/New_York", "sequence": 1, "tracking_account": account}],
            update=["tracking_code", "tracking_account"])
        progress.track(conn, [sid])

    engine = prepare(db_url)
    with engine.begin() as conn:
        load(conn, "S1", "9400100000000000000001", None)
        load(conn, "S2", "9400100000000000000002", None)
        progress.record_scans(conn, [{"shipment_id": "S2", "status": "delivered",
                                      "occurred_at": datetime(2026, 11, 18, 16, tzinfo=UTC)}])
        load(conn, "S1", "9400100000000000000009", "easypost_eu")  # relabelled, moved to the EU account

    def asked(account: str, at: datetime) -> list[tuple[str, str]]:
        with engine.connect() as conn:
            return sorted((p["shipment_id"], p["tracking_code"]) for p in _in_flight(conn, settings, account, at))

    assert asked("easypost_eu", datetime(2026, 11, 20, tzinfo=UTC)) == [("S1", "9400100000000000000009")]
    assert asked("easypost_us", datetime(2026, 11, 20, tzinfo=UTC)) == []  # S2 was delivered by then
    assert asked("easypost_us", datetime(2026, 11, 17, tzinfo=UTC)) == [("S2", "9400100000000000000002")]
    assert asked("easypost_us", datetime(2026, 11, 16, 14, tzinfo=UTC)) == []  # no label yet
    with engine.begin() as conn:
        progress.track(conn, ["S3"])  # known by id before its shipment is written: in flight, not polled
        flying = set(conn.execute(progress.in_flight(datetime(2026, 11, 20, tzinfo=UTC))).scalars())
    assert flying == {"S1", "S3"}
    assert asked("easypost_us", datetime(2026, 11, 20, tzinfo=UTC)) == []
    with engine.begin() as conn:
        load(conn, "S3", "9400100000000000000003", None)
    assert asked("easypost_us", datetime(2026, 11, 20, tzinfo=UTC)) == [("S3", "9400100000000000000003")]
