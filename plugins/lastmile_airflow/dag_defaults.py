"""What every lastmile DAG shares: its owner, the one retry policy, the ops alert and its start."""

from __future__ import annotations

from typing import Any

import pendulum

from lastmile_airflow.alerts import OpsAlert

START_DATE = pendulum.datetime(2026, 9, 1, tz="UTC")


def default_args(*, retry_delay_minutes: int = 2, backoff: float = 0) -> dict[str, Any]:
    """Task defaults of a lastmile DAG.

    Retries apply to transient failures only (lost connection, timeout, locked database, deadlock,
    HTTP 429/5xx: lastmile.steps.errors.is_transient). lastmile_airflow.steps raises every other
    failure (bad data, integrity/SQL errors, a missing setting) as AirflowFailException: failed at
    once, alerted through OpsAlert (an ALERT log line, and Apprise through the Connection
    lastmile_ops_webhook). `backoff`: the multiplier between retries (Airflow's
    retry_exponential_backoff; 0: a fixed delay).
    """
    return {
        "owner": "lastmile-ops",
        "retries": 2,
        "retry_delay": pendulum.duration(minutes=retry_delay_minutes),
        "retry_exponential_backoff": backoff,
        "on_failure_callback": OpsAlert(),
    }
