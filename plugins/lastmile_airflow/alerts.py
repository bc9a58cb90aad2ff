"""Ops alerts: a failed task, or a run past its deadline, logs an ALERT line and notifies ops through
Apprise (the apache-airflow-providers-apprise notifier and hook) with the services the Connection
`lastmile_ops_webhook` names: Slack, Teams, e-mail, a generic JSON webhook, ... (docs/ops-alerts.md).

What is sent is one line made here (`alert_text`, `deadline_text`): DAG, task, run and a described
reason, never row data, an e-mail address or a URL's password. No Connection: the log line only.
A notifier that fails is logged, never raised: the task's own failure (or the late run) is what matters.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from airflow.providers.apprise.notifications.apprise import AppriseNotifier
from apprise import Apprise, NotifyType

log = logging.getLogger(__name__)

WEBHOOK_CONN_ID = "lastmile_ops_webhook"

# Apprise's json:// plugin posts {"version", "title", "message", "attachments", "type"}; these
# payload maps drop all but the message and call it "text": the `{"text": ...}` body chat webhooks take.
TEXT_ONLY = (("version", ""), ("title", ""), ("attachments", ""), ("type", ""), ("message", "text"))


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


def deadline_text(context: dict[str, Any]) -> str | None:
    """One line for a run that missed its Deadline Alert: the DAG, the run, its deadline and state.

    `context` is what the scheduler hands a deadline callback: {"dag_run": the run as the REST API
    shows it, "deadline": {"id", "deadline_time"}}. Only ids, times and the state are used (never the
    run's conf or note, which a person may have typed anything into).

    None when the run had ended by its deadline: Airflow drops the deadline of a run that succeeds in
    time but not of one that fails in time, and that one's failure has alerted ops already.
    """
    from lastmile.steps.errors import safe_text

    run = context.get("dag_run") or {}
    queued = _instant(run.get("queued_at"))
    due = _instant((context.get("deadline") or {}).get("deadline_time"))
    ended = _instant(run.get("end_date"))
    dag_id = safe_text(str(run.get("dag_id") or "?"))
    run_id = safe_text(str(run.get("dag_run_id") or run.get("run_id") or "?"))
    state = safe_text(str(run.get("state") or "unknown"))
    if run.get("run_type") == "backfill":
        # A backfill creates all its runs queued at once: those waiting their turn are not late.
        log.info("%s run %s is a backfill run (%s): no deadline alert", dag_id, run_id, state)
        return None
    if ended and due and ended <= due:
        log.info("%s run %s ended (%s) before its deadline: no deadline alert", dag_id, run_id, state)
        return None
    within = "its deadline"
    if queued and due:
        within = f"its {round((due - queued).total_seconds() / 60)}-minute deadline"
    times = [f"{label} {moment:%Y-%m-%d %H:%M} UTC" for label, moment in
             (("queued", queued), ("due", due), ("ended", ended)) if moment]
    return (f"lastmile: {dag_id} run {run_id} missed {within}: {'finished late' if ended else 'not finished'} "
            f"({', '.join([*times, f'state {state}'])})")


def _mask_service_urls(conn: Any) -> None:
    """Every Apprise URL of the Connection joins Airflow's masked secrets before Apprise sees it:
    Apprise logs a URL it cannot use ("Unsupported URL: …") in full, token included."""
    from airflow.sdk.log import mask_secret

    config = (conn.extra_dejson or {}).get("config")
    entries = config if isinstance(config, list) else [config] if config else []
    for entry in entries:
        path = entry.get("path") if isinstance(entry, dict) else None
        for url in (path if isinstance(path, list) else [path] if path else []):
            mask_secret(str(url))
    if conn.host:
        mask_secret(str(conn.host))


def _instant(value: Any) -> datetime | None:
    """A UTC datetime from what a deadline context holds (a datetime, or ISO text after JSON)."""
    import pendulum

    if isinstance(value, datetime):
        return pendulum.instance(value).in_tz("UTC")
    if isinstance(value, str) and value:
        try:
            return pendulum.parse(value).in_tz("UTC")
        except (ValueError, TypeError):
            return None
    return None


def legacy_apprise_url(conn: Any) -> str | None:
    """The Connection's form before Apprise (an `http` Connection whose host is the webhook URL) as an
    Apprise json:// URL that posts exactly what was posted before: `{"text": ...}`.

    http → json://, https → jsons://; the URL's own query parameters stay query parameters (`-name`).
    """
    from lastmile.config import base_url

    url = base_url(conn.host, conn.port, None)
    if not url:
        return None
    if conn.schema:
        url = f"{url}/{conn.schema.lstrip('/')}"
    parts = urlsplit(url)
    scheme = {"http": "json", "https": "jsons"}.get(parts.scheme.lower())
    if scheme is None:
        return None
    query = [f":{field}={quote(to)}" for field, to in TEXT_ONLY]
    query += [f"-{quote(k)}={quote(v)}" for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((scheme, parts.netloc, parts.path or "/", "&".join(query), ""))


class OpsAlert(AppriseNotifier):
    """on_failure_callback for every lastmile task: an ERROR `ALERT ...` log line, and the alert
    through Apprise to the services of the Connection `lastmile_ops_webhook` (conn_type `apprise`,
    extra `{"config": {"path": "<Apprise URL(s)>", "tag": ...}}`, as AppriseHook reads it).

    An older `http` Connection with the webhook URL as host still works: the URL goes to Apprise's
    json:// plugin with the body it had before, `{"text": ...}` (`legacy_apprise_url`).

    The provider's own notify() drops Apprise's result, so a delivery that failed would pass
    unseen; this one sends through the same hook and Connection, checks the result, tries once
    more, and logs a failure (never the URL, which may hold a token) instead of raising it.
    """

    default_title = "lastmile: task failed"
    default_type = NotifyType.FAILURE

    def __init__(self, conn_id: str = WEBHOOK_CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("title", self.default_title)
        kwargs.setdefault("notify_type", self.default_type)
        super().__init__(body="", apprise_conn_id=conn_id, **kwargs)

    @property
    def conn_id(self) -> str:
        return self.apprise_conn_id

    def message(self, context: Any) -> str | None:
        """The alert's one line; None: nothing to alert."""
        return alert_text(context)

    # -- sync: task callbacks, in the task's worker process
    def notify(self, context: Any) -> None:
        text = self._announce(context)
        if text is None:
            return
        try:
            conn = self.hook.get_connection(self.apprise_conn_id)
        except Exception as err:  # noqa: BLE001 -- no Connection: the alert is the log line
            self._no_connection(err)
            return
        try:
            services = self._services(conn)
            for attempt in (1, 2) if services else ():
                if services.notify(**self._send_args(text)):
                    return
                log.warning("ops alert not delivered through Connection %s (attempt %d)", self.conn_id, attempt)
        except Exception as err:  # noqa: BLE001 -- never fail the caller for an alert
            log.warning("ops alert not delivered through Connection %s: %s", self.conn_id, type(err).__name__)

    # -- async: Deadline Alert callbacks, in the triggerer (`await OpsAlert(context=...)`)
    async def async_notify(self, context: Any) -> None:
        from airflow.providers.common.compat.connection import get_async_connection

        text = self._announce(context)
        if text is None:
            return
        try:
            conn = await get_async_connection(self.apprise_conn_id)
        except Exception as err:  # noqa: BLE001
            self._no_connection(err)
            return
        try:
            services = self._services(conn)
            for attempt in (1, 2) if services else ():
                if await services.async_notify(**self._send_args(text)):
                    return
                log.warning("ops alert not delivered through Connection %s (attempt %d)", self.conn_id, attempt)
        except Exception as err:  # noqa: BLE001
            log.warning("ops alert not delivered through Connection %s: %s", self.conn_id, type(err).__name__)

    def _announce(self, context: Any) -> str | None:
        try:
            text = self.message(context)
        except Exception as err:  # noqa: BLE001 -- an alert that cannot be described is still an alert
            text = f"lastmile: an alert could not be described ({type(err).__name__}); see the logs"
        if text is not None:
            log.error("ALERT %s", text)
        return text

    def _no_connection(self, err: Exception) -> None:
        if type(err).__name__ == "AirflowNotFoundException":
            log.info("no Connection %s: the alert went to the log only", self.conn_id)
        else:
            log.warning("Connection %s could not be read (%s): the alert went to the log only",
                        self.conn_id, type(err).__name__)

    def _services(self, conn: Any) -> Apprise:
        """The Apprise services the Connection names (none: logged, and the alert stays in the log)."""
        services = Apprise()
        _mask_service_urls(conn)
        if "config" in conn.extra_dejson:
            self.hook.set_config_from_conn(conn=conn, apprise_obj=services)
        elif url := legacy_apprise_url(conn):
            services.add(url)
        if not services:
            log.warning("Connection %s names no Apprise service (extra.config.path): the alert went to the log only",
                        self.conn_id)
        return services

    def _send_args(self, text: str) -> dict[str, Any]:
        return {"body": text, "title": self.title or "", "notify_type": self.notify_type,
                "body_format": self.body_format, "tag": self.tag, "attach": self.attach,
                "interpret_escapes": self.interpret_escapes}


class DeadlineMissedAlert(OpsAlert):
    """Deadline Alert callback: `AsyncCallback(DeadlineMissedAlert)` on a DAG's `deadline=`.

    When a run misses its deadline the scheduler queues the callback and the triggerer awaits
    `DeadlineMissedAlert(context=...)`: the same ALERT log line and the same Connection as a failed
    task, with `deadline_text` (nothing for a run that failed before its deadline: its failure alerted).
    """

    default_title = "lastmile: run late"
    default_type = NotifyType.WARNING

    def __init__(self, conn_id: str = WEBHOOK_CONN_ID, context: Any = None, **kwargs: Any) -> None:
        super().__init__(conn_id, context=context, **kwargs)

    def message(self, context: Any) -> str | None:
        return deadline_text(context)


DEADLINE_ENV = "LASTMILE_RUN_DEADLINE_MINUTES"


def run_deadline() -> Any:
    """delivery_exceptions' Deadline Alert: a run not finished LASTMILE_RUN_DEADLINE_MINUTES (45) after
    it was queued alerts ops through DeadlineMissedAlert (run by the triggerer); 0 means none.

    `airflow dags test` (the demo's runs) and `dag.test()` run with 0: in Airflow 3.3.2 a successful
    test run of a DAG that has a deadline crashes (dag.test() keeps the deadline in its encoded form
    and DagRun.update_state then looks it up as a row id). Such runs are never queued, so a deadline
    would never apply to them anyway.
    """
    import os
    from datetime import timedelta

    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    raw = os.environ.get(DEADLINE_ENV, "45").strip()
    try:
        minutes = int(raw)
    except ValueError:  # a typo must not make the DAG disappear: the default, and say so
        log.error("%s=%r is not a whole number of minutes: using 45", DEADLINE_ENV, raw)
        minutes = 45
    if minutes <= 0:
        return None
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(minutes=minutes),
                         callback=AsyncCallback(DeadlineMissedAlert))
