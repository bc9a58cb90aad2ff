"""Revised windows: kept promises need conservative, business-day, never-in-the-past windows."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from lastmile.windows import revised_window

from builders import utc

SHIP = pd.Series({"carrier": "UPS", "service": "Ground", "origin": "US-HOUSTON", "destination": "US-BROOKLYN",
                  "dest_tz": "America/New_York"})


def history(values, carrier="UPS", service="Ground", destination="US-BROOKLYN"):
    return pd.DataFrame({"carrier": carrier, "service": service, "origin": "US-HOUSTON",
                         "destination": destination, "transit_bd": values})


def test_window_never_starts_today_or_in_the_past_and_skips_the_weekend():
    # Friday 20 Nov 2026, 23:00 in New York; history says parcels usually take one more day.
    w = revised_window(SHIP, "late", utc("2026-11-17T15:00:00+00:00"), None, history([2, 3, 3, 4] * 10),
                       utc("2026-11-21T04:00:00+00:00"))
    assert w.earliest >= date(2026, 11, 23)  # Monday: not Saturday, not Friday
    assert w.earliest.weekday() < 5 and w.latest.weekday() < 5
    assert w.latest > w.earliest


def test_latest_date_is_a_conservative_quantile_not_the_average():
    spread = [1] * 30 + [2] * 30 + [9] * 5
    w = revised_window(SHIP, "late", utc("2026-11-02T15:00:00+00:00"), None, history(spread),
                       utc("2026-11-02T16:00:00+00:00"))
    # The average remaining transit is under 2 business days; the window must still cover the slow tail.
    assert (w.latest - date(2026, 11, 2)).days >= 9


def test_thanksgiving_is_not_a_delivery_day():
    w = revised_window(SHIP, "late", utc("2026-11-23T15:00:00+00:00"), None, history([1, 2, 3] * 20),
                       utc("2026-11-25T15:00:00+00:00"))
    assert date(2026, 11, 26) not in (w.earliest, w.latest)


def test_carrier_estimate_is_used_and_kept_inside_the_window():
    w = revised_window(SHIP, "late", utc("2026-11-02T15:00:00+00:00"), date(2026, 11, 10), history([2, 3] * 20),
                       utc("2026-11-04T16:00:00+00:00"))
    assert w.earliest <= date(2026, 11, 10) < w.latest
    assert w.basis.startswith("carrier-estimate")


def test_missing_carrier_estimate_falls_back_to_history_and_names_its_level():
    thin_lane = pd.concat([history([3] * 5), history([2, 3, 4] * 20, destination="US-OAKLAND")])
    w = revised_window(SHIP, "stalled", utc("2026-11-02T15:00:00+00:00"), None, thin_lane,
                       utc("2026-11-03T16:00:00+00:00"))
    assert w is not None and w.basis.startswith("history:service")


@pytest.mark.parametrize("kind", ["lost", "damaged", "returned"])
def test_no_date_is_promised_for_a_parcel_that_is_not_coming(kind):
    assert revised_window(SHIP, kind, None, date(2026, 11, 10), history([2] * 40),
                          utc("2026-11-04T16:00:00+00:00")) is None
