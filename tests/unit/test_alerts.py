"""Ops alerts name the failure (classes, SQLSTATE, ids), never row data or secrets."""

from __future__ import annotations

import json
from types import SimpleNamespace

import airflow  # noqa: F401  (puts the plugins folder on sys.path, as in every Airflow component)
import psycopg.errors as pg
import pytest
from servers.webhook import WebhookServer
from sqlalchemy import create_engine, text
from sqlalchemy import exc as sa

from lastmile_airflow.alerts import OpsAlert, alert_text

CUSTOMER = {"email": "zoe@example.com", "name": "Zoë Example"}
LEAKS = ("zoe@example.com", "Zoë", "Example", "[SQL", "parameters", "DETAIL")


def context(error: BaseException | None, task_id: str = "load_orders") -> dict:
    ti = SimpleNamespace(dag_id="delivery_exceptions", task_id=task_id, map_index=-1, try_number=1)
    return {"ti": ti, "dag_run": SimpleNamespace(run_id="scheduled__2026-11-20T14:00:00+00:00"), "exception": error}


def assert_no_leak(alert: str) -> None:
    for leak in LEAKS:
        assert leak not in alert, f"{leak!r} leaked into the alert: {alert}"


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
        monkeypatch.setenv("AIRFLOW_CONN_LASTMILE_OPS_WEBHOOK", json.dumps({"conn_type": "http", "host": ops.url}))
        for err in errors:
            OpsAlert().notify(context(err))
        posted = ops.texts()
    assert len(posted) == 3
    # The ALERT lines: through logging, or to stdout once Airflow's structlog set-up took over.
    logged = caplog.text + capsys.readouterr().out
    assert logged.count("ALERT lastmile:") >= 3
    assert_no_leak(logged)
    for alert in posted:
        assert_no_leak(alert)
    assert "DataError (psycopg StringDataRightTruncation, SQLSTATE 22001)" in posted[0]
    assert 'IntegrityError (psycopg UniqueViolation, SQLSTATE 23505): duplicate key value violates unique ' \
           'constraint "people_name_key"' in posted[1]
    assert 'DataError (psycopg InvalidTextRepresentation, SQLSTATE 22P02): invalid input syntax for type ' \
           'integer: "***"' in posted[2]
