"""Every destination is counted in its own country's calendar: its weekend, its public holidays."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from lastmile.core.calendar import (
    add_business_days,
    is_business_day,
    learned_by,
    start_of_local_day,
    weekend,
    zone_country,
)
from lastmile.core.detection import countries
from lastmile.shop.orders import validate
from lastmile.shop.records import RawOrders


def test_the_country_of_a_time_zone_comes_from_the_time_zone_database_never_a_default():
    assert zone_country("America/Sao_Paulo") == "BR"
    assert zone_country("America/Toronto") == "CA"
    assert zone_country("Europe/Rome") == "IT"
    assert zone_country("UTC") is None and zone_country("Mars/Olympus") is None


def test_brazil_counts_carnival_and_tiradentes_as_holidays_not_american_ones():
    assert not is_business_day(date(2026, 4, 21), "BR")  # Tiradentes
    assert is_business_day(date(2026, 11, 26), "BR")  # Thanksgiving is a working day there
    assert add_business_days(date(2026, 4, 20), 1, "BR") == date(2026, 4, 22)


def test_a_country_with_a_friday_weekend_keeps_it():
    # Saudi Arabia rests on Friday and Saturday.
    assert weekend("SA") == frozenset({4, 5})
    assert not is_business_day(date(2026, 11, 27), "SA") and is_business_day(date(2026, 11, 29), "SA")


def test_a_day_whose_midnight_does_not_exist_still_has_a_start():
    # Brazil moved its clocks forward at midnight on 16 Oct 2016: 00:00 never happened in Sao Paulo.
    start = start_of_local_day(datetime(2016, 10, 16, 15, tzinfo=UTC), "America/Sao_Paulo")
    assert start == datetime(2016, 10, 16, 3, tzinfo=UTC)


def test_a_destination_learns_by_one_instant_all_its_day_and_zones_of_one_utc_date_share_it():
    from datetime import timedelta

    zones = ["America/Los_Angeles", "America/New_York", "Europe/London", "Europe/Berlin", "Asia/Tokyo",
             "Pacific/Kiritimati", "America/Sao_Paulo"]
    # Over Europe's spring-forward (a 23-hour day) and fall-back (a 25-hour day) weeks.
    hours = [start + timedelta(hours=h) for start in (datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC))
             for h in range(24 * 5)]
    for tz in zones:
        by_day: dict = {}
        for at in hours:
            cutoff = learned_by(at, tz)
            start = start_of_local_day(at, tz)
            assert cutoff <= start < cutoff + timedelta(days=1) and cutoff.time() == datetime.min.time()
            by_day.setdefault(start, set()).add(cutoff)
        # One instant per local day, never an earlier one for a later day (a DST change can give two
        # local days the same one: London's 30 March began at 23:00Z on the 29th).
        assert all(len(c) == 1 for c in by_day.values())
        ordered = [next(iter(by_day[start])) for start in sorted(by_day)]
        assert ordered == sorted(ordered) and len(set(ordered)) >= len(ordered) - 1
    # Every zone an hour touches learns by one of at most two instants (each computed once a day).
    assert all(len({learned_by(at, tz) for tz in zones}) <= 2 for at in hours)


def test_a_shipment_names_its_country_or_takes_its_zones_and_without_either_is_quarantined():
    base = {"order_line_id": "L", "order_id": "O", "customer_id": "C", "carrier": "Post", "service": "std",
            "created_at": "2026-11-02T10:00:00+00:00", "promised_date": "2026-11-09", "origin": "X",
            "destination": "Y"}
    raw = RawOrders(
        customers=[{"customer_id": "C", "name": "A", "email": "a@example.com", "tz": "America/Sao_Paulo"}],
        subscriptions=[], orders=[{"order_id": "O", "customer_id": "C", "placed_at": "2026-11-01T10:00:00+00:00",
                                   "currency": "BRL"}],
        order_lines=[{"order_line_id": "L", "order_id": "O", "sku": "S", "description": "D", "quantity": "1"}],
        shipments=[base | {"shipment_id": "S1", "tracking_code": "T1", "dest_tz": "America/Sao_Paulo"},
                   base | {"shipment_id": "S2", "tracking_code": "T2", "dest_tz": "UTC", "dest_country": "Portugal"},
                   base | {"shipment_id": "S3", "tracking_code": "T3", "dest_tz": "UTC"}])
    valid = validate(raw, as_of=datetime(2026, 11, 3, tzinfo=UTC))
    assert {s["shipment_id"]: s["dest_country"] for s in valid.shipments} == {"S1": "BR", "S2": "PT"}
    assert [(r.record_id, r.field) for r in valid.rejections if r.record_id == "S3"] == [("S3", "dest_country")]
    frame = pd.DataFrame({"dest_tz": ["America/Sao_Paulo", "UTC"], "dest_country": [None, "PT"]})
    assert list(countries(frame)) == ["BR", "PT"]
