"""Revised windows: kept promises need conservative, business-day, never-in-the-past windows."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from lastmile.core.windows import revised_window

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


def errors(values, revision=True, carrier="UPS", service="Ground"):
    return pd.DataFrame({"carrier": carrier, "service": service, "revision": revision, "error_bd": values})


def test_a_carrier_revision_given_after_the_trouble_makes_a_narrow_window_its_record_supports():
    # UPS's revised dates land on the day or one business day after it, in its track record.
    record = errors([0] * 40 + [1] * 10)
    w = revised_window(SHIP, "late", utc("2026-11-10T15:00:00+00:00"), date(2026, 11, 27),
                       history([3, 4, 5, 9] * 10), utc("2026-11-24T15:00:00+00:00"), record,
                       estimate_after_evidence=True, estimate_is_revision=True)
    assert (w.earliest, w.latest) == (date(2026, 11, 27), date(2026, 11, 30))  # Fri, then Mon (weekend)
    assert w.basis.startswith("carrier-revision-calibrated:service")


def test_an_estimate_older_than_the_trouble_does_not_narrow_the_window():
    record = errors([0] * 50)
    args = (SHIP, "stalled", utc("2026-11-10T15:00:00+00:00"), date(2026, 11, 27), history([3, 4, 5, 9] * 10),
            utc("2026-11-24T15:00:00+00:00"), record)
    stale = revised_window(*args, estimate_after_evidence=False, estimate_is_revision=True)
    assert "calibrated" not in stale.basis
    assert (stale.latest - stale.earliest).days > 1


def test_label_estimates_and_revisions_are_calibrated_separately():
    # Label-time estimates miss by up to 4 business days; revisions are exact.
    record = pd.concat([errors([0] * 40, revision=True), errors([0, 1, 2, 4] * 10, revision=False)])
    kwargs = {"estimate_after_evidence": True}
    args = (SHIP, "reshipped", None, date(2026, 11, 25), history([3] * 40), utc("2026-11-20T15:00:00+00:00"), record)
    label = revised_window(*args, estimate_is_revision=False, **kwargs)
    revision = revised_window(*args, estimate_is_revision=True, **kwargs)
    assert revision.latest == date(2026, 11, 25)
    assert label.latest > revision.latest


def test_shifting_back_skips_weekends_and_holidays():
    from lastmile.core.windows import shift_business_days

    assert shift_business_days(date(2026, 11, 30), -1, "US") == date(2026, 11, 27)  # Mon -> Fri
    assert shift_business_days(date(2026, 11, 27), -1, "US") == date(2026, 11, 25)  # skips Thanksgiving


def test_freshness_reads_instants_with_or_without_their_zone():
    """SQLite hands back UTC instants without a zone; the comparison must still hold."""
    from lastmile.core.windows import estimate_is_fresh

    assert estimate_is_fresh(utc("2026-11-20T10:00:00+00:00"), pd.Timestamp("2026-11-20T09:00:00"),
                             utc("2026-11-19T10:00:00+00:00"))
    assert not estimate_is_fresh(utc("2026-11-20T10:00:00+00:00"), pd.Timestamp("2026-11-20T11:00:00"),
                                 utc("2026-11-19T10:00:00+00:00"))
    assert not estimate_is_fresh(utc("2026-11-20T10:00:00+00:00"), utc("2026-11-20T09:00:00+00:00"), None)


def after(kind, remaining, carrier="UPS"):
    """Delivered parcels that had `kind`: business days from its evidence to their delivery."""
    return pd.DataFrame({"exception_type": kind, "carrier": carrier, "service": "Ground", "origin": "US-HOUSTON",
                         "destination": "US-BROOKLYN", "remaining_bd": remaining})


def test_after_a_stall_the_window_follows_how_long_stalled_parcels_still_took():
    # Normal transit says 1-3 days; parcels of this shop that stalled took 4 to 12 days from the
    # last scan before the silence. Monday 2 Nov, the silence began Wednesday 28 Oct (3 bd ago).
    stalls = after("stalled", [4, 5, 6, 6, 7, 8, 9, 10, 11, 12] * 4 + [2] * 10)
    w = revised_window(SHIP, "stalled", utc("2026-10-27T15:00:00+00:00"), None, history([1, 2, 3] * 20),
                       utc("2026-11-02T16:00:00+00:00"), after=stalls, evidence_at=utc("2026-10-28T15:00:00+00:00"))
    assert w.basis == "after-stalled:lane(n=40)"  # the parcels delivered 2 days after were already home
    # 1 to 9 more business days (Wednesday 11 Nov, Veterans Day, is not one)
    assert w.earliest == date(2026, 11, 3) and w.latest == date(2026, 11, 16)


def test_too_few_parcels_with_the_exception_fall_back_to_transit_times():
    w = revised_window(SHIP, "stalled", utc("2026-10-27T15:00:00+00:00"), None, history([1, 2, 3] * 20),
                       utc("2026-11-02T16:00:00+00:00"), after=after("stalled", [5] * 29),
                       evidence_at=utc("2026-10-28T15:00:00+00:00"))
    assert w.basis.startswith("history:")


def test_a_long_silence_is_given_at_least_as_long_again_until_the_shop_knows_better():
    # Silent since Monday 26 Oct; Monday 2 Nov that is 5 business days, and normal transit is 1-3 days.
    w = revised_window(SHIP, "stalled", utc("2026-10-23T15:00:00+00:00"), None, history([1, 2, 3] * 20),
                       utc("2026-11-02T16:00:00+00:00"), evidence_at=utc("2026-10-26T15:00:00+00:00"))
    assert w.latest >= date(2026, 11, 9)  # at least 5 more business days


def test_levels_kept_as_json_give_the_same_windows():
    """The grouped samples a day's windows learn from are kept as JSON: read back, every window is
    the same (lane, service, carrier and every-carrier levels; estimate errors by kind)."""
    import json

    from lastmile.core.windows import SampleLevels, after_levels, error_levels, transit_levels

    def again(levels: SampleLevels) -> SampleLevels:
        return SampleLevels.from_json(json.loads(json.dumps(levels.to_json())))

    transit = pd.concat([history([2, 3, 3, 4] * 10), history([5, 6] * 3, destination="US-BOSTON"),
                         history([1, 9] * 20, carrier="DHL")], ignore_index=True)
    record = pd.concat([errors([0] * 40, revision=True), errors([0, 1, 2, 4] * 10, revision=False)])
    stalls = after("stalled", [4, 5, 6, 6, 7, 8, 9, 10, 11, 12] * 4 + [2] * 10)
    empty = after("late", [])
    for ship in (SHIP, SHIP.replace("US-BROOKLYN", "US-BOSTON"),
                 SHIP.replace("UPS", "GLS")):
        for kind, estimate in (("late", None), ("stalled", None), ("reshipped", date(2026, 11, 25))):
            args = (ship, kind, utc("2026-10-27T15:00:00+00:00"), estimate)
            kwargs = {"evidence_at": utc("2026-10-28T15:00:00+00:00"), "estimate_after_evidence": True}
            built = revised_window(*args, transit_levels(transit), utc("2026-11-02T16:00:00+00:00"),
                                   error_levels(record), after=after_levels(stalls), **kwargs)
            read = revised_window(*args, again(transit_levels(transit)), utc("2026-11-02T16:00:00+00:00"),
                                  again(error_levels(record)), after=again(after_levels(stalls)), **kwargs)
            assert built == read
    assert again(after_levels(empty)).size == 0 and again(transit_levels(transit)).size == len(transit)
    halves = error_levels(errors([0.5, 1.25, -3.0] * 20))  # not whole days: kept as they are
    assert [list(v) for _, v in again(halves).levels(SHIP, True)] == [list(v) for _, v in halves.levels(SHIP, True)]
