"""Thresholds per carrier and service: each parcel is judged by its own carrier's patience."""

from __future__ import annotations

import pytest

from lastmile.core.detection import detect
from lastmile.core.thresholds import DEFAULT_FILE, Thresholds, load

from builders import frames, scan, shipment, utc

LABEL = "2026-11-02T14:00:00+00:00"  # Monday


def moving(sid: str) -> list[dict]:
    return [scan(sid, LABEL, "pre_transit"), scan(sid, "2026-11-02T22:00:00+00:00"),
            scan(sid, "2026-11-03T15:00:00+00:00")]


def test_a_carrier_and_a_service_can_each_have_their_own_thresholds(tmp_path):
    config = tmp_path / "thresholds.toml"
    config.write_text("[default]\nstalled_after = 3\nlost_after = 7\n"
                      "[carrier.DHL]\nlost_after = 9\n"
                      '[carrier.USPS.service."Ground Advantage"]\nstalled_after = 4\n')
    table = load(config)
    assert table.for_shipment("DHL", "Paket") == Thresholds(3, 9, 2)
    assert table.for_shipment("USPS", "Ground Advantage") == Thresholds(4, 7, 2)
    assert table.for_shipment("UPS", "Ground") == Thresholds()

    ships = [shipment("S-UPS", created=LABEL, promised="2026-11-06") | {"carrier": "UPS"},
             shipment("S-DHL", created=LABEL, promised="2026-11-06") | {"carrier": "DHL"}]
    # Seven business days of silence (Nov 4-12) by Friday 13th: lost for UPS, only stalled for DHL.
    result = detect(*frames(ships, moving("S-UPS") + moving("S-DHL"), ()), utc("2026-11-13T16:00:00+00:00"), table)
    kinds = {(r.shipment_id, r.exception_type) for r in result.itertuples()}
    assert ("S-UPS", "lost") in kinds and ("S-DHL", "lost") not in kinds
    assert ("S-DHL", "stalled") in kinds


def test_the_shipped_file_holds_the_documented_defaults():
    assert load(DEFAULT_FILE).default == Thresholds(stalled_after=3, lost_after=7, pickup_after=2)


def test_a_mistyped_threshold_is_refused_with_its_place(tmp_path):
    config = tmp_path / "thresholds.toml"
    config.write_text("[carrier.DHL]\nlost_afer = 9\n")
    with pytest.raises(ValueError, match=r"carrier\.DHL.*lost_afer"):
        load(config)
    config.write_text("[default]\nstalled_after = 8\n")
    with pytest.raises(ValueError, match="stalled_after < lost_after"):
        load(config)
