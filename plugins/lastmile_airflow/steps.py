"""Run lastmile pipeline steps inside Airflow tasks: the only place Airflow meets the domain package."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import traceback
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lastmile.config import Settings

log = logging.getLogger(__name__)

# Every carrier-API task runs in this pool: its slots cap how many feeds are read at once across
# runs and backfills (each mapped instance is one account, so an account never runs twice at once
# while max_active_runs=1). Created by `airflow pools set` in scripts/demo and docker-compose.yml.
CARRIER_POOL = "carrier_api"


def as_of_from_context(context: dict[str, Any]) -> datetime:
    """The instant a run computes for: its data interval's end, never the wall clock.

    A manual run with no logical date falls back to when it was asked to run (`run_after`).
    """
    for key in ("data_interval_end", "logical_date"):
        value = context.get(key)
        if value is not None:
            return value
    return context["dag_run"].run_after


@contextlib.contextmanager
def classified(step: str) -> Iterator[None]:
    """Run a step so that only a failure that can heal reaches Airflow's retries.

    A deterministic failure (bad data, an integrity or SQL error, a missing setting) is raised as
    AirflowFailException: the task fails at once, without retries, and on_failure_callback still
    alerts ops (Airflow 3.3: task_runner._run_task_and_map_outcome maps AirflowFailException to
    FAILED without consulting retries). A transient one (lost connection, timeout, locked database,
    deadlock, HTTP 429/5xx) is raised as TransientStepError, which Airflow retries as `retries` allows.
    Both carry `describe(err)` only and are raised `from None`: the original's text may hold a
    statement's parameters (customer e-mails, names), which must not reach the task log or the alert.
    The class chain and the frames (no messages, no values) are logged at ERROR for ops.
    """
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowRescheduleException,
        AirflowSkipException,
        DagRunTriggerException,
        DownstreamTasksSkipped,
    )

    from lastmile.steps.errors import TransientStepError, chain_names, describe, is_transient

    try:
        yield
    except (AirflowFailException, AirflowSkipException, AirflowRescheduleException, DownstreamTasksSkipped,
            DagRunTriggerException):
        raise  # Airflow's own outcomes, already decided (and worded safely) by the step
    except Exception as err:  # noqa: BLE001 -- classified and re-raised below
        transient = is_transient(err)
        text = describe(err, step)
        frames = "; ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                           for f in traceback.extract_tb(err.__traceback__)[-6:])
        log.error("lastmile %s failed, %s: %s [chain: %s] [at: %s]", step,
                  "transient, Airflow may retry" if transient else "deterministic, not retried",
                  text, chain_names(err), frames)
        if transient:
            raise TransientStepError(text) from None
        raise AirflowFailException(text) from None


def _settings() -> Settings:
    from lastmile_airflow.connections import airflow_settings

    return airflow_settings()


def _done(step: str, as_of: datetime, counts: dict[str, Any]) -> dict[str, Any]:
    log.info("lastmile %s as of %s: %s", step, as_of.isoformat(), json.dumps(counts, sort_keys=True, default=str))
    return counts


def run_step(step: str, **context: Any) -> dict[str, Any]:
    """Call lastmile.steps.pipeline.<step>(settings, as_of); the return value (counts only) goes to XCom."""
    with classified(step):
        pipeline = importlib.import_module("lastmile.steps.pipeline")  # heavy (pandas): import at run time only
        as_of = as_of_from_context(context)
        settings = _settings()
        kwargs = {}
        if step == "send_messages" and settings.email_transport == "sendgrid":
            from lastmile_airflow.connections import sendgrid_config

            kwargs["sendgrid"] = sendgrid_config()
        counts = getattr(pipeline, step)(settings, as_of, **kwargs)
        if step == "summarise":  # the run's story, readable in the last task's log
            from lastmile.reporting.summary import format_summary

            log.info("\n%s", format_summary(counts))
        return _done(step, as_of, counts)


def carrier_accounts() -> list[str]:
    """The carrier accounts to fetch (LASTMILE_TRACKING_ACCOUNTS): one mapped fetch task each."""
    from lastmile.config import Settings

    with classified("carrier_accounts"):
        return list(Settings.from_env().tracking_accounts)


def fetch_account(account: str, **context: Any) -> dict[str, Any]:
    """Fetch one carrier account. A feed that is down fails this task only, without Airflow retries:
    the client already retried with backoff, and the next hourly run is the next attempt."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from lastmile.steps.errors import describe
    from lastmile_airflow.connections import tracking_account

    get_current_context()["account_name"] = account  # names the map index in the UI
    step = f"fetch_tracking[{account}]"
    with classified(step):
        pipeline = importlib.import_module("lastmile.steps.pipeline")
        as_of = as_of_from_context(context)
        try:
            counts = pipeline.fetch_tracking(_settings(), as_of, tracking_account(account))
        except pipeline.FeedDown as err:  # never retried by Airflow, whatever caused it
            raise AirflowFailException(describe(err, step)) from None
        return _done(step, as_of, counts)


def build_report(**context: Any) -> dict[str, str]:
    """The KPI report of the last 30 days, as HTML and CSV, under LASTMILE_OUT_DIR/report/<day>/."""
    from datetime import timedelta

    from lastmile.reporting.report import write
    from lastmile.store.db import engine_for

    with classified("build_report"):
        as_of = as_of_from_context(context)
        settings = _settings()
        folder = settings.out_dir / "report" / as_of.strftime("%Y-%m-%d")
        since = (as_of - timedelta(days=30)).date()
        engine = engine_for(settings.db_url)
        paths = {"html": str(write(engine, since, folder / "report.html")),
                 "csv": str(write(engine, since, folder / "csv", "csv"))}
    log.info("lastmile report since %s: %s", since, paths)
    return paths
