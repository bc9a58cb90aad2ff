"""
### exception_report

Every day: check the exception history's data quality (a case with no evidence, a message sent for
a case never opened, a carrier feed silent for a day, an ambiguous e-mail waiting over a day, a
window already past when planned) and build the KPI report (HTML and CSV) analysts and ops read.
Each check is a common-sql check task (group `quality_checks`) on the history Connection
`lastmile_history`; a failed check fails its own task, which alerts ops.
See docs/analyst-cookbook.md for the same KPIs in SQL.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import TaskGroup, dag, task

from lastmile.reporting.quality import CHECKS
from lastmile_airflow.alerts import OpsAlert
from lastmile_airflow.quality_checks import check_operator
from lastmile_airflow.steps import build_report

DEFAULT_ARGS = {
    "owner": "lastmile-ops",
    # Retries apply to transient failures only (lost connection, timeout, locked database, deadlock,
    # HTTP 429/5xx: lastmile.steps.errors.is_transient). lastmile_airflow.steps raises every other failure
    # (bad data, integrity/SQL errors, a missing setting) as AirflowFailException: failed at once, alerted.
    "retries": 2,
    "retry_delay": pendulum.duration(minutes=5),
    "on_failure_callback": OpsAlert(),
}


@dag(
    dag_id="exception_report",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 9, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["lastmile", "analytics", "ops"],
    doc_md=__doc__,
)
def exception_report() -> None:
    with TaskGroup("quality_checks"):
        for check in CHECKS:
            check_operator(check)
    task(build_report, task_id="build_report")()  # independent: a failed check must not hide the KPIs


exception_report()
