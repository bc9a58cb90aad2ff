"""Detection thresholds per carrier and service, from thresholds.toml (or LASTMILE_THRESHOLDS_FILE)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_FILE = Path(__file__).with_name("thresholds.toml")


@dataclass(frozen=True)
class Thresholds:
    """Business-day thresholds; `docs/detection-rules.md` explains each for ops."""

    stalled_after: int = 3  # no scan for this many business days while moving
    lost_after: int = 7  # no scan for this many business days: we call it lost
    pickup_after: int = 2  # label created, no acceptance scan for this many business days

    def __post_init__(self) -> None:
        if not 0 < self.stalled_after < self.lost_after or self.pickup_after < 1:
            raise ValueError(f"thresholds must satisfy 0 < stalled_after < lost_after and pickup_after >= 1: {self}")


@dataclass(frozen=True)
class ThresholdTable:
    """The default and its overrides, keyed (carrier, service) or (carrier, None)."""

    default: Thresholds = Thresholds()
    overrides: dict[tuple[str, str | None], Thresholds] = field(default_factory=dict)

    def for_shipment(self, carrier: str, service: str) -> Thresholds:
        return self.overrides.get((carrier, service)) or self.overrides.get((carrier, None)) or self.default

    def columns(self, shipments: pd.DataFrame) -> pd.DataFrame:
        """One row of thresholds per shipment row (same index), for vectorised rules."""
        names = [f.name for f in fields(Thresholds)]
        if not self.overrides:
            return pd.DataFrame({n: getattr(self.default, n) for n in names}, index=shipments.index)
        pairs = list(zip(shipments["carrier"], shipments["service"], strict=True))
        chosen = {pair: self.for_shipment(*pair) for pair in set(pairs)}
        return pd.DataFrame([[getattr(chosen[p], n) for n in names] for p in pairs], columns=names,
                            index=shipments.index)


def _merge(base: Thresholds, values: dict[str, Any], where: str) -> Thresholds:
    known = {f.name for f in fields(Thresholds)}
    unknown = set(values) - known - {"service"}
    if unknown:
        raise ValueError(f"{where}: unknown threshold(s) {sorted(unknown)}; known: {sorted(known)}")
    return replace(base, **{k: int(v) for k, v in values.items() if k in known})


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
