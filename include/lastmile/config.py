"""Settings read from the environment: the configuration contract documented in README.md."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

SOURCES = ("simulated", "sql", "files", "export")
TRANSPORTS = ("file", "sendgrid")


class ConfigError(ValueError):
    """A setting has a value we cannot run with."""


@dataclass(frozen=True)
class Settings:
    db_url: str = field(repr=False)  # may hold a password: never in a repr or a log
    source: str
    email_transport: str
    out_dir: Path
    sim_dir: Path
    sim_seed: int
    sim_orders: int = 3000
    orders_path: Path | None = None  # LASTMILE_SOURCE=files: the folder of CSV/Parquet exports
    orders_db_url: str | None = field(default=None, repr=False)  # LASTMILE_SOURCE=sql: from `lastmile_orders`
    tracking_accounts: tuple[str, ...] = ("simulated",)
    feed_stale_hours: float = 6.0  # no successful fetch for this long: the feed's parcels are "unknown"
    send_lock_wait_seconds: float = 120.0  # how long a sender waits for another run's sender to finish
    send_concurrency: int = 4  # e-mail requests in flight at once
    full_detect: bool = False  # re-detect every parcel in flight every run (a check on the incremental core)

    @property
    def outbox_dir(self) -> Path:
        return self.out_dir / "outbox"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        out_dir = Path(env.get("LASTMILE_OUT_DIR") or PROJECT_ROOT / "out").resolve()
        source = env.get("LASTMILE_SOURCE", "simulated")
        transport = env.get("LASTMILE_EMAIL_TRANSPORT", "file")
        if source not in SOURCES:
            raise ConfigError(f"LASTMILE_SOURCE={source!r}: expected one of {', '.join(SOURCES)}")
        if transport not in TRANSPORTS:
            raise ConfigError(
                f"LASTMILE_EMAIL_TRANSPORT={transport!r}: expected one of {', '.join(TRANSPORTS)}"
            )
        accounts = tuple(a.strip() for a in env.get("LASTMILE_TRACKING_ACCOUNTS", "simulated").split(",")
                         if a.strip())
        if not accounts:
            raise ConfigError("LASTMILE_TRACKING_ACCOUNTS is empty: name at least one carrier account")
        orders_path = env.get("LASTMILE_ORDERS_PATH")
        if source in ("files", "export") and not orders_path:
            raise ConfigError(f"LASTMILE_SOURCE={source} needs LASTMILE_ORDERS_PATH (a folder of CSV or Parquet files)")
        return cls(
            db_url=env.get("LASTMILE_DB_URL") or f"sqlite:///{out_dir / 'lastmile.db'}",
            source=source,
            email_transport=transport,
            out_dir=out_dir,
            sim_dir=Path(env.get("LASTMILE_SIM_DIR") or out_dir / "sim").resolve(),
            sim_seed=int(env.get("LASTMILE_SIM_SEED", "7")),
            sim_orders=int(env.get("LASTMILE_SIM_ORDERS", "3000")),
            orders_path=Path(orders_path).resolve() if orders_path else None,
            orders_db_url=env.get("LASTMILE_ORDERS_DB_URL") or None,
            tracking_accounts=accounts,
            feed_stale_hours=float(env.get("LASTMILE_FEED_STALE_HOURS", "6")),
            send_lock_wait_seconds=float(env.get("LASTMILE_SEND_LOCK_WAIT_SECONDS", "120")),
            send_concurrency=int(env.get("LASTMILE_SEND_CONCURRENCY", "4")),
            full_detect=env.get("LASTMILE_FULL_DETECT", "") == "1",
        )


def base_url(host: str | None, port: int | None, default: str | None) -> str | None:
    """A Connection's host as a base URL: 'http://127.0.0.1:8025' stays, 'api.x.com' gets https://."""
    if not host:
        return default
    url = host if "://" in host else f"https://{host}"
    if port and url.count(":") < 2:
        url = f"{url}:{port}"
    return url.rstrip("/")
