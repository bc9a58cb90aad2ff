"""Ops alerts name the failure (classes, SQLSTATE, ids), never row data or secrets, and reach ops
through Apprise (the Connection lastmile_ops_webhook): here a local webhook behind a json:// URL."""

from __future__ import annotations

import json
from types import SimpleNamespace

import airflow  # noqa: F401  (puts the plugins folder on sys.path, as in every Airflow component)
import psycopg.errors as pg
import pytest
from servers.webhook import WebhookServer
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa

from lastmile_airflow.alerts import DeadlineMissedAlert, OpsAlert, alert_text, deadline_text

CUSTOMER = {"email": "zoe@example.com", "name": "Zoë Example"}
LEAKS = ("zoe@example.com", "Zoë", "Example", "[SQL", "parameters", "DETAIL")


def context(error: BaseException | None, task_id: str = "load_orders") -> dict:
    ti = SimpleNamespace(dag_id="delivery_exceptions", task_id=task_id, map_index=-1, try_number=1)
    return {"ti": ti, "dag_run": SimpleNamespace(run_id="scheduled__2026-11-20T14:00:00+00:00"), "exception": error}


def assert_no_leak(alert: str) -> None:
    for leak in LEAKS:
        assert leak not in alert, f"{leak!r} leaked into the alert: {alert}"


