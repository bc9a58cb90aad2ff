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

from airflow.sdk import TaskGroup, dag, task

from lastmile.reporting.quality import CHECKS
from lastmile_airflow.dag_defaults import START_DATE, default_args
from lastmile_airflow.quality_checks import check_operator
from lastmile_airflow.steps import build_report


@dag(
    dag_id="exception_report",
    schedule="@daily",
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retry_delay_minutes=5),
    tags=["lastmile", "analytics", "ops"],
    doc_md=__doc__,
)
def exception_report() -> None:
    with TaskGroup("quality_checks"):
        for check in CHECKS:
            check_operator(check)
    task(build_report, task_id="build_report")()  # independent: a failed check must not hide the KPIs


exception_report()
