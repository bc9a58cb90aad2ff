"""The simulated shop: realistic, seeded, and shaped like the real feeds it stands in for."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest
import yaml

from lastmile.sim import simulator

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop():
    return simulator.generate()


def test_same_seed_same_shop_in_another_process(tmp_path):
    digests = []
    for name in ("a", "b"):
        folder = tmp_path / name
        subprocess.run([sys.executable, "-c", f"from pathlib import Path; from lastmile.sim import simulator; "
                        f"simulator.write(simulator.generate(), Path({str(folder)!r}))"], check=True)
        digests.append({p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())})
    assert digests[0] == digests[1]


def test_a_realistic_shop(shop):
    assert 2500 <= len(shop.orders) <= 3500
    tzs = Counter(c["tz"] for c in shop.customers)
    assert {"America/New_York", "America/Los_Angeles", "Europe/Berlin", "Europe/London"} <= set(tzs)
    assert {s["cadence"] for s in shop.subscriptions} == {"weekly", "monthly"}
    assert sum(1 for o in shop.orders if o["subscription_id"]) > 300
    names = " ".join(c["name"] for c in shop.customers)
    for fragment in ("ë", "'", "<b>", "<script>"):
        assert fragment in names
    assert len({(s["carrier"], s["service"]) for s in shop.shipments}) >= 6


def test_customers_get_their_countrys_locale_and_dutch_customers_dutch(shop):
    locales = {(c["tz"], c["locale"]) for c in shop.customers}
    assert locales == {("Europe/London", "en_GB"), ("Europe/Berlin", "de_DE"), ("Europe/Paris", "fr_FR"),
                       ("Europe/Madrid", "es_ES"), ("Europe/Amsterdam", "nl_NL")} | {
        (tz, "en_US") for tz in simulator.US_TZS}
    dutch = [c for c in shop.customers if c["locale"] == "nl_NL"]
    assert len(dutch) >= 50 and all(c["country"] == "NL" for c in dutch)
    orders = {o["customer_id"] for o in shop.orders}
    assert sum(1 for c in dutch if c["customer_id"] in orders) >= 50
    assert any(s["dest_tz"] == "Europe/Amsterdam" for s in shop.shipments)


def test_dutch_customers_leave_the_rest_of_a_seeds_shop_as_it_was():
    """They are made last, from their own stream: without them the shop is what it always was."""
    small = simulator.SimConfig(seed=3, n_orders=300)
    gen = simulator._Generator(small)
    gen.make_customers(200)
    gen.make_orders()
    gen.mark_tracker_faults()
    before = (list(gen.customers), list(gen.orders), list(gen.shipments))
    shop = simulator.generate(small)
    assert shop.customers[:len(before[0])] == before[0] and shop.orders[:len(before[1])] == before[1]
    assert shop.shipments[:len(before[2])] == before[2]
    assert {c["locale"] for c in shop.customers[len(before[0]):]} == {"nl_NL"}


def test_every_failure_mode_has_ground_truth_and_one_line_is_shipped_three_times(shop):
    modes = Counter(t["mode"] for t in shop.ground_truth)
    for mode in simulator.MODE_RATES:
        assert modes[mode] >= 5, mode
    assert max(int(s["sequence"]) for s in shop.shipments) == 3
    chain = [t for t in shop.ground_truth if t["sequence"] == 3]
    assert chain and "reshipped" in chain[0]["types"]


def test_bad_records_are_injected_and_listed(shop):
    assert set(shop.faults) == {"customer_email_missing", "customer_email_invalid", "duplicate_order_id",
                                "tracker_missing_fields", "scan_naive_timestamp"}
    ids = Counter(o["order_id"] for o in shop.orders)
    assert ids[shop.faults["duplicate_order_id"][0]] == 2


def test_tracker_payloads_have_the_shape_of_easypost_recordings(shop, fixtures_dir):
    cassette = yaml.safe_load((fixtures_dir / "easypost" / "test_tracker_retrieve.yaml").read_text())
    real = json.loads(cassette["interactions"][-1]["response"]["body"]["string"])
    sim = next(p for s in shop.shipments if (p := simulator.tracker_payload(
        s, shop.timelines[s["shipment_id"]], AS_OF)) is not None)
    assert set(real) <= set(sim)
    assert set(real["tracking_details"][0]) <= set(sim["tracking_details"][0])
    assert set(real["carrier_detail"]) <= set(sim["carrier_detail"])


def test_a_tracker_shows_only_what_had_happened_by_as_of(shop):
    shipment = shop.shipments[0]
    timeline = shop.timelines[shipment["shipment_id"]]
    first = timeline.scans[0].at
    early = simulator.tracker_payload(shipment, timeline, first)
    assert len(early["tracking_details"]) == 1 and early["status"] == "pre_transit"
    assert simulator.tracker_payload(shipment, timeline, first.replace(year=2025)) is None
