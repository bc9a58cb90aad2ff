"""
### delivery_exceptions

Every hour: load orders → fetch tracking (one mapped task per carrier account) → detect
exceptions → compute revised windows → record history → plan messages (outbox) → send → summarise.

Each task computes as of the run's data interval end, so a rerun or backfill of the same logical
date gives the same result and sends nothing twice. Data moves through the history database
(`LASTMILE_DB_URL`); XCom carries counts only. A carrier account that cannot be read fails its own
fetch task (an ops alert) while the others go on; detection treats that account's parcels as in
an unknown state. The last task's log and XCom hold the run summary: what was found, who was told,
what failed. See README.md for configuration.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import TriggerRule, chain, dag, task

from lastmile_airflow.alerts import OpsAlert, run_deadline
from lastmile_airflow.steps import CARRIER_POOL, carrier_accounts, fetch_account, run_step

DEFAULT_ARGS = {
    "owner": "lastmile-ops",
    # Retries apply to transient failures only (lost connection, timeout, locked database, deadlock,
    # HTTP 429/5xx: lastmile.steps.errors.is_transient). lastmile_airflow.steps raises every other failure
    # (bad data, integrity/SQL errors, a missing setting) as AirflowFailException: failed at once, alerted.
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=2),
    "retry_exponential_backoff": True,
    "on_failure_callback": OpsAlert(),  # an ALERT log line, and Apprise through Connection lastmile_ops_webhook
}


@dag(
    dag_id="delivery_exceptions",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 9, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    # A run not finished 45 minutes after it was queued alerts ops like a failure (run by the triggerer).
    deadline=run_deadline(),
    tags=["lastmile", "customer-care"],
    doc_md=__doc__,
)
def delivery_exceptions() -> None:
    load = task(run_step, task_id="load_orders")("load_orders")
    accounts = task(carrier_accounts)()
    fetched = task(fetch_account, task_id="fetch_tracking", pool=CARRIER_POOL,
                   map_index_template="{{ account_name }}").expand(account=accounts)
    # One account down must not stop detection for the others: its parcels become "unknown".
    detect = task(run_step, task_id="detect_exceptions",
                  trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)("detect_exceptions")
    windows = task(run_step, task_id="compute_windows")("compute_windows")
    history = task(run_step, task_id="record_history")("record_history")
    plan = task(run_step, task_id="plan_messages")("plan_messages")
    send = task(run_step, task_id="send_messages")("send_messages")
    summary = task(run_step, task_id="summarise")("summarise")
    chain(load, accounts, fetched, detect, windows, history, plan, send, summary)

delivery_exceptions()
