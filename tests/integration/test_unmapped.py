"""A carrier code our vocabulary does not know is shown to ops, never guessed away."""

from __future__ import annotations

from datetime import timedelta

from lastmile.reporting.summary import format_summary

from tiny_shop import TinyShop, day, run


def test_an_unknown_carrier_code_is_counted_in_the_run_summary(tmp_path):
    shop = TinyShop(tmp_path / "shop", lines=2)
    settings = shop.settings(f"sqlite:///{tmp_path / 'history.db'}", tmp_path / "out")
    run(settings, shop, day(0))
    shop.scans.append({"shipment_id": "SO1-1-1", "occurred_at": day(1) - timedelta(hours=2),
                       "status": "unmapped", "reason": "easypost:in_transit/sorted_by_robot", "message": "Sorted"})
    summary = run(settings, shop, day(1))
    assert summary["unmapped_codes_this_run"] == {"easypost:in_transit/sorted_by_robot": 1}
    text = format_summary(summary)
    assert "unmapped carrier codes  new this run: easypost:in_transit/sorted_by_robot 1" in text and "ALERT" in text
