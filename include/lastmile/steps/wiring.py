"""Which order source and which carrier feed a run uses: the one place real and simulated parts are chosen."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from lastmile.carriers.accounts import EXPORT, SIMULATED, TrackingAccount
from lastmile.carriers.tracking import TrackingSource
from lastmile.config import ConfigError, Settings
from lastmile.shop.export import ExportCarrier, ExportShop
from lastmile.shop.records import OrderSource
from lastmile.shop.sources import FileShop, SqlShop
from lastmile.sim.shop import SimulatedShop


def order_source(settings: Settings, watermarks: Mapping[str, datetime] | None = None) -> OrderSource:
    """The shop system named by LASTMILE_SOURCE."""
    if settings.source == "sql":
        if not settings.orders_db_url:
            raise ConfigError("LASTMILE_SOURCE=sql needs the Airflow connection lastmile_orders "
                              "(or LASTMILE_ORDERS_DB_URL outside Airflow)")
        return SqlShop(settings.orders_db_url, watermarks or {})
    if settings.source == "files":
        assert settings.orders_path is not None  # Settings.from_env insists
        return FileShop(settings.orders_path)
    if settings.source == "export":  # a history export replayed as of each run (backtest --history)
        assert settings.orders_path is not None
        return ExportShop(settings.orders_path)
    return SimulatedShop(settings.sim_dir, settings.sim_seed, settings.sim_orders, watermarks)


def tracking_source(settings: Settings, account: TrackingAccount | None = None,
                    as_of: datetime | None = None, settled: datetime | None = None) -> TrackingSource:
    """The carrier feed behind one tracking account; the simulator's when none is named. An EasyPost
    account with a webhook secret lists what it pushed to us by `as_of`; `settled`: when it was
    last asked about every parcel (carriers.easypost_events.pushed_trackers)."""
    if account is None or account.vendor == SIMULATED:
        return SimulatedShop(settings.sim_dir, settings.sim_seed, settings.sim_orders)
    if account.vendor == EXPORT:
        if settings.orders_path is None:
            raise ConfigError("the export tracking account replays a history export: set LASTMILE_ORDERS_PATH")
        return ExportCarrier(settings.orders_path)
    if account.vendor == "easypost":
        from lastmile.carriers.easypost_client import DEFAULT_BASE_URL, EasyPostClient, EasyPostConfig

        config = EasyPostConfig(api_key=account.api_key, base_url=account.base_url or DEFAULT_BASE_URL,
                                timeout=account.timeout)
        if account.webhook_secret and as_of is not None:
            from lastmile.carriers.easypost_events import PushedEasyPostClient
            from lastmile.store.db import engine_for

            return PushedEasyPostClient(config, engine_for(settings.db_url), account.name, as_of, settled)
        return EasyPostClient(config)
    if account.vendor == "aftership":
        from lastmile.carriers.aftership_client import DEFAULT_BASE_URL as AS_BASE
        from lastmile.carriers.aftership_client import AfterShipClient, AfterShipConfig

        return AfterShipClient(AfterShipConfig(api_key=account.api_key, base_url=account.base_url or AS_BASE,
                                               timeout=account.timeout))
    raise ConfigError(f"tracking account {account.name!r}: unknown vendor {account.vendor!r}")
