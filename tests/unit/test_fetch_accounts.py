"""fetch_tracking through each vendor's account: what lands in the history and in feed_health."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
from servers.aftership import aftership_server, checkpoint  # noqa: F401 - pytest fixture

from lastmile.carriers.accounts import TrackingAccount
from lastmile.config import Settings
from lastmile.steps import pipeline
from lastmile.store import progress, schema
from lastmile.store.db import prepare, upsert

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)


def shipment(sid: str, code: str, account: str) -> dict:
    return {"shipment_id": sid, "order_line_id": f"L-{sid}", "order_id": "O1", "customer_id": "C1",
            "carrier": "USPS", "service": "Priority", "tracking_code": code,
            "created_at": datetime(2026, 11, 16, 15, tzinfo=UTC), "promised_date": date(2026, 11, 19),
            "origin": "US-HOUSTON", "destination": "US-BROOKLYN", "dest_tz": "America/New_York", "sequence": 1,
            "tracking_account": account}


@pytest.fixture()
def settings(tmp_path) -> Settings:
    s = Settings.from_env({"LASTMILE_OUT_DIR": str(tmp_path), "LASTMILE_TRACKING_ACCOUNTS": "aftership_default"})
    with prepare(s.db_url).begin() as conn:
        upsert(conn, schema.shipments, [shipment("S1", "AS1000000001", "aftership_default"),
                                        shipment("S2", "AS1000000002", "aftership_default")])
        progress.track(conn, ["S1", "S2"])
    return s


def test_an_aftership_account_feeds_the_history(aftership_server, settings):  # noqa: F811
    aftership_server.add_tracking("AS1000000001", checkpoints=[
        checkpoint("InfoReceived", "InfoReceived_001", "2026-11-16T10:00:00-05:00", "Label created"),
        checkpoint("InTransit", "InTransit_002", "2026-11-17T09:00:00-06:00", "Arrived at facility"),
        checkpoint("Exception", "Exception_013", "2026-11-19T09:00:00-06:00", "Package lost"),
    ])
    aftership_server.add_tracking("AS1000000002", checkpoints=[
        checkpoint("InTransit", "InTransit_002", "2026-11-17T09:00:00-06:00", "Arrived at facility"),
        checkpoint("Delivered", "Delivered_001", "2026-11-18T16:00:00-05:00", "Delivered"),
    ])
    account = TrackingAccount("aftership_default", "aftership", api_key=aftership_server.api_key,
                              base_url=aftership_server.url)
    counts = pipeline.fetch_tracking(settings, AS_OF, account)
    assert counts["ok"] and counts["trackers_updated"] == 2 and counts["scans_new"] == 5
    with prepare(settings.db_url).connect() as conn:
        scans = pd.read_sql(schema.scans.select(), conn)
        health = pd.read_sql(schema.feed_health.select(), conn)
    by = {(r.shipment_id, r.carrier_status_detail): (r.status, r.reason, r.utc_offset_minutes)
          for r in scans.itertuples()}
    assert by[("S1", "Exception_013")] == ("failed", "lost", -360)  # the carrier's own offset kept
    assert by[("S2", "Delivered_001")][0] == "delivered"
    assert health.iloc[0]["ok"] and health.iloc[0]["vendor"] == "aftership"
    # the lost parcel is detected as lost from the carrier's word
    pipeline.detect_exceptions(settings, AS_OF)
    with prepare(settings.db_url).connect() as conn:
        dets = pd.read_sql(schema.detections.select(), conn)
    assert "lost" in set(dets.loc[dets["shipment_id"] == "S1", "exception_type"])


def test_an_aftership_outage_is_recorded_and_raised(aftership_server, settings):  # noqa: F811
    aftership_server.script(*([500] * 10))
    account = TrackingAccount("aftership_default", "aftership", api_key=aftership_server.api_key,
                              base_url=aftership_server.url, timeout=2)
    with pytest.raises(pipeline.FeedDown, match="aftership_default"):
        pipeline.fetch_tracking(settings, AS_OF, account)
    with prepare(settings.db_url).connect() as conn:
        health = pd.read_sql(schema.feed_health.select(), conn)
    assert not health.iloc[0]["ok"] and "500" in health.iloc[0]["error"]
    assert aftership_server.api_key not in health.iloc[0]["error"]


# -- an account whose vendor lists what changed (AfterShip's updated_at_min)

T0 = AS_OF  # 14:00Z: the day's first fetch asks about every parcel in flight
DAY_START = datetime(2026, 11, 20, 0, tzinfo=UTC)


def _scan_ids(url: str) -> dict[str, str]:
    with prepare(url).connect() as conn:
        return {r.scan_id: r.shipment_id for r in conn.execute(schema.scans.select())}


def _codes_asked(server) -> set[str]:
    return {code for r in server.requests.snapshot() if r.method == "GET"
            for code in ",".join(r.query.get("tracking_numbers", [])).split(",") if code}


def _history(tmp_path, name: str) -> Settings:
    s = Settings.from_env({"LASTMILE_OUT_DIR": str(tmp_path / name), "LASTMILE_TRACKING_ACCOUNTS": "aftership_default"})
    with prepare(s.db_url).begin() as conn:
        upsert(conn, schema.shipments, [shipment(f"S{n}", f"AS100000000{n}", "aftership_default") for n in (1, 2, 3)])
        progress.track(conn, ["S1", "S2", "S3"])
    return s


def _hours(server, settings: Settings, monkeypatch=None) -> list[dict]:
    """Four hourly fetches of one account while the carrier moves: what each fetch counted."""
    from lastmile.steps import fetch_tracking as step

    if monkeypatch is not None:  # the same hours with every fetch asking about every parcel
        monkeypatch.setattr(step, "lists_changes", lambda account: False)
    account = TrackingAccount("aftership_default", "aftership", api_key=server.api_key, base_url=server.url)
    at = [T0.replace(hour=h) for h in (14, 15, 16, 17)]
    counts = [pipeline.fetch_tracking(settings, at[0], account)]
    # 14:40: S1 moves; a new parcel S4 is labelled (the carrier does not know it yet); S2, S3 stay quiet.
    server.add_checkpoints("AS1000000001", [checkpoint("InTransit", "InTransit_002", "2026-11-20T08:30:00-06:00",
                                                       "Departed facility")], updated_at=at[0].replace(minute=40))
    with prepare(settings.db_url).begin() as conn:
        upsert(conn, schema.shipments, [{**shipment("S4", "AS1000000004", "aftership_default"),
                                         "created_at": at[0].replace(minute=45)}])
        progress.track(conn, ["S4"])
    counts.append(pipeline.fetch_tracking(settings, at[1], account))
    # 15:50: S3 is delivered; S4 is picked up.
    server.add_checkpoints("AS1000000003", [checkpoint("Delivered", "Delivered_001", "2026-11-20T09:40:00-06:00",
                                                       "Delivered")], updated_at=at[1].replace(minute=50))
    server.add_checkpoints("AS1000000004", [checkpoint("InTransit", "InTransit_001", "2026-11-20T09:45:00-06:00",
                                                       "Picked up")], updated_at=at[1].replace(minute=52))
    counts.append(pipeline.fetch_tracking(settings, at[2], account))
    # 16:05: a checkpoint AfterShip recorded late, for a scan that happened before the last fetch.
    server.add_checkpoints("AS1000000002", [checkpoint("InTransit", "InTransit_002", "2026-11-20T09:50:00-06:00",
                                                       "Arrived at facility")], updated_at=at[2].replace(minute=5))
    counts.append(pipeline.fetch_tracking(settings, at[3], account))
    return counts


def test_an_account_that_lists_changes_is_asked_what_changed_and_ends_with_the_same_history(tmp_path, monkeypatch):
    from servers.aftership import AfterShipServer

    results = {}
    for mode in ("changes", "poll"):
        with AfterShipServer(clock_start=DAY_START) as server:
            for n in (1, 2, 3):
                server.add_tracking(f"AS100000000{n}", checkpoints=[checkpoint(
                    "InTransit", "InTransit_002", "2026-11-19T09:00:00-06:00", "Arrived at facility")])
            settings = _history(tmp_path, mode)
            counts = _hours(server, settings, monkeypatch if mode == "poll" else None)
            results[mode] = (counts, _scan_ids(settings.db_url), _codes_asked(server))
    (listed, scans, asked), (polled, polled_scans, _) = results["changes"], results["poll"]
    # Every hour stored the same scans as asking about every parcel would have...
    assert scans == polled_scans and len(scans) == 7 and sorted(set(scans.values())) == ["S1", "S2", "S3", "S4"]
    assert [c["scans_new"] for c in listed] == [c["scans_new"] for c in polled] == [3, 1, 2, 1]
    # ...but after the day's first fetch only a parcel the carrier could not know was asked about by code.
    assert listed[0]["changes_since"] is None and listed[0]["trackers_polled"] == 3
    assert [c["changes_since"] for c in listed[1:]] == [
        T0.replace(hour=h, minute=45).isoformat() for h in (13, 14, 15)]  # the previous fetch, less 15 min
    assert [c["trackers_polled"] for c in listed[1:]] == [1, 0, 0]  # S4, then no one
    assert [c["trackers_polled"] for c in polled] == [3, 4, 4, 3]  # S3's delivery read at 16:00
    assert asked == {"AS1000000001", "AS1000000002", "AS1000000003", "AS1000000004"}


def test_a_listing_starts_from_the_last_fetch_that_succeeded_and_never_serves_a_past_instant(tmp_path):
    from servers.aftership import AfterShipServer

    from lastmile.steps.fetch_tracking import LISTING_OVERLAP, changes_since

    settings = _history(tmp_path, "h")
    with AfterShipServer(clock_start=DAY_START) as server:
        server.add_tracking("AS1000000001", checkpoints=[checkpoint(
            "InTransit", "InTransit_002", "2026-11-19T09:00:00-06:00", "Arrived at facility")])
        account = TrackingAccount("aftership_default", "aftership", api_key=server.api_key, base_url=server.url,
                                  timeout=2)
        pipeline.fetch_tracking(settings, T0, account)
        server.script(*([500] * 5))  # every attempt of the 15:00 listing
        with pytest.raises(pipeline.FeedDown):
            pipeline.fetch_tracking(settings, T0.replace(hour=15), account)
        assert server.pending == 0
        with prepare(settings.db_url).connect() as conn:
            # After a failed fetch, the next one lists from the last success: the gap is covered.
            assert changes_since(conn, settings, account, T0.replace(hour=16)) == T0 - LISTING_OVERLAP
            # A past instant run again, or the first fetch of a new day: every parcel is asked about.
            assert changes_since(conn, settings, account, T0.replace(hour=13)) is None
            assert changes_since(conn, settings, account, T0.replace(hour=14, minute=30)) is None  # 15:00 is recorded
            assert changes_since(conn, settings, account, datetime(2026, 11, 21, 1, tzinfo=UTC)) is None
            # A vendor that cannot list changes is always asked about every parcel.
            easypost = TrackingAccount("aftership_default", "easypost")
            assert changes_since(conn, settings, easypost, T0.replace(hour=16)) is None
        pipeline.fetch_tracking(settings, T0.replace(hour=16), account)
        with prepare(settings.db_url).connect() as conn:
            assert changes_since(conn, settings, account, T0.replace(hour=15, minute=30)) is None  # a later fetch exists
            assert changes_since(conn, settings, account, T0.replace(hour=17)) == T0.replace(hour=16) - LISTING_OVERLAP
            # Accounts configured otherwise, or the account moved elsewhere: parcels another account read
            # until now are unknown to this one, so it asks about every parcel.
            added = Settings.from_env({"LASTMILE_OUT_DIR": str(tmp_path / "h"),
                                       "LASTMILE_TRACKING_ACCOUNTS": "aftership_default,aftership_eu"})
            assert changes_since(conn, added, account, T0.replace(hour=17)) is None
            moved = TrackingAccount("aftership_default", "aftership", api_key=server.api_key,
                                    base_url=server.url + "/elsewhere")
            assert changes_since(conn, settings, moved, T0.replace(hour=17)) is None


def test_a_parcel_a_batch_loaded_since_the_last_fetch_is_asked_about_by_code(tmp_path):
    from servers.aftership import AfterShipServer

    settings = _history(tmp_path, "h")
    with AfterShipServer(clock_start=DAY_START) as server:
        account = TrackingAccount("aftership_default", "aftership", api_key=server.api_key, base_url=server.url)
        pipeline.fetch_tracking(settings, T0, account)
        server.reset()  # the carrier forgot every tracking: only a parcel asked about by code is registered
        # A shipment the shop exported late: created last week, written by the 15:00 batch.
        with prepare(settings.db_url).begin() as conn:
            upsert(conn, schema.shipments, [shipment("S5", "AS1000000005", "aftership_default")])
            upsert(conn, schema.batch_changes, [{"batch_key": "2026-11-20T15:00:00Z", "shipment_id": "S5"}])
            progress.track(conn, ["S5"])
        counts = pipeline.fetch_tracking(settings, T0.replace(hour=15), account)
    assert counts["changes_since"] is not None and counts["trackers_polled"] == 1
    assert [t["tracking_number"] for t in server.trackings()] == ["AS1000000005"]


def test_our_history_failing_during_a_listing_is_not_reported_as_the_carrier_down(tmp_path, monkeypatch):
    from servers.aftership import AfterShipServer
    from sqlalchemy.exc import OperationalError

    from lastmile.steps import fetch_tracking as step

    settings = _history(tmp_path, "h")
    with AfterShipServer(clock_start=DAY_START) as server:
        server.add_tracking("AS1000000001", checkpoints=[checkpoint(
            "InTransit", "InTransit_002", "2026-11-19T09:00:00-06:00", "Arrived at facility")])
        account = TrackingAccount("aftership_default", "aftership", api_key=server.api_key, base_url=server.url)
        pipeline.fetch_tracking(settings, T0, account)
        server.add_checkpoints("AS1000000001", [checkpoint("InTransit", "InTransit_002", "2026-11-20T08:30:00-06:00",
                                                           "Departed facility")], updated_at=T0.replace(minute=40))

        among = step._in_flight_among

        def broken(conn, settings, account, as_of, column, values):  # the lookup of the listed codes fails
            if column.name == "tracking_code":
                raise OperationalError("SELECT ...", {}, Exception("database is locked"))
            return among(conn, settings, account, as_of, column, values)

        monkeypatch.setattr(step, "_in_flight_among", broken)
        with pytest.raises(OperationalError):
            pipeline.fetch_tracking(settings, T0.replace(hour=15), account)
    with prepare(settings.db_url).connect() as conn:
        health = pd.read_sql(schema.feed_health.select(), conn)
    assert list(health["ok"]) == [True], "the carrier answered: no 'down' recorded for it"
