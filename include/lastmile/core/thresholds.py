"""Detection thresholds per carrier and service, from thresholds.toml (or LASTMILE_THRESHOLDS_FILE)."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_FILE = Path(__file__).with_name("thresholds.toml")


@dataclass(frozen=True)
class Thresholds:
    """Business-day thresholds; `docs/detection-rules.md` explains each for ops."""

    stalled_after: int = 3  # no scan for this many business days while moving
    lost_after: int = 7  # no scan for this many business days: we call it lost
    pickup_after: int = 2  # label created, no acceptance scan for this many business days
    # False in a cold start: the carrier's rhythm is not known yet, so a silence is never called lost.
    lost_by_silence: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.stalled_after < self.lost_after or self.pickup_after < 1:
            raise ValueError(f"thresholds must satisfy 0 < stalled_after < lost_after and pickup_after >= 1: {self}")


@dataclass(frozen=True)
class ThresholdTable:
    """The default and its overrides, keyed (carrier, service) or (carrier, None); learned ones may
    also be keyed by lane (carrier, service, origin, destination), the most specific of all."""

    default: Thresholds = Thresholds()
    overrides: dict[tuple[str, str | None], Thresholds] = field(default_factory=dict)
    lanes: dict[tuple[str, str, str, str], Thresholds] = field(default_factory=dict)

    def for_shipment(self, carrier: str, service: str, origin: str = "", destination: str = "") -> Thresholds:
        return (self.lanes.get((carrier, service, origin, destination)) or self.overrides.get((carrier, service))
                or self.overrides.get((carrier, None)) or self.default)

    def to_json(self) -> dict[str, Any]:
        """The table as plain JSON (a learned table is kept in the history, see store/learned.py)."""
        return {"default": asdict(self.default),
                "overrides": [[carrier, service, asdict(t)] for (carrier, service), t in self.overrides.items()],
                "lanes": [[*lane, asdict(t)] for lane, t in self.lanes.items()]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThresholdTable:
        return cls(Thresholds(**data["default"]),
                   {(carrier, service): Thresholds(**t) for carrier, service, t in data["overrides"]},
                   {(c, s, o, d): Thresholds(**t) for c, s, o, d, t in data["lanes"]})

    def columns(self, shipments: pd.DataFrame) -> pd.DataFrame:
        """One row of thresholds per shipment row (same index), for vectorised rules."""
        names = [f.name for f in fields(Thresholds)]
        if not self.overrides and not self.lanes:
            return pd.DataFrame({n: getattr(self.default, n) for n in names}, index=shipments.index)
        lane_cols = [shipments[c] if c in shipments else pd.Series("", index=shipments.index)
                     for c in ("origin", "destination")]
        keys = list(zip(shipments["carrier"], shipments["service"], *lane_cols, strict=True))
        chosen = {key: self.for_shipment(*key) for key in set(keys)}
        return pd.DataFrame([[getattr(chosen[k], n) for n in names] for k in keys], columns=names,
                            index=shipments.index)


# Learning each carrier's rhythm from its delivered parcels (docs/detection-rules.md): a silence
# or a wait that this share of delivered parcels lived through is normal, not an exception.
STALLED_QUANTILE = 0.95
LOST_QUANTILE = 0.995  # "lost" needs more evidence than "stalled": a rarer silence
PICKUP_QUANTILE = 0.95
LOST_MARGIN = 2  # and at least this many business days more than stalled
MIN_SAMPLES = 30  # fewer delivered parcels than this: the configured values alone (a cold start)


def learned(configured: ThresholdTable, samples: pd.DataFrame, carriers: Iterable[str] = ()) -> ThresholdTable:
    """`configured` with each carrier's, service's and lane's rhythm learned from `samples`
    (delivered parcels: carrier, service, origin, destination, max_gap_bd, pickup_wait_bd).

    A learned threshold is the high quantile of what delivered parcels lived through, never below
    the configured value (a floor). The most specific level with at least MIN_SAMPLES parcels
    decides each threshold: lane, else service, else carrier, else the configured value alone.

    A carrier of `carriers` with fewer than MIN_SAMPLES delivered parcels, and no section of its own
    in the thresholds file, is in a cold start: a silence is never called lost for it."""
    gaps_seen = {} if samples.empty else {  # delivered parcels with a known longest silence, per carrier
        str(c): int(n) for c, n in samples.groupby("carrier", sort=False)["max_gap_bd"].count().items()}
    cold = {c for c in carriers if (c, None) not in configured.overrides and gaps_seen.get(c, 0) < MIN_SAMPLES}
    if samples.empty:
        return ThresholdTable(configured.default, {**configured.overrides, **{
            (c, None): replace(configured.default, lost_by_silence=False) for c in cold}}, configured.lanes)

    def fit(floor: Thresholds, group: pd.DataFrame, fallback: Thresholds) -> Thresholds:
        # numpy's quantile is pandas' (linear interpolation) without its per-call overhead: a run
        # fits hundreds of small groups (every carrier, service and lane).
        gaps, waits = (values[~np.isnan(values)] for values in (
            group["max_gap_bd"].to_numpy(dtype=float), group["pickup_wait_bd"].to_numpy(dtype=float)))
        stalled, lost, pickup = fallback.stalled_after, fallback.lost_after, fallback.pickup_after
        if len(gaps) >= MIN_SAMPLES:
            stalled = max(floor.stalled_after, math.ceil(np.quantile(gaps, STALLED_QUANTILE)))
            lost = max(floor.lost_after, math.ceil(np.quantile(gaps, LOST_QUANTILE)), stalled + LOST_MARGIN)
        if len(waits) >= MIN_SAMPLES:
            pickup = max(floor.pickup_after, math.ceil(np.quantile(waits, PICKUP_QUANTILE)))
        return Thresholds(stalled, max(lost, stalled + 1), pickup,
                          lost_by_silence=fallback.lost_by_silence if len(gaps) < MIN_SAMPLES else True)

    overrides = dict(configured.overrides)
    carriers: dict[str, Thresholds] = {}
    for carrier in cold - set(gaps_seen):
        overrides[(carrier, None)] = replace(configured.default, lost_by_silence=False)
    for carrier, group in samples.groupby("carrier"):
        floor = configured.for_shipment(str(carrier), "")
        start = replace(floor, lost_by_silence=False) if str(carrier) in cold else floor
        carriers[str(carrier)] = overrides[(str(carrier), None)] = fit(floor, group, start)
    services: dict[tuple[str, str], Thresholds] = {}
    for (carrier, service), group in samples.groupby(["carrier", "service"]):
        key = (str(carrier), str(service))
        floor = configured.for_shipment(*key)
        services[key] = overrides[key] = fit(floor, group, _at_least(floor, carriers[key[0]]))
    for (carrier, service), values in configured.overrides.items():  # a configured service not delivered yet
        if service is not None and carrier in carriers and (carrier, service) not in services:
            overrides[(carrier, service)] = _at_least(values, carriers[carrier])
    lanes: dict[tuple[str, str, str, str], Thresholds] = {}
    if {"origin", "destination"} <= set(samples.columns):
        for lane, group in samples.groupby(["carrier", "service", "origin", "destination"]):
            key = tuple(str(v) for v in lane)
            lanes[key] = fit(configured.for_shipment(key[0], key[1]), group, services[(key[0], key[1])])  # type: ignore[index]
    return ThresholdTable(configured.default, overrides, lanes)  # type: ignore[arg-type]


def cold_started(table: ThresholdTable, configured: ThresholdTable, carriers: Iterable[str]) -> ThresholdTable:
    """`table` (learned from every carrier's delivered parcels) for a batch with these `carriers`:
    a carrier with no delivered parcel at all and no section in the thresholds file is in a cold
    start (see `learned`), exactly as if `learned` had been asked about it."""
    cold = {c for c in carriers if (c, None) not in table.overrides and (c, None) not in configured.overrides}
    if not cold:
        return table
    return ThresholdTable(table.default, {**table.overrides, **{
        (c, None): replace(configured.default, lost_by_silence=False) for c in cold}}, table.lanes)


def _at_least(a: Thresholds, b: Thresholds) -> Thresholds:
    return Thresholds(max(a.stalled_after, b.stalled_after), max(a.lost_after, b.lost_after),
                      max(a.pickup_after, b.pickup_after), a.lost_by_silence and b.lost_by_silence)


@dataclass(frozen=True)
class ZonedThresholds:
    """A threshold table per destination time zone (each learned as of the start of that zone's
    day, so thresholds move only when the zone's parcels are all looked at again)."""

    zones: Mapping[str, ThresholdTable]
    fallback: ThresholdTable

    def columns(self, shipments: pd.DataFrame) -> pd.DataFrame:
        parts = [self.zones.get(str(tz), self.fallback).columns(group)
                 for tz, group in shipments.groupby("dest_tz", sort=False)]
        if not parts:
            return self.fallback.columns(shipments)
        return pd.concat(parts).reindex(shipments.index)


def _merge(base: Thresholds, values: dict[str, Any], where: str) -> Thresholds:
    known = {f.name for f in fields(Thresholds)}
    unknown = set(values) - known - {"service"}
    if unknown:
        raise ValueError(f"{where}: unknown threshold(s) {sorted(unknown)}; known: {sorted(known)}")
    return replace(base, **{k: int(v) for k, v in values.items() if k in known and k != "lost_by_silence"})


def load(path: Path | str | None = None) -> ThresholdTable:
    """Read the thresholds file; a carrier section inherits the default, a service its carrier."""
    path = Path(path or os.environ.get("LASTMILE_THRESHOLDS_FILE") or DEFAULT_FILE)
    raw = tomllib.loads(path.read_text())
    default = _merge(Thresholds(), raw.get("default", {}), f"{path} [default]")
    overrides: dict[tuple[str, str | None], Thresholds] = {}
    for carrier, section in (raw.get("carrier") or {}).items():
        carrier_level = _merge(default, {k: v for k, v in section.items() if k != "service"},
                               f"{path} [carrier.{carrier}]")
        overrides[(carrier, None)] = carrier_level
        for service, values in (section.get("service") or {}).items():
            overrides[(carrier, service)] = _merge(carrier_level, values, f"{path} [carrier.{carrier}.service.{service}]")
    return ThresholdTable(default, overrides)
