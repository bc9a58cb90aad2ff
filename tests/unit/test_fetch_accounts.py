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
