"""Ops alerts: a failed task posts to a webhook named by an Airflow Connection, and logs an ALERT."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "lastmile_ops_webhook"


def alert_text(context: dict[str, Any]) -> str:
    """One line an on-call person can act on: which task of which run failed, and why.

    The why is `lastmile.steps.errors.describe`: class names, SQLSTATE and a masked, clipped message,
    never a statement's parameters, a DETAIL line, an e-mail address or a URL's password.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from lastmile.steps.errors import describe, safe_text

    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task = getattr(ti, "task_id", "?")
    index = getattr(ti, "map_index", -1)
    if index is not None and index >= 0:
        task = f"{task}[{context.get('account_name') or index}]"
    run_id = getattr(context.get("dag_run"), "run_id", None) or context.get("run_id", "?")
    error = context.get("exception")
    if error is None:
        reason = "see the task log"
    elif type(error) is AirflowFailException:  # raised by lastmile_airflow.steps with a described, safe text
        reason = safe_text(str(error))
    else:
        reason = describe(error)
    return f"lastmile: {dag_id}.{task} failed in run {run_id} (try {getattr(ti, 'try_number', '?')}): {reason}"


def webhook_url(conn_id: str = WEBHOOK_CONN_ID) -> str | None:
    """The webhook URL (the Connection's host, with its scheme), or None when ops set none."""
    from airflow.sdk import Connection

    from lastmile.carriers.accounts import base_url

    try:
        conn = Connection.get(conn_id)
    except Exception:  # noqa: BLE001 -- no such Connection: alerts go to the log only
        return None
    url = base_url(conn.host, conn.port, None)
    if url and conn.schema:
        url = f"{url}/{conn.schema.lstrip('/')}"
    return url


class OpsAlert(BaseNotifier):
    """on_failure_callback for every lastmile task: an ERROR log line, and a JSON POST
    (`{"text": ...}`, which Slack, Teams and most chat webhooks accept) when the Connection
    `lastmile_ops_webhook` exists. A webhook that fails is logged, never raised: the task's own
    failure is what matters."""

    def __init__(self, conn_id: str = WEBHOOK_CONN_ID) -> None:
        super().__init__()
        self.conn_id = conn_id

    def notify(self, context: Any) -> None:
        import requests

        text = alert_text(context)
        log.error("ALERT %s", text)
        url = webhook_url(self.conn_id)
        if not url:
            return
        for attempt in (1, 2):
            try:
                response = requests.post(url, json={"text": text}, timeout=10)
                if response.status_code < 300:
                    return
                log.warning("ops webhook answered HTTP %s (attempt %d)", response.status_code, attempt)
            except requests.RequestException as err:
                log.warning("ops webhook unreachable (%s, attempt %d)", type(err).__name__, attempt)
