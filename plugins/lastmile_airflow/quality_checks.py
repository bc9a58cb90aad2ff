"""The history's data-quality checks as common-sql check operators against the Connection `lastmile_history`.

The checks themselves (name, why, SQL) have one home: lastmile.reporting.quality.CHECKS. Here each
becomes a SQLValueCheckOperator expecting 0 offending rows, so Airflow runs, logs and traces it
(lineage, the UI's rendered SQL) like any other check, and a failure fails that check's own task.
"""

from __future__ import annotations

from typing import Any, NoReturn

from airflow.providers.common.sql.operators.sql import SQLValueCheckOperator

from lastmile.reporting.quality import Check

HISTORY_CONN_ID = "lastmile_history"

# The day before the run's instant (its data-interval end, as every step computes), as a literal both
# databases compare correctly with a stored instant: Postgres casts it to timestamptz; SQLite stores
# instants as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC, which sorts after it from the same second on.
# A run triggered without a logical date has no data interval: it computes as of when it was asked
# to run, as lastmile_airflow.steps.as_of_from_context does.
DAY_BEFORE = ("'{{ ((data_interval_end if data_interval_end is defined and data_interval_end else dag_run.run_after)"
              " - macros.timedelta(days=1)).strftime('%Y-%m-%d %H:%M:%S') }}+00'")


def check_sql(check: Check) -> str:
    """The check's SQL with its parameter rendered by Airflow's templating (the operators take none)."""
    return check.sql.replace(":day_before", DAY_BEFORE)


class HistoryCheckOperator(SQLValueCheckOperator):
    """The maintained operator expecting 0 offending rows of one check, failing with the line ops act
    on ("FAIL name: N offending rows - why") instead of its query text."""

    def __init__(self, *, check: Check, conn_id: str = HISTORY_CONN_ID, **kwargs: Any) -> None:
        super().__init__(task_id=check.name, conn_id=conn_id, sql=check_sql(check), pass_value=0,
                         doc_md=f"**{check.name}**: {check.why}. Expects 0 offending rows.", **kwargs)
        self.check_name = check.name
        self.why = check.why

    def check_value(self, records: Any) -> None:
        self.found = int(records[0]) if records and records[0] is not None else None
        self.log.info("%s: %s offending rows", self.check_name, self.found)
        super().check_value(records)

    def _raise_exception(self, exception_string: str) -> NoReturn:
        found = getattr(self, "found", None)
        super()._raise_exception(f"FAIL {self.check_name}: {'some' if found is None else found} offending rows "
                                 f"- {self.why}")


def check_operator(check: Check, conn_id: str = HISTORY_CONN_ID) -> HistoryCheckOperator:
    """A task that fails, naming the check, its count and what it means, when any row breaks `check`.

    A broken check fails at once (`retry_on_failure=False`: data does not fix itself by trying
    again) and the failure callback alerts ops; a database that cannot be reached is retried as the
    DAG's `retries` allow.
    """
    return HistoryCheckOperator(check=check, conn_id=conn_id, retry_on_failure=False)