def apprise_connection(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """The Connection as ops set it: conn_type apprise, the Apprise URL(s) in extra.config (AppriseHook's form)."""
    monkeypatch.setenv("AIRFLOW_CONN_LASTMILE_OPS_WEBHOOK", json.dumps(
        {"conn_type": "apprise", "extra": {"config": {"path": path, "tag": "ops"}}}))


def logged_text(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture) -> str:
    """Log lines: through logging, or to stdout/stderr once Airflow's structlog set-up took over."""
    out = capsys.readouterr()
    return caplog.text + out.out + out.err


def test_an_alert_from_a_data_error_carries_classes_and_sqlstate_not_the_row() -> None:
    err = sa.DataError("INSERT INTO customers (email, name) VALUES (%(email)s, %(name)s)", CUSTOMER,
                       pg.StringDataRightTruncation("value too long for type character varying(5)"))
    alert = alert_text(context(err))
    assert_no_leak(alert)
    assert alert == ("lastmile: delivery_exceptions.load_orders failed in run scheduled__2026-11-20T14:00:00+00:00 "
                     "(try 1): DataError (psycopg StringDataRightTruncation, SQLSTATE 22001): "
                     "value too long for type character varying(5)")


def test_an_alert_from_the_step_wrapper_shows_its_described_reason() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from lastmile_airflow.steps import classified

    with pytest.raises(AirflowFailException) as caught, classified("load_orders"):
        raise sa.IntegrityError("INSERT ...", CUSTOMER, pg.UniqueViolation(
            'duplicate key value violates unique constraint "customers_email_key"\n'
            "DETAIL:  Key (email)=(zoe@example.com) already exists."))
    alert = alert_text(context(caught.value))
    assert_no_leak(alert)
    assert alert.endswith("(try 1): IntegrityError (psycopg UniqueViolation, SQLSTATE 23505) in load_orders: "
                          'duplicate key value violates unique constraint "customers_email_key"')


def test_an_alert_masks_a_password_in_a_url_and_e_mail_addresses() -> None:
    err = RuntimeError("cannot reach postgresql+psycopg://lastmile:s3cr3t-pw@db.internal/history for zoe@example.com")
    alert = alert_text(context(err))
    assert "s3cr3t-pw" not in alert and "zoe@example.com" not in alert
    assert "postgresql+psycopg://lastmile:***@db.internal/history for z***@e***.com" in alert


def test_an_alert_without_an_exception_points_to_the_log() -> None:
    assert alert_text(context(None)).endswith("(try 1): see the task log")


@pytest.mark.postgres
def test_real_postgres_errors_reach_the_webhook_without_customer_data(postgres_url, monkeypatch, caplog,
                                                                      capsys) -> None:
    """Real psycopg errors whose text holds the row (parameters, DETAIL, a value quoted in the message)."""
    engine = create_engine(postgres_url)
    errors: list[sa.DBAPIError] = []
    with engine.connect() as conn:
        conn.execute(text("CREATE TEMP TABLE people (email varchar(5), name text, UNIQUE (name))"))
        conn.execute(text("INSERT INTO people (name) VALUES (:name)"), CUSTOMER)
        conn.commit()
        for sql in ("INSERT INTO people (email, name) VALUES (:email, 'other')",  # 22001, value too long
                    "INSERT INTO people (name) VALUES (:name)",  # 23505, DETAIL names the row
                    "SELECT CAST(:name AS integer)"):  # 22P02, the value in the message's first line
            with pytest.raises(sa.DBAPIError) as caught:
                conn.execute(text(sql), CUSTOMER)
            errors.append(caught.value)
            conn.rollback()
    engine.dispose()
    assert [e.orig.sqlstate for e in errors] == ["22001", "23505", "22P02"]
    assert "zoe@example.com" in str(errors[0]) and "Zoë Example" in str(errors[1].orig)  # what used to leak

    with WebhookServer() as ops:
        apprise_connection(monkeypatch, ops.apprise_url())
        for err in errors:
            OpsAlert()(context(err))
        posted = [alert["message"] for alert in ops.alerts()]
    assert len(posted) == 3
    logged = logged_text(caplog, capsys)
    assert logged.count("ALERT lastmile:") >= 3
    assert_no_leak(logged)
    for alert in posted:
        assert_no_leak(alert)
    assert "DataError (psycopg StringDataRightTruncation, SQLSTATE 22001)" in posted[0]
    assert 'IntegrityError (psycopg UniqueViolation, SQLSTATE 23505): duplicate key value violates unique ' \
           'constraint "people_name_key"' in posted[1]
    assert 'DataError (psycopg InvalidTextRepresentation, SQLSTATE 22P02): invalid input syntax for type ' \
           'integer: "***"' in posted[2]


# ----------------------------------------------------------------------------------- through Apprise

SECRET = "s3cr3t-pw"
LEAKY = RuntimeError(f"cannot reach postgresql+psycopg://lastmile:{SECRET}@db.internal/history for zoe@example.com")


def test_a_failed_task_alerts_ops_through_the_apprise_connection(monkeypatch, caplog, capsys) -> None:
    """The failure callback as Airflow calls it (`notifier(context)`): one post of Apprise's JSON
    payload, the alert line as its message; the URL's password goes as HTTP auth, never in the text."""
    with WebhookServer() as ops:
        apprise_connection(monkeypatch, ops.apprise_url(f"ops:{SECRET}"))
        OpsAlert()(context(LEAKY, task_id="fetch_tracking"))
    (post,) = ops.requests
    assert post.method == "POST" and post.path == "/hooks/ops" and post.headers["authorization"].startswith("Basic ")
    assert {k: v for k, v in post.body.items() if k != "version"} == {
        "title": "lastmile: task failed", "type": "failure", "attachments": [],
        "message": "lastmile: delivery_exceptions.fetch_tracking failed in run scheduled__2026-11-20T14:00:00+00:00 "
                   "(try 1): RuntimeError: cannot reach postgresql+psycopg://lastmile:***@db.internal/history "
                   "for z***@e***.com"}
    logged = logged_text(caplog, capsys)
    assert "ALERT lastmile: delivery_exceptions.fetch_tracking failed" in logged
    for seen in (post.raw_body.decode(), logged):
        assert SECRET not in seen and "zoe@example.com" not in seen


def test_an_http_connection_from_before_apprise_still_gets_its_text_body(monkeypatch) -> None:
    """The Connection's old form (conn_type http, host = the webhook URL) keeps working, through
    Apprise's json:// plugin, with exactly the body it had: {"text": ...}; the URL's query stays."""
    with WebhookServer() as ops:
        monkeypatch.setenv("AIRFLOW_CONN_LASTMILE_OPS_WEBHOOK",
                           json.dumps({"conn_type": "http", "host": f"{ops.url}?code=abc"}))
        OpsAlert()(context(None))
    (post,) = ops.requests
    assert post.body == {"text": alert_text(context(None))}
    assert post.query == {"code": ["abc"]}


def test_without_the_connection_the_alert_is_the_log_line_only(monkeypatch, caplog, capsys) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_LASTMILE_OPS_WEBHOOK", raising=False)
    OpsAlert()(context(None))  # no exception
    assert "ALERT lastmile: delivery_exceptions.load_orders failed" in logged_text(caplog, capsys)


def test_a_notifier_that_fails_is_logged_and_tried_once_more_never_raised(monkeypatch, caplog, capsys) -> None:
    with WebhookServer() as ops:
        apprise_connection(monkeypatch, ops.apprise_url())
        ops.script(500, 500)
        OpsAlert()(context(None))  # no exception
        assert [r.status for r in ops.requests] == [500, 500]
        ops.script(503)
        OpsAlert()(context(None))
        assert [r.status for r in ops.requests] == [500, 500, 503, 200]  # the second try got through
    apprise_connection(monkeypatch, "json://127.0.0.1:9/closed")  # nothing listens: refused
    OpsAlert()(context(None))
    apprise_connection(monkeypatch, "nonsense://nowhere")  # a URL Apprise has no plugin for
    OpsAlert()(context(None))
    logged = logged_text(caplog, capsys)
    assert logged.count("ops alert not delivered through Connection lastmile_ops_webhook") >= 5
    assert "names no Apprise service" in logged


# ----------------------------------------------------------------------------------- deadline alerts

def deadline_context(**run: object) -> dict:
    """What the scheduler hands a deadline callback (Deadline.handle_miss): the run as the REST API
    shows it, in JSON form, and the deadline."""
    import pendulum

    return {"dag_run": {"dag_run_id": "scheduled__2026-11-20T14:00:00+00:00", "dag_id": "delivery_exceptions",
                        "queued_at": "2026-11-20T15:00:04.123456Z", "state": "running",
                        "conf": {"requested_by": "zoe@example.com"}, "note": "Zoë Example asked", **run},
            "deadline": {"id": "0193", "deadline_time": pendulum.datetime(2026, 11, 20, 15, 45, 4, 123456)}}


def test_a_missed_deadline_reads_as_one_line_naming_the_dag_and_run() -> None:
    alert = deadline_text(deadline_context())
    assert alert == ("lastmile: delivery_exceptions run scheduled__2026-11-20T14:00:00+00:00 missed its 45-minute "
                     "deadline: not finished (queued 2026-11-20 15:00 UTC, due 2026-11-20 15:45 UTC, state running)")
    assert_no_leak(alert)  # the run's conf and note are never read
    assert deadline_text({}) == "lastmile: ? run ? missed its deadline: not finished (state unknown)"
    # A run that ended after its deadline (the scheduler saw it late) did miss it.
    assert deadline_text(deadline_context(state="success", end_date="2026-11-20T15:52:00Z")).endswith(
        "missed its 45-minute deadline: finished late (queued 2026-11-20 15:00 UTC, due 2026-11-20 15:45 UTC, "
        "ended 2026-11-20 15:52 UTC, state success)")
    # One that failed before it is not late: Airflow still calls back (it drops only a successful
    # run's deadline), but the failure alerted already.
    assert deadline_text(deadline_context(state="failed", end_date="2026-11-20T15:10:00Z")) is None


def test_the_deadline_callback_sends_through_the_same_connection(monkeypatch, caplog, capsys) -> None:
    """As the triggerer runs it: `await DeadlineMissedAlert(context=...)` (AsyncCallback of a notifier)."""
    import asyncio

    with WebhookServer() as ops:
        apprise_connection(monkeypatch, ops.apprise_url(f"ops:{SECRET}"))

        async def triggerer() -> None:
            await DeadlineMissedAlert(context=deadline_context())

        asyncio.run(triggerer())
    (alert,) = ops.alerts()
    assert (alert["title"], alert["type"]) == ("lastmile: run late", "warning")
    assert alert["message"] == deadline_text(deadline_context())
    logged = logged_text(caplog, capsys)
    assert f"ALERT {alert['message']}" in logged
    assert SECRET not in logged and SECRET not in json.dumps(alert)

    with WebhookServer() as ops:  # a run that failed in time: no second alert for it
        apprise_connection(monkeypatch, ops.apprise_url())

        async def failed_in_time() -> None:
            await DeadlineMissedAlert(context=deadline_context(state="failed", end_date="2026-11-20T15:10:00Z"))

        asyncio.run(failed_in_time())
    assert len(ops.requests) == 0
