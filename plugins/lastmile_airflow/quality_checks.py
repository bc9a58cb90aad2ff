"""The history's data-quality checks as common-sql check operators against the Connection `lastmile_history`.

The checks themselves (name, why, SQL) have one home: lastmile.reporting.quality.CHECKS. Here each
becomes a SQLValueCheckOperator expecting 0 offending rows, so Airflow runs, logs and traces it
(lineage, the UI's rendered SQL) like any other check, and a failure fails that check's own task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lastmile.reporting.quality import Check

HISTORY_CONN_ID = "lastmile_history"

# The day before the run's instant (its data-interval end, as every step computes), as a literal both
# databases compare correctly with a stored instant: Postgres casts it to timestamptz; SQLite stores
# instants as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, which sorts after it from the same second on.
DAY_BEFORE = "'{{ (data_interval_end - macros.timedelta(days=1)).strftime('%Y-%m-%d %H:%M:%S') }}+00'"


def check_sql(check: Check) -> str:
    """The check's SQL with its parameter rendered by Airflow's templating (the operators take none)."""
    return check.sql.replace(":day_before", DAY_BEFORE)


def check_operator(check: Check, conn_id: str = HISTORY_CONN_ID):  # noqa: ANN201 -- an operator, built at parse time
    """A task that fails, naming the check and its count, when any row breaks `check`.

    A broken check fails at once (`retry_on_failure=False`: data does not fix itself by trying
    again) and the failure callback alerts ops; a database that cannot be reached is retried as the
    DAG's `retries` allow.
    """
    from airflow.providers.common.sql.operators.sql import SQLValueCheckOperator

    return SQLValueCheckOperator(task_id=check.name, conn_id=conn_id, sql=check_sql(check), pass_value=0,
                                 retry_on_failure=False, doc_md=f"**{check.name}**: {check.why}. Expects 0 offending rows.")
