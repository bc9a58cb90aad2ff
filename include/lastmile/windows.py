"""Revised delivery windows: the carrier's estimate and the spread of real transit times.

The latest date is a conservative quantile of transit times seen on the same carrier, service and
lane (falling back to carrier+service, carrier, then everything when data is thin), never the
average; both ends are business days in the destination, and a window never starts in the past.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from lastmile.calendar import TZ_COUNTRY, add_business_days, business_days_between

# Exceptions after which the parcel is still on its way to the customer, so a date can be given.
# Lost, damaged and returned parcels are not coming: a person decides what happens next.
STILL_COMING = frozenset({"late", "stalled", "failed_attempt", "address_problem", "customs_hold",
                          "stuck_before_pickup", "reshipped"})
# Extra business days an exception adds on top of normal remaining transit.
EXTRA_DAYS = {"stalled": 2, "customs_hold": 3, "address_problem": 2, "stuck_before_pickup": 1}
MIN_SAMPLES = 30
LATEST_QUANTILE = 0.95
EARLIEST_QUANTILE = 0.25


@dataclass(frozen=True)
class Window:
    earliest: date
    latest: date
    basis: str


def transit_history(shipments: pd.DataFrame, scans: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """Business days from acceptance to delivery of every shipment delivered by `as_of`."""
    sc = scans[pd.to_datetime(scans["occurred_at"], utc=True) <= pd.Timestamp(as_of)]
    moving = sc[sc["status"] != "pre_transit"].groupby("shipment_id")["occurred_at"].min()
    delivered = sc[sc["status"] == "delivered"].groupby("shipment_id")["occurred_at"].min()
    both = pd.DataFrame({"accepted": moving, "delivered": delivered}).dropna().reset_index()
    both = both.merge(shipments[["shipment_id", "carrier", "service", "origin", "destination", "dest_tz"]],
                      on="shipment_id")
    both["transit_bd"] = [
        business_days_between(_local(a, tz), _local(d, tz), TZ_COUNTRY.get(tz, "US"))
        for a, d, tz in zip(both["accepted"], both["delivered"], both["dest_tz"], strict=True)
    ]
    return both


def _local(instant: object, tz: str) -> date:
    return pd.Timestamp(instant).tz_convert(ZoneInfo(tz)).date()


def revised_window(
    shipment: pd.Series, exception_type: str, accepted_at: datetime | None, carrier_estimate: date | None,
    history: pd.DataFrame, as_of: datetime,
) -> Window | None:
    """The window to tell the customer for one open shipment, or None when no date is honest."""
    if exception_type not in STILL_COMING:
        return None
    tz = str(shipment["dest_tz"])
    country = TZ_COUNTRY.get(tz, "US")
    today = pd.Timestamp(as_of).tz_convert(ZoneInfo(tz)).date()
    first_day = add_business_days(today + timedelta(days=1), 0, country)  # never today, never the past
    elapsed = business_days_between(_local(accepted_at, tz), today, country) if accepted_at is not None else 0
    samples, basis = _samples(shipment, history)
    remaining = samples[samples > elapsed] - elapsed if samples.size else samples
    if remaining.size >= 5:
        lo = int(np.floor(np.quantile(remaining, EARLIEST_QUANTILE)))
        hi = int(np.ceil(np.quantile(remaining, LATEST_QUANTILE)))
    elif samples.size:
        lo, hi = 1, int(samples.max()) + 2  # already slower than nearly all history: widen honestly
        basis += ",beyond-history"
    else:
        lo, hi = 1, 7
        basis = "no-history"
    extra = EXTRA_DAYS.get(exception_type, 0)
    earliest = add_business_days(today, max(1, lo), country)
    latest = add_business_days(today, max(hi + extra, lo + 1, 2), country)
    if carrier_estimate is not None and carrier_estimate >= first_day:
        basis = f"carrier-estimate+{basis}"
        earliest = min(max(earliest, first_day), carrier_estimate)
        latest = max(latest, add_business_days(carrier_estimate, 1, country))
    earliest = max(earliest, first_day)
    return Window(earliest, max(latest, add_business_days(earliest, 1, country)), basis)


def _samples(shipment: pd.Series, history: pd.DataFrame) -> tuple[np.ndarray, str]:
    levels = [
        ("lane", (history["carrier"] == shipment["carrier"]) & (history["service"] == shipment["service"])
         & (history["origin"] == shipment["origin"]) & (history["destination"] == shipment["destination"])),
        ("service", (history["carrier"] == shipment["carrier"]) & (history["service"] == shipment["service"])),
        ("carrier", history["carrier"] == shipment["carrier"]),
        ("all", pd.Series(True, index=history.index)),
    ]
    for name, mask in levels:
        values = history.loc[mask, "transit_bd"].to_numpy()
        if values.size >= MIN_SAMPLES or name == "all":
            return values, f"history:{name}(n={values.size})"
    raise AssertionError("unreachable")
