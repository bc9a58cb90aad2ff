"""Revised delivery windows: the carrier's estimate and the spread of real transit times.

The latest date is a conservative quantile of transit times seen on the same carrier, service and
lane (falling back to carrier+service, carrier, then everything when data is thin), never the
average; both ends are business days in the destination, and a window never starts in the past.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from lastmile.core.calendar import add_business_days, business_days_between, country_for, is_business_day
from lastmile.core.detection import business_days, countries, local_dates

# Exceptions after which the parcel is still on its way to the customer, so a date can be given.
# Lost, damaged and returned parcels are not coming: a person decides what happens next.
STILL_COMING = frozenset({"late", "stalled", "failed_attempt", "address_problem", "customs_hold",
                          "stuck_before_pickup", "reshipped"})
# Extra business days an exception adds on top of normal remaining transit, until the shop's own
# parcels with that exception say how long it really takes (a cold start).
EXTRA_DAYS = {"stalled": 2, "customs_hold": 3, "address_problem": 2, "stuck_before_pickup": 1}
# Exceptions that are a silence: until the shop's history says otherwise, a silence that has lasted
# n business days is given at least n more (what has lasted long tends to last).
SILENCES = frozenset({"stalled", "stuck_before_pickup"})
MIN_SAMPLES = 30
LATEST_QUANTILE = 0.95
EARLIEST_QUANTILE = 0.25
# How far deliveries landed from the carrier's estimate: the window around an estimate spans
# these quantiles of that error, learned from delivered shipments.
ESTIMATE_ERROR_QUANTILES = (0.02, 0.97)
# After an exception, the window spans these quantiles of how long the shop's parcels with the
# same exception still took, given the days already gone since its evidence: 97% of such
# deliveries fell inside, as many before as after.
AFTER_EXCEPTION_QUANTILES = (0.015, 0.985)


LANE = ("carrier", "service", "origin", "destination")
# From the narrowest to the widest: the shipment's lane, service, carrier, everything.
LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lane", LANE), ("service", ("carrier", "service")), ("carrier", ("carrier",)), ("all", ()))


class SampleLevels:
    """Learned samples grouped once per run by lane, service and carrier (within `by`, such as the
    exception type), so each of a batch's windows looks its samples up instead of filtering a frame."""

    JSON_FORMAT = 3  # of to_json: a change makes kept levels be grouped again

    def __init__(self, frame: pd.DataFrame, value: str, by: tuple[str, ...] = (),
                 levels: tuple[tuple[str, tuple[str, ...]], ...] = LEVELS, dtype: type | None = None) -> None:
        values = frame[value].to_numpy(dtype=dtype)
        self._levels = levels
        self._groups: dict[str, dict[tuple[object, ...], np.ndarray]] = {}
        for name, cols in levels:
            keys = [*by, *cols]
            indices = frame.groupby(keys, sort=False).indices if keys and len(frame) else {}
            groups = {(k if isinstance(k, tuple) else (k,)): values[v] for k, v in indices.items()}
            if not keys:
                groups[()] = values
            self._groups[name] = groups
        self._empty = values[:0]

    @property
    def size(self) -> int:
        """How many samples, counted at the widest level."""
        return sum(len(v) for v in self._groups[self._levels[-1][0]].values()) if self._levels else 0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (what a day learned is kept in the history, see store/learned.py): per level,
        its keys and one flat array of values cut at `ends` (base64, as 16-bit integers when every
        value is one: business days are)."""
        # (an empty read gives an object column: its numbers are kept as floats)
        dtype = np.dtype(float) if self._empty.dtype.kind == "O" else self._empty.dtype
        every = [a for groups in self._groups.values() for a in groups.values()]
        flat = np.concatenate(every).astype(dtype) if every else np.empty(0, dtype)
        small = bool(np.all(np.isfinite(flat)) and np.all(flat == np.round(flat))
                     and (not flat.size or (flat.min() >= -32768 and flat.max() <= 32767)))
        stored = np.dtype("<i2") if small else dtype.newbyteorder("<")
        out: dict[str, Any] = {"levels": [[name, list(cols)] for name, cols in self._levels],
                               "dtype": dtype.str, "stored": stored.str, "groups": {}}
        for name, groups in self._groups.items():
            keys = list(groups)
            arrays = [groups[k] for k in keys]
            values = np.concatenate(arrays).astype(stored) if arrays else np.empty(0, stored)
            out["groups"][name] = {
                "keys": [[v.item() if isinstance(v, np.generic) else v for v in k] for k in keys],
                "ends": np.cumsum([len(a) for a in arrays], dtype=np.int64).tolist(),
                "values": base64.b64encode(values.tobytes()).decode()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SampleLevels:
        levels = cls.__new__(cls)
        dtype, stored = np.dtype(data["dtype"]), np.dtype(data["stored"])
        levels._levels = tuple((name, tuple(cols)) for name, cols in data["levels"])
        levels._empty = np.empty(0, dtype=dtype)
        levels._groups = {}
        for name, group in data["groups"].items():
            values = np.frombuffer(base64.b64decode(group["values"]), dtype=stored).astype(dtype)
            starts = [0, *group["ends"][:-1]] if group["ends"] else []
            levels._groups[name] = {tuple(k): values[a:b] for k, a, b in zip(group["keys"], starts, group["ends"],
                                                                              strict=True)}
        return levels

    @classmethod
    def of(cls, samples: SampleLevels | pd.DataFrame | None, value: str, by: tuple[str, ...] = (),
           levels: tuple[tuple[str, tuple[str, ...]], ...] = LEVELS, dtype: type | None = None) -> SampleLevels | None:
        if samples is None or isinstance(samples, SampleLevels):
            return samples
        return cls(samples, value, by, levels, dtype)

    def levels(self, shipment: pd.Series, *within: object) -> list[tuple[str, np.ndarray]]:
        """(level name, sample values) from the narrowest level to the widest."""
        return [(name, self._groups[name].get((*within, *(shipment[c] for c in cols)), self._empty))
                for name, cols in self._levels]


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
    ships = shipments[["shipment_id", "carrier", "service", "origin", "destination", "dest_tz"]].assign(
        country=countries(shipments))
    both = both.merge(ships, on="shipment_id")
    both["transit_bd"] = [
        business_days_between(_local(a, tz), _local(d, tz), c)
        for a, d, tz, c in zip(both["accepted"], both["delivered"], both["dest_tz"], both["country"], strict=True)
    ]
    return both


def exception_history(detections: pd.DataFrame, transit: pd.DataFrame) -> pd.DataFrame:
    """Business days from each exception's first evidence to the delivery, for delivered parcels
    with an exception after which a window is given (`transit`: transit_history's rows)."""
    cols = ["shipment_id", "exception_type", "carrier", "service", "origin", "destination", "evidence_at",
            "delivered_at", "remaining_bd"]
    d = detections[detections["exception_type"].isin(STILL_COMING)][["shipment_id", "exception_type",
                                                                     "first_evidence_at"]]
    m = d.merge(transit[["shipment_id", "carrier", "service", "origin", "destination", "dest_tz", "country",
                         "delivered"]], on="shipment_id")
    if m.empty:
        return pd.DataFrame(columns=cols)
    m["evidence_at"] = pd.to_datetime(m["first_evidence_at"], utc=True)
    m["delivered_at"] = pd.to_datetime(m["delivered"], utc=True)
    m = m[m["evidence_at"] <= m["delivered_at"]]
    m["remaining_bd"] = [
        business_days_between(_local(e, tz), _local(dl, tz), c)
        for e, dl, tz, c in zip(m["evidence_at"], m["delivered_at"], m["dest_tz"], m["country"], strict=True)]
    return m[cols].reset_index(drop=True)


def estimate_errors(shipments: pd.DataFrame, scans: pd.DataFrame, estimates: pd.DataFrame,
                    as_of: datetime) -> pd.DataFrame:
    """Signed business days from each carrier estimate to the actual delivery, for parcels delivered
    by `as_of` (estimates published on the delivery day itself are left out: they cannot miss)."""
    cols = ["shipment_id", "est_delivery_date", "carrier", "service", "revision", "delivered_at", "error_bd"]
    if estimates.empty:
        return pd.DataFrame(columns=cols)
    sc = scans[(scans["status"] == "delivered") & (pd.to_datetime(scans["occurred_at"], utc=True)
                                                   <= pd.Timestamp(as_of))]
    delivered = pd.to_datetime(sc.groupby("shipment_id")["occurred_at"].min(), utc=True).rename("delivered_at")
    e = estimates.merge(delivered.reset_index(), on="shipment_id").merge(
        shipments[["shipment_id", "carrier", "service", "dest_tz"]].assign(country=countries(shipments)),
        on="shipment_id")
    e["observed_at"] = pd.to_datetime(e["observed_at"], utc=True)
    # The estimate printed with the label and the carrier's later revisions miss by different
    # amounts: each is calibrated on its own kind.
    e["revision"] = e["observed_at"] > e.groupby("shipment_id")["observed_at"].transform("min")
    e["delivered_local"] = local_dates(e["delivered_at"], e["dest_tz"])
    e = e[local_dates(e["observed_at"], e["dest_tz"]) < e["delivered_local"]]
    if e.empty:
        return pd.DataFrame(columns=cols)
    e["error_bd"] = business_days(pd.to_datetime(e["est_delivery_date"]), e["delivered_local"], e["country"])
    return e[cols].reset_index(drop=True)


def estimate_is_fresh(estimate_at: object, evidence_at: object, accepted_at: object) -> bool:
    """Did the carrier give its current estimate after the trouble began, with the parcel in hand?

    An estimate printed before the carrier even had the parcel (a label-time guess) knows nothing
    of a parcel that never got picked up or of the problem that followed.
    """
    if estimate_at is None or accepted_at is None or pd.isna(estimate_at) or pd.isna(accepted_at):
        return False
    at, evidence, accepted = (_utc_ts(v) for v in (estimate_at, evidence_at, accepted_at))
    return bool(at >= evidence and at >= accepted)


def _utc_ts(value: object) -> pd.Timestamp:
    """A UTC timestamp; SQLite hands back our UTC instants without their zone."""
    ts = pd.Timestamp(value)  # type: ignore[arg-type]
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts


def shift_business_days(day: date, n: int, country: str) -> date:
    """`n` business days after (n > 0) or before (n < 0) `day`, rolled onto a business day."""
    if n >= 0:
        return add_business_days(day, n, country)
    current = day
    for _ in range(-n):
        current -= timedelta(days=1)
        while not is_business_day(current, country):
            current -= timedelta(days=1)
    return current


def _local(instant: object, tz: str) -> date:
    return pd.Timestamp(instant).tz_convert(ZoneInfo(tz)).date()


def revised_window(
    shipment: pd.Series, exception_type: str, accepted_at: datetime | None, carrier_estimate: date | None,
    history: pd.DataFrame | SampleLevels, as_of: datetime, errors: pd.DataFrame | SampleLevels | None = None,
    estimate_after_evidence: bool = False, estimate_is_revision: bool = False,
    after: pd.DataFrame | SampleLevels | None = None, evidence_at: object = None,
) -> Window | None:
    """The window to tell the customer for one open shipment, or None when no date is honest.

    When the carrier dated the parcel after the trouble began (`estimate_after_evidence`), the
    window is built around that date, as wide as the carrier's record with such estimates needs;
    otherwise from how long parcels with the same exception still took once as many days had
    passed since its evidence (`after`: exception_history rows), and failing enough of those, from
    the spread of real transit times; any older estimate only widens it. A batch passes each
    kind of sample as SampleLevels built once (transit_levels, error_levels, after_levels).
    """
    if exception_type not in STILL_COMING:
        return None
    history, errors, after = transit_levels(history), error_levels(errors), after_levels(after)
    tz = str(shipment["dest_tz"])
    country = country_for(shipment.get("dest_country"), tz)
    today = pd.Timestamp(as_of).tz_convert(ZoneInfo(tz)).date()
    first_day = add_business_days(today + timedelta(days=1), 0, country)  # never today, never the past
    elapsed = business_days_between(_local(accepted_at, tz), today, country) if accepted_at is not None else 0
    samples, basis = _samples(shipment, history)
    remaining = samples[samples > elapsed] - elapsed if samples.size else samples
    learned = _after_exception(shipment, exception_type, evidence_at, today, after, country)
    silent = (business_days_between(_local(_utc_ts(evidence_at), tz), today, country)
              if exception_type in SILENCES and evidence_at is not None and not pd.isna(evidence_at) else 0)
    if learned is not None:
        lo, hi, basis = learned
    elif remaining.size >= 5:
        lo = int(np.floor(np.quantile(remaining, EARLIEST_QUANTILE)))
        hi = int(np.ceil(np.quantile(remaining, LATEST_QUANTILE)))
    elif samples.size:
        lo, hi = 1, int(samples.max()) + 2  # already slower than nearly all history: widen honestly
        basis += ",beyond-history"
    else:
        lo, hi = 1, 7
        basis = "no-history"
    extra = 0 if learned is not None else max(EXTRA_DAYS.get(exception_type, 0), silent)
    earliest = add_business_days(today, max(1, lo), country)
    latest = add_business_days(today, max(hi + extra, lo + 1, 2), country)
    if carrier_estimate is not None and carrier_estimate >= first_day:
        calibrated = (_around_estimate(shipment, carrier_estimate, errors, country, estimate_is_revision)
                      if estimate_after_evidence else None)
        if calibrated is not None:
            # The carrier still dates the parcel in the future and we know how far its dates
            # land from the truth: a window around its word, as wide as its track record needs.
            # A date the carrier gives in the middle of a silence has no scan behind it: the
            # window still reaches as far as the silence alone would.
            latest = max(calibrated[1], latest) if exception_type in SILENCES else calibrated[1]
            earliest, basis = max(calibrated[0], first_day), calibrated[2]
            return Window(earliest, max(latest, earliest), basis)
        basis = f"carrier-estimate+{basis}"
        earliest = min(max(earliest, first_day), carrier_estimate)
        latest = max(latest, add_business_days(carrier_estimate, 1, country))
    earliest = max(earliest, first_day)
    return Window(earliest, max(latest, add_business_days(earliest, 1, country)), basis)


def transit_levels(history: pd.DataFrame | SampleLevels) -> SampleLevels:
    """Transit times (transit_history's rows) grouped for revised_window."""
    levels = SampleLevels.of(history, "transit_bd")
    assert levels is not None
    return levels


def error_levels(errors: pd.DataFrame | SampleLevels | None) -> SampleLevels | None:
    """Estimate errors (estimate_errors' rows) grouped by kind of estimate, for revised_window."""
    return SampleLevels.of(errors, "error_bd", by=("revision",), levels=LEVELS[1:], dtype=float)


def after_levels(after: pd.DataFrame | SampleLevels | None) -> SampleLevels | None:
    """Times after an exception (exception_history's rows) grouped by exception, for revised_window."""
    return SampleLevels.of(after, "remaining_bd", by=("exception_type",))


def _after_exception(shipment: pd.Series, exception_type: str, evidence_at: object, today: date,
                     after: SampleLevels | None, country: str) -> tuple[int, int, str] | None:
    """(earliest, latest) business days from today, from the parcels that had the same exception,
    given the days since its evidence; None when too few such parcels were still coming by then."""
    if after is None or evidence_at is None or pd.isna(evidence_at):
        return None
    levels = after.levels(shipment, exception_type)
    if not levels[-1][1].size:
        return None
    gone = business_days_between(_local(_utc_ts(evidence_at), str(shipment["dest_tz"])), today, country)
    for name, values in levels:
        values = values[values > gone] - gone  # parcels not yet delivered after as many days
        if values.size >= MIN_SAMPLES:
            lo, hi = np.quantile(values, AFTER_EXCEPTION_QUANTILES)
            return int(np.floor(lo)), int(np.ceil(hi)), f"after-{exception_type}:{name}(n={values.size})"
    return None


def _around_estimate(shipment: pd.Series, estimate: date, errors: SampleLevels | None,
                     country: str, revision: bool) -> tuple[date, date, str] | None:
    if errors is None:
        return None
    for name, values in errors.levels(shipment, revision):
        if values.size >= MIN_SAMPLES:
            lo, hi = np.quantile(values, ESTIMATE_ERROR_QUANTILES)
            return (shift_business_days(estimate, int(np.floor(lo)), country),
                    shift_business_days(estimate, int(np.ceil(hi)), country),
                    f"carrier-{'revision' if revision else 'estimate'}-calibrated:{name}(n={values.size})")
    return None


def _samples(shipment: pd.Series, history: SampleLevels) -> tuple[np.ndarray, str]:
    for name, values in history.levels(shipment):
        if values.size >= MIN_SAMPLES or name == "all":
            return values, f"history:{name}(n={values.size})"
    raise AssertionError("unreachable")
