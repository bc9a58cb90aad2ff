"""
### delivery_exceptions

Every hour: load orders → fetch tracking → detect exceptions → compute revised windows →
record history → plan messages (outbox) → send → summarise.

Each task computes as of the run's data interval end, so a rerun or backfill of the same logical
date gives the same result and sends nothing twice. Data moves through the history database
(`LASTMILE_DB_URL`); XCom carries counts only. The last task's log and XCom hold the run summary:
what was found, who was told, what failed. See README.md for configuration.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import chain, dag, task

from lastmile.steps import STEPS
from lastmile_airflow.steps import run_step

DEFAULT_ARGS = {
    "owner": "lastmile-ops",
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=2),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="delivery_exceptions",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 9, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lastmile", "customer-care"],
    doc_md=__doc__,
)
def delivery_exceptions() -> None:
    chain(*[task(run_step, task_id=step)(step) for step in STEPS])


delivery_exceptions()
