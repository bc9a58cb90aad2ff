"""Carrier tracking accounts: which feeds a shop has, and how each is reached.

An account is named after the Airflow Connection that holds its key (`easypost_default`,
`aftership_default`, `easypost_eu`, ...). The vendor comes from the Connection's type, or failing
that from the name's prefix. `simulated` is the built-in account of the default run.

This module knows nothing of Airflow: the plugin reads a Connection with Airflow's own API and
hands its fields to `account_from_fields`; the command line reads the same Connection from the
`AIRFLOW_CONN_<ID>` environment variable (Airflow's JSON or URI form) with `account_from_env`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from lastmile.config import base_url

VENDORS = ("simulated", "easypost", "aftership", "export")
SIMULATED = "simulated"
EXPORT = "export"  # a history export's scans.csv, replayed as of each run (backtest --history)
# Vendors whose API lists the trackers it updated since an instant (AfterShip's GET /trackings
# updated_at_min): an hour asks them what changed, not about every parcel in flight
# (steps/fetch_tracking.py; carriers.tracking.ChangeListing). EasyPost has no such filter.
LISTS_CHANGES = frozenset({"aftership"})
# Vendors that push what changed to us instead (EasyPost's `tracker.updated` webhook, verified and
# stored by carriers.easypost_events): an account of theirs with a webhook secret is read like
# one that lists changes, from what it pushed.
PUSHES_CHANGES = frozenset({"easypost"})


class AccountError(ValueError):
    """An account is configured in a way we cannot fetch with."""


@dataclass(frozen=True)
class TrackingAccount:
    name: str
    vendor: str
    api_key: str = field(default="", repr=False)
    base_url: str | None = None  # None: the vendor's public API
    timeout: float = 10.0
    # The secret EasyPost signs its webhook deliveries with (the Connection's extra `webhook_secret`):
    # set, the account's changes are pushed to us and an hour reads those, not every parcel.
    webhook_secret: str = field(default="", repr=False)


def lists_changes(account: TrackingAccount) -> bool:
    """Whether an hour can ask `account` what changed since an instant instead of about every
    parcel in flight: the vendor lists its updated trackers, or pushes them and we hold the secret
    that proves a push came from it."""
    return account.vendor in LISTS_CHANGES or (account.vendor in PUSHES_CHANGES and bool(account.webhook_secret))


def payload_format(vendor: str) -> str:
    """Which parser reads this vendor's trackers: the simulator speaks EasyPost's shape."""
    return "easypost" if vendor == SIMULATED else vendor


def vendor_of(name: str, conn_type: str | None = None) -> str:
    for candidate in (conn_type or "", name):
        for vendor in VENDORS:
            if candidate.lower().startswith(vendor):
                return vendor
    raise AccountError(f"tracking account {name!r}: cannot tell the vendor; give its Airflow connection "
                       f"the type easypost or aftership (or name it easypost_... / aftership_...)")


def account_from_fields(name: str, conn_type: str | None, host: str | None, port: int | None,
                        password: str | None, extra: Mapping[str, Any] | None) -> TrackingAccount:
    """The account for one Connection: password = API key; host, when set, overrides the base URL."""
    vendor = vendor_of(name, conn_type)
    if vendor in (SIMULATED, EXPORT):  # no API, no key
        return TrackingAccount(name, vendor)
    if not password:
        raise AccountError(f"Airflow connection {name!r} has no password: put the {vendor} API key there")
    extra = extra or {}
    secret = str(extra.get("webhook_secret") or "") if vendor in PUSHES_CHANGES else ""
    return TrackingAccount(name, vendor, api_key=password, base_url=base_url(host, port, None),
                           timeout=float(extra.get("timeout", 10)), webhook_secret=secret)


def account_from_env(name: str, env: Mapping[str, str] | None = None) -> TrackingAccount:
    """The account from `AIRFLOW_CONN_<NAME>` (Airflow's JSON or URI form) — for the command line."""
    env = os.environ if env is None else env
    if name in (SIMULATED, EXPORT):
        return TrackingAccount(name, name)
    var = f"AIRFLOW_CONN_{name.upper()}"
    raw = (env.get(var) or "").strip()
    if not raw:
        raise AccountError(f"no connection {name!r}: set {var} (JSON or URI, as Airflow reads it)")
    if raw.startswith("{"):
        conn = json.loads(raw)
        extra = conn.get("extra") or {}
        return account_from_fields(name, conn.get("conn_type"), conn.get("host"), conn.get("port"),
                                   conn.get("password"), json.loads(extra) if isinstance(extra, str) else extra)
    parts = urlsplit(raw)  # e.g. easypost://:KEY@127.0.0.1:8080/v2?scheme=http
    extra = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    scheme = extra.pop("scheme", "https")
    port = f":{parts.port}" if parts.port else ""
    host = f"{scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}" if parts.hostname else None
    return account_from_fields(name, parts.scheme, host, None, unquote(parts.password or ""), extra)
