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

from airflow.sdk import TriggerRule, chain, dag, task

from lastmile_airflow.alerts import run_deadline
from lastmile_airflow.dag_defaults import START_DATE, default_args
from lastmile_airflow.steps import CARRIER_POOL, carrier_accounts, fetch_account, run_step


@dag(
    dag_id="delivery_exceptions",
    schedule="@hourly",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay_minutes=2, backoff=2.0),
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
