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


def _delivered(carrier, service, gaps, waits=None):
    import pandas as pd

    return pd.DataFrame({"carrier": carrier, "service": service, "max_gap_bd": gaps,
                         "pickup_wait_bd": waits if waits is not None else [1] * len(gaps)})


def test_a_carrier_that_scans_only_milestones_is_not_called_stalled_or_lost_for_its_normal_silence():
    import pandas as pd

    from lastmile.core.thresholds import ThresholdTable, learned

    # A postal service whose parcels go silent from hand-over to delivery: 5 to 12 business days,
    # a few 20. A carrier that scans daily: one or two days between scans.
    post = _delivered("Post", "standard", [5, 6, 7, 8, 9, 10, 11, 12] * 12 + [20] * 4, [1, 2, 3] * 32 + [6] * 4)
    daily = _delivered("UPS", "Ground", [1, 2] * 40)
    table = learned(ThresholdTable(), pd.concat([post, daily], ignore_index=True))
    post_t, ups_t = table.for_shipment("Post", "standard"), table.for_shipment("UPS", "Ground")
    assert post_t.stalled_after >= 12, "a silence 95% of its delivered parcels lived through is normal"
    assert post_t.lost_after >= 20 and post_t.lost_after >= post_t.stalled_after + 2, "lost needs more evidence"
    assert post_t.pickup_after >= 3
    assert ups_t == Thresholds(), "the configured values are floors: a brisk carrier keeps them"


def test_too_few_delivered_parcels_keep_the_configured_thresholds():
    from lastmile.core.thresholds import ThresholdTable, learned

    table = learned(ThresholdTable(), _delivered("Post", "standard", [15] * 29, [9] * 29))
    assert table.for_shipment("Post", "standard") == Thresholds()


def test_learned_thresholds_judge_each_destination_by_its_own_day():
    import pandas as pd

    from lastmile.core.thresholds import ThresholdTable, ZonedThresholds, learned

    learned_table = learned(ThresholdTable(), _delivered("UPS", "Ground", [9] * 40))
    zoned = ZonedThresholds({"Europe/Berlin": learned_table}, ThresholdTable())
    ships = pd.DataFrame({"carrier": ["UPS", "UPS"], "service": ["Ground", "Ground"],
                          "dest_tz": ["America/New_York", "Europe/Berlin"]}, index=[7, 3])
    cols = zoned.columns(ships)
    assert list(cols.index) == [7, 3]
    assert cols.loc[7, "stalled_after"] == 3 and cols.loc[3, "stalled_after"] == 9


def test_a_slow_lane_learns_its_own_rhythm_and_a_thin_lane_follows_its_service():
    import pandas as pd

    from lastmile.core.thresholds import ThresholdTable, learned

    def lane(destination, gaps):
        return _delivered("Post", "standard", gaps).assign(origin="SP", destination=destination)

    samples = pd.concat([lane("BR-NORTH", [12, 14, 16, 18] * 10), lane("BR-SOUTH", [2, 3] * 20),
                         lane("BR-ISLAND", [30] * 5)], ignore_index=True)
    table = learned(ThresholdTable(), samples)
    north = table.for_shipment("Post", "standard", "SP", "BR-NORTH")
    south = table.for_shipment("Post", "standard", "SP", "BR-SOUTH")
    island = table.for_shipment("Post", "standard", "SP", "BR-ISLAND")
    assert north.stalled_after >= 18 and south.stalled_after == 3, "each lane by its own parcels"
    assert island == table.for_shipment("Post", "standard"), "five parcels are too few: the service decides"


def test_before_a_carrier_s_rhythm_is_known_a_silence_is_never_called_lost():
    import pandas as pd

    from lastmile.core.thresholds import ThresholdTable, ZonedThresholds, learned

    # A parcel silent for 8 business days with a carrier the shop has delivered only 5 parcels with.
    ships = [shipment("S1", created=LABEL, promised="2026-11-20")]
    scans = moving("S1")
    as_of = "2026-11-16T16:00:00+00:00"
    cold = learned(ThresholdTable(), _delivered("UPS", "Ground", [1, 2, 1, 2, 1]), carriers=["UPS"])
    zoned = ZonedThresholds({"America/New_York": cold}, ThresholdTable())
    types = set(detect(*frames(ships, scans), utc(as_of), zoned)["exception_type"])
    assert "lost" not in types and "stalled" in types, "no wolf cried before the rhythm is known"
    warm = learned(ThresholdTable(), _delivered("UPS", "Ground", [1, 2] * 20), carriers=["UPS"])
    zoned = ZonedThresholds({"America/New_York": warm}, ThresholdTable())
    assert "lost" in set(detect(*frames(ships, scans), utc(as_of), zoned)["exception_type"])
    configured = ThresholdTable(overrides={("UPS", None): Thresholds()})  # ops set UPS's thresholds
    zoned = ZonedThresholds({"America/New_York": learned(configured, pd.DataFrame(
        columns=["carrier", "service", "max_gap_bd", "pickup_wait_bd"]), carriers=["UPS"])}, configured)
    assert "lost" in set(detect(*frames(ships, scans), utc(as_of), zoned)["exception_type"])


def test_a_kept_table_is_the_learned_one_for_any_batch_of_carriers():
    """A table learned from every carrier, kept as JSON and read back, judges a batch exactly as
    learning it for that batch's carriers alone would (a carrier never delivered: a cold start)."""
    import json

    import pandas as pd

    from lastmile.core.thresholds import ThresholdTable, cold_started, learned

    samples = pd.concat([_delivered("UPS", "Ground", [1, 2, 6] * 20).assign(origin="US-TX", destination="US-NY"),
                         _delivered("DHL", "Express", [1, 2]).assign(origin="DE", destination="FR")],
                        ignore_index=True)
    configured = ThresholdTable(overrides={("FedEx", None): Thresholds(4, 9, 3)})
    kept = ThresholdTable.from_json(json.loads(json.dumps(learned(configured, samples, ["UPS", "DHL"]).to_json())))
    for batch in (["UPS"], ["DHL", "GLS"], ["FedEx", "GLS", "UPS"]):
        for carrier, service, lane in (("UPS", "Ground", ("US-TX", "US-NY")), ("DHL", "Express", ("DE", "FR")),
                                       ("GLS", "Parcel", ("DE", "AT")), ("FedEx", "Home", ("US", "US"))):
            if carrier in batch:
                assert (cold_started(kept, configured, batch).for_shipment(carrier, service, *lane)
                        == learned(configured, samples, batch).for_shipment(carrier, service, *lane))
    assert not cold_started(kept, configured, ["GLS"]).for_shipment("GLS", "Parcel").lost_by_silence
