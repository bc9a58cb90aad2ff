"""Settings read from the environment: the configuration contract documented in README.md."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

SOURCES = ("simulated",)
TRANSPORTS = ("file", "sendgrid")


class ConfigError(ValueError):
    """A setting has a value we cannot run with."""


@dataclass(frozen=True)
class Settings:
    db_url: str
    source: str
    email_transport: str
    out_dir: Path
    sim_dir: Path
    sim_seed: int
    sim_orders: int = 3000

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
        return cls(
            db_url=env.get("LASTMILE_DB_URL") or f"sqlite:///{out_dir / 'lastmile.db'}",
            source=source,
            email_transport=transport,
            out_dir=out_dir,
            sim_dir=Path(env.get("LASTMILE_SIM_DIR") or out_dir / "sim").resolve(),
            sim_seed=int(env.get("LASTMILE_SIM_SEED", "7")),
            sim_orders=int(env.get("LASTMILE_SIM_ORDERS", "3000")),
        )
