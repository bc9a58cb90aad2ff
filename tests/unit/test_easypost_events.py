"""EasyPost's tracker webhook: verified, stored once, and read by the next hour instead of a poll."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import airflow  # noqa: F401  (puts the plugins folder on sys.path, as in every Airflow component)
import pytest
import requests
import uvicorn
from servers.easypost import EasyPostServer

from lastmile.carriers.accounts import TrackingAccount, account_from_fields, lists_changes
from lastmile.carriers.easypost_events import (
    is_signed_by_easypost,
    prune,
    pushed_trackers,
    record,
    signature_for,
)
from lastmile.config import Settings
from lastmile.steps import pipeline
from lastmile.store import progress, schema
from lastmile.store.db import prepare, upsert

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "easypost"
BODY = (FIXTURES / "webhook_event_body.json").read_bytes()
SECRET = "sécret"  # EasyPost's client libraries test with this one: NFKD turns é into e + U+0301
DAY = datetime(2026, 11, 20, tzinfo=UTC)


def test_the_signature_is_easyposts_hmac_of_the_raw_body_under_the_normalised_secret(tmp_path):
    # An HMAC computed by another implementation (OpenSSL) over the recorded event's bytes.
    key = tmp_path / "key"
    key.write_text("se\u0301cret")  # the secret in NFKD form, as EasyPost keys it
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"key:{key.read_text()}"],
                            input=BODY, capture_output=True, check=True).stdout.decode().split()[-1]
    assert signature_for(SECRET, BODY) == f"hmac-sha256-hex={digest}"
    for header in (f"hmac-sha256-hex={digest}", f"hmac-sha256-hex={digest.upper()}", f" hmac-sha256-hex={digest} "):
        assert is_signed_by_easypost(SECRET, BODY, header)
        assert is_signed_by_easypost("se\u0301cret", BODY, header)  # typed either way, the same secret
    assert not is_signed_by_easypost(SECRET, BODY + b" ", f"hmac-sha256-hex={digest}")  # another body
    assert not is_signed_by_easypost("secret", BODY, f"hmac-sha256-hex={digest}")  # another secret
    assert not is_signed_by_easypost(SECRET, BODY, digest)  # without EasyPost's prefix
    assert not is_signed_by_easypost(SECRET, BODY, None) and not is_signed_by_easypost("", BODY, digest)
    assert not is_signed_by_easypost(SECRET, BODY, "hmac-sha256-hex=é")  # not even ASCII: refused, no error


def _event(event_id: str, updated_at: datetime | None, estimate: str = "2026-11-23", tracker_id: str = "trk_1",
           created_at: datetime | None = None, **result) -> dict:
    """The recorded tracker.updated event, as EasyPost would push it about a tracker updated then."""
    event = json.loads(BODY)
    stamp = updated_at.isoformat().replace("+00:00", "Z") if updated_at else None
    created = created_at or updated_at
    event.update({"id": event_id, "created_at": created.isoformat().replace("+00:00", "Z") if created else None,
                  "result": {**event["result"], "id": tracker_id, "updated_at": stamp,
                             "est_delivery_date": f"{estimate}T00:00:00Z", **result}})
    return event


def test_a_pushed_tracker_is_stored_once_and_other_events_are_acknowledged_not_kept(db_url):
    engine = prepare(db_url)
    at = DAY.replace(hour=12)
    event = _event("evt_1", at - timedelta(minutes=1))
    assert record(engine, "easypost_default", event, at) == {"stored": 1, "duplicates": 0, "ignored": 0,
                                                              "quarantined": 0}
    # EasyPost retries a delivery it did not hear a 2xx for: the same event id is stored once.
    assert record(engine, "easypost_default", event, at + timedelta(minutes=1))["duplicates"] == 1
    assert record(engine, "easypost_default", {**event, "id": "evt_2", "description": "batch.created"}, at)[
        "ignored"] == 1
    # A time out of range is no time: as new as its delivery (not a 500 EasyPost would retry forever).
    ancient = _event("evt_5", None)
    ancient["result"]["updated_at"] = "0001-01-01T00:00:00+01:00"
    assert record(engine, "easypost_eu", ancient, at)["stored"] == 1
    # A captured body replayed days later (EasyPost signs no time): acknowledged, not kept.
    assert record(engine, "easypost_default", json.loads(BODY), at)["ignored"] == 1  # updated 2024-08-02
    broken = {**event, "id": "evt_3", "result": {**event["result"], "object": "Shipment", "signed_by": "Zoe Obrien"}}
    assert record(engine, "easypost_default", broken, at)["quarantined"] == 1
    assert record(engine, "easypost_default", ["not", "an", "event"], at)["quarantined"] == 1
    # Longer than the columns hold (Postgres would refuse the row and EasyPost retry it forever).
    assert record(engine, "easypost_default", _event("evt_4", at, tracking_code="9" * 65), at)["quarantined"] == 1
    assert record(engine, "easypost_default", _event("e" * 101, at), at)["quarantined"] == 1
    assert record(engine, "easypost_default", _event("evt_\x00", at), at)["quarantined"] == 1  # Postgres: no NUL
    with engine.connect() as conn:
        (tracker,) = pushed_trackers(conn, "easypost_default", at - timedelta(hours=1), at + timedelta(hours=1))
        quarantined = [dict(r) for r in conn.execute(schema.quarantine.select()).mappings()]
        assert pushed_trackers(conn, "easypost_default", at, at + timedelta(hours=1)) == []  # received before
        assert pushed_trackers(conn, "easypost_other", at - timedelta(hours=1), at) == []  # another account's
    assert tracker == event["result"]  # read back as pushed: the poll's parser reads it
    assert sorted((q["record_id"], q["field"]) for q in quarantined) == [
        ("(body)", "object"), ("e" * 100, "id"), ("evt_3", "result"), ("evt_4", "result.tracking_code"),
        ("evt_?", "id")]
    assert "Zoe" not in json.dumps(quarantined, default=str)  # who signed stays out of quarantine
    with engine.begin() as conn:
        assert prune(conn, "easypost_default", at + timedelta(days=2)) == 0
        assert prune(conn, "easypost_default", at + timedelta(days=2, seconds=1)) == 1


def test_a_listing_reads_each_trackers_newest_version_and_never_an_older_estimate(db_url):
    """A late retry of an older push, or a push older than the day's full read, carries an older
    estimate: read, it would replace the newer one."""
    engine = prepare(db_url)
    h = DAY.replace
    pushes = [  # (event, tracker updated at, estimate, received at[, tracker, event created at])
        ("evt_a", h(hour=14, minute=10), "2026-11-23", h(hour=14, minute=31)),
        ("evt_b", h(hour=14, minute=20), "2026-11-25", h(hour=14, minute=32)),
        ("evt_c", None, "2026-11-20", h(hour=14, minute=15)),  # no time: as new as its delivery
        ("evt_a", h(hour=14, minute=10), "2026-11-23", h(hour=15, minute=20)),  # retried: stored once
        ("evt_d", h(hour=14, minute=5), "2026-11-22", h(hour=15, minute=21)),  # its first delivery was lost
        ("evt_e", h(hour=9), "2026-11-21", h(hour=15, minute=22), "trk_3"),  # before the day's full read
        ("evt_f", h(hour=15, minute=10), "2026-11-26", h(hour=15, minute=23), "trk_2"),
        # Two versions updated in the same second: the event EasyPost created later wins, whichever came first.
        ("evt_g", h(hour=15, minute=30), "2026-11-27", h(hour=15, minute=31), "trk_4", h(hour=15, minute=30, second=0,
                                                                                         microsecond=500000)),
        ("evt_h", h(hour=15, minute=30), "2026-11-24", h(hour=15, minute=35), "trk_4", h(hour=15, minute=30, second=0,
                                                                                         microsecond=100000)),
        # A clock ahead (or a forged year) cannot outrank what follows: a version is no newer than its delivery.
        ("evt_i", datetime(2099, 1, 1, tzinfo=UTC), "2026-11-28", h(hour=15, minute=40), "trk_5"),
        ("evt_j", h(hour=15, minute=45), "2026-11-29", h(hour=15, minute=46), "trk_5"),
    ]
    for event_id, updated, estimate, received, *more in pushes:
        record(engine, "easypost_default", _event(event_id, updated, estimate, *more), received)
    with engine.connect() as conn:
        at_15 = pushed_trackers(conn, "easypost_default", h(hour=13, minute=45), h(hour=15))
        at_16 = pushed_trackers(conn, "easypost_default", h(hour=14, minute=45), h(hour=16), settled=h(hour=10))
    assert [(t["id"], t["est_delivery_date"][:10]) for t in at_15] == [("trk_1", "2026-11-25")]
    # 16:00: trk_1's late versions are older than the one 15:00 read; trk_3's is older than the day's
    # full read, which saw it or newer: its scans come, its estimate does not.
    assert [(t["id"], (t["est_delivery_date"] or "")[:10]) for t in at_16] == [
        ("trk_5", "2026-11-29"), ("trk_4", "2026-11-27"), ("trk_2", "2026-11-26"), ("trk_3", "")]
    assert at_16[-1]["tracking_details"]  # (its scans)


def test_what_a_carrier_gets_wrong_is_quarantined_scan_by_scan_and_our_own_errors_still_fail(monkeypatch):
    from lastmile.carriers import tracking
    from lastmile.carriers.tracking import parse_easypost

    good = json.loads(BODY)["result"]
    details = good["tracking_details"]
    odd = {**good, "tracking_code": "EZ2", "carrier_detail": "not an object",
           "tracking_details": ["not a scan", {**details[0], "tracking_location": "ORLANDO FL"},
                                {**details[1], "datetime": "0001-01-01T00:00:00+01:00"}, *details[2:]]}
    parsed = parse_easypost([("S1", good), ("S2", odd), ("S3", ["not", "a", "tracker"])], DAY)
    by_shipment = {sid: sum(1 for s in parsed.scans if s["shipment_id"] == sid) for sid in ("S1", "S2")}
    # The scan that is no object and the one whose time is out of range are refused; the rest of
    # that tracker is read (a location that is no object only loses the place).
    assert by_shipment == {"S1": len(details), "S2": len(details) - 1} and parsed.trackers_ok == 2
    assert sorted((r.record_id, r.field) for r in parsed.rejections) == [
        ("EZ2#0", "tracking_details"), ("EZ2#2", "datetime"), ("S3", "tracker")]
    # A fault of ours is not the carrier's: it fails the task instead of quarantining every tracker.
    def broken(*_: str) -> None:
        raise AttributeError("a bug of ours")

    monkeypatch.setattr(tracking, "_EASYPOST", dataclasses.replace(tracking._EASYPOST, to_status=broken))
    with pytest.raises(AttributeError):
        parse_easypost([("S1", good)], DAY)


def test_only_an_easypost_connection_with_a_webhook_secret_is_read_from_its_pushes():
    pushed = account_from_fields("easypost_default", "easypost", None, None, "EZAK1", {"webhook_secret": SECRET})
    assert lists_changes(pushed) and pushed.webhook_secret == SECRET and SECRET not in repr(pushed)
    assert not lists_changes(account_from_fields("easypost_default", "easypost", None, None, "EZAK1", {}))
    aftership = account_from_fields("aftership_default", "aftership", None, None, "k", {"webhook_secret": "x"})
    assert lists_changes(aftership) and aftership.webhook_secret == ""  # it lists changes; no pushes read


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """`app` on 127.0.0.1 over real HTTP (uvicorn, as Airflow's api-server serves plugin apps)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _shipment(n: int) -> dict:
    return {"shipment_id": f"S{n}", "order_line_id": f"L{n}", "order_id": "O1", "customer_id": "C1",
            "carrier": "USPS", "service": "Priority", "tracking_code": f"EZ100000000{n}",
            "created_at": DAY - timedelta(days=3), "promised_date": date(2026, 11, 23), "origin": "US-HOUSTON",
            "destination": "US-BROOKLYN", "dest_tz": "America/New_York", "sequence": 1,
            "tracking_account": "easypost_default"}


def _get_trackers(server: EasyPostServer) -> int:
    return sum(1 for r in server.requests.snapshot() if r.method == "GET")


def test_an_hour_reads_what_easypost_pushed_and_the_next_days_poll_mends_a_lost_push(tmp_path, monkeypatch):
    from lastmile_airflow import ops_view

    url = f"sqlite:///{tmp_path / 'lastmile.db'}"
    monkeypatch.setenv("LASTMILE_DB_URL", url)
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    monkeypatch.setenv("LASTMILE_TRACKING_ACCOUNTS", "easypost_default")
    settings = Settings.from_env({"LASTMILE_OUT_DIR": str(tmp_path), "LASTMILE_DB_URL": url,
                                  "LASTMILE_TRACKING_ACCOUNTS": "easypost_default"})
    with prepare(url).begin() as conn:
        upsert(conn, schema.shipments, [_shipment(n) for n in (1, 2, 3)])
        progress.track(conn, ["S1", "S2", "S3"])
    from lastmile.steps import fetch_tracking as step

    clock = {"now": DAY.replace(hour=14, minute=25)}
    monkeypatch.setattr(ops_view, "_now", lambda: clock["now"])
    monkeypatch.setattr(step, "_now", lambda: clock["now"])
    with EasyPostServer(clock_start=DAY - timedelta(days=3)) as carrier, serving(ops_view.create_app()) as ops:
        for n in (1, 2, 3):
            carrier.add_tracker(f"EZ100000000{n}", scanned_at=DAY - timedelta(days=2))
        monkeypatch.setenv("AIRFLOW_CONN_EASYPOST_DEFAULT", json.dumps({
            "conn_type": "easypost", "password": carrier.api_key, "host": carrier.url,
            "extra": {"webhook_secret": SECRET}}))
        account = TrackingAccount("easypost_default", "easypost", api_key=carrier.api_key, base_url=carrier.url,
                                  webhook_secret=SECRET)
        hook = f"{ops}/easypost/easypost_default/events"

        clock["now"] = DAY.replace(hour=14, minute=1)  # EasyPost asked at 14:01
        first = pipeline.fetch_tracking(settings, DAY.replace(hour=14), account)  # the day's first: in full
        asked_by_then = _get_trackers(carrier)
        # 14:20 S1 arrives at a facility with a new estimate, and EasyPost pushes it at 14:25;
        # 14:40 S2 moves, but that push is lost.
        carrier.add_scan("EZ1000000001", scanned_at=DAY.replace(hour=14, minute=20),
                         est_delivery_date="2026-11-27T00:00:00Z")
        clock["now"] = DAY.replace(hour=14, minute=25)
        pushed = carrier.push(hook, SECRET, "EZ1000000001")
        bare = requests.post(hook, data=b"{}", timeout=10).status_code  # no signature: refused before any lookup
        forged = carrier.push(hook, SECRET, "EZ1000000003", signature="hmac-sha256-hex=" + "0" * 64)
        unsigned = carrier.push(hook, "another secret", "EZ1000000003")
        elsewhere = [carrier.push(f"{ops}/easypost/{name}/events", SECRET, "EZ1000000003").status_code
                     for name in ("easypost_eu", "EASYPOST_DEFAULT", "Easypost_default")]  # no such account
        carrier.add_scan("EZ1000000002", scanned_at=DAY.replace(hour=14, minute=40))
        clock["now"] = DAY.replace(hour=15, minute=1)
        second = pipeline.fetch_tracking(settings, DAY.replace(hour=15), account)
        asked_in_second = _get_trackers(carrier) - asked_by_then
        clock["now"] = DAY + timedelta(days=1, minutes=1)
        next_day = pipeline.fetch_tracking(settings, DAY + timedelta(days=1), account)

    assert (pushed.status_code, pushed.json()["stored"]) == (200, 1)
    assert (bare, forged.status_code, unsigned.status_code, elsewhere) == (403, 403, 403, [503, 503, 503])
    # (the day the webhook is set up, every parcel's news came by the poll: said once)
    assert first["changes_since"] is None and (first["trackers_polled"], first["trackers_not_pushed"]) == (3, 3)
    # The hour after: no parcel asked about, EasyPost's API not called; S1's pushed scan stored.
    assert second["changes_since"] == DAY.replace(hour=13, minute=45).isoformat()
    assert (second["trackers_polled"], asked_in_second, second["trackers_listed"], second["scans_new"],
            second["trackers_updated"]) == (0, 0, 1, 1, 1)
    # The next day's first fetch asks about every parcel: S2's scan, whose push was lost, is read;
    # S1's is not new (the push stored the very scan a poll reads).
    assert (next_day["changes_since"], next_day["trackers_polled"], next_day["scans_new"]) == (None, 3, 1)
    assert next_day["trackers_not_pushed"] == 1  # S2: news EasyPost never pushed (ops are told in the log)
    with prepare(url).connect() as conn:
        seen = {(r.shipment_id, r.first_seen_at.hour) for r in conn.execute(schema.scans.select().where(
            schema.scans.c.occurred_at >= DAY.replace(hour=14)))}
    assert seen == {("S1", 15), ("S2", 0)}
    # The pushed tracker is newer than the day's full read: its estimate is read with its scan.
    with prepare(url).connect() as conn:
        estimates = {(r.est_delivery_date.isoformat(), r.observed_at.hour) for r in conn.execute(
            schema.estimates.select().where(schema.estimates.c.shipment_id == "S1"))}
    assert ("2026-11-27", 15) in estimates


def test_the_full_read_an_older_push_yields_to_is_when_easypost_was_actually_asked(db_url):
    """A queued or long full fetch reads EasyPost's present, later than its run's instant."""
    from lastmile.steps.fetch_tracking import read_in_full_at
    from lastmile.store.db import batch_key_for

    engine = prepare(db_url)
    account = TrackingAccount("easypost_default", "easypost", api_key="k", webhook_secret=SECRET)

    def fetched(hour: int, ok: bool, asked: datetime | None) -> None:
        at = DAY + timedelta(hours=hour)
        counts = {"asked_at": asked.isoformat()} if asked else {}
        with engine.begin() as conn:
            upsert(conn, schema.feed_health, [{
                "account": "easypost_default", "batch_key": batch_key_for(at), "vendor": "easypost", "as_of": at,
                "ok": ok, "shipments_asked": 1, "trackers_received": 1, "trackers_updated": 0, "scans_new": 0}],
                update=["ok"])
            upsert(conn, schema.run_steps, [{"batch_key": batch_key_for(at), "step": "fetch_tracking[easypost_default]",
                                             "as_of": at, "counts": json.dumps(counts)}], update=["counts"])

    fetched(-1, True, None)  # the day before's last hour: another day, not counted
    with engine.connect() as conn:
        assert read_in_full_at(conn, account, DAY.replace(hour=2)) is None
    fetched(0, True, DAY.replace(minute=7))  # queued: EasyPost asked at 00:07
    fetched(1, True, DAY.replace(hour=1, minute=1))
    with engine.connect() as conn:
        assert read_in_full_at(conn, account, DAY.replace(hour=2)) == DAY.replace(minute=7)
        assert read_in_full_at(conn, account, DAY.replace(hour=0, minute=30)) == DAY.replace(minute=7)
    fetched(0, True, None)  # a fetch recorded before asked_at was: its run's instant
    with engine.connect() as conn:
        assert read_in_full_at(conn, account, DAY.replace(hour=2)) == DAY
