"""Which failures Airflow may retry, and how a failure is named without row data or secrets."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import psycopg
import psycopg.errors as pg
import pytest
import requests
from sqlalchemy import exc as sa

from lastmile.carriers.easypost_client import EasyPostClientError, EasyPostUnavailable
from lastmile.config import ConfigError
from lastmile.core.privacy import mask_url
from lastmile.email.outgoing import Rejected, TryLater
from lastmile.steps.errors import TransientStepError, chain_names, describe, is_transient
from lastmile.store.db import Busy

PARAMS = {"email": "zoe@example.com", "name": "Zoë Example"}
SQL = "INSERT INTO customers (email, name) VALUES (%(email)s, %(name)s)"


def wrapped(cls: type[sa.DBAPIError], orig: BaseException, **kwargs) -> sa.DBAPIError:
    """What SQLAlchemy raises: the driver's error with the statement and its parameters."""
    return cls(SQL, PARAMS, orig, **kwargs)


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} for url", response=response)


def caused(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def during(outer: BaseException, context: BaseException) -> BaseException:
    outer.__context__ = context
    return outer


def locked_sqlite(tmp: Path) -> sqlite3.OperationalError:
    """A real SQLITE_BUSY: one connection holds the write lock, the other may not wait."""
    holder = sqlite3.connect(tmp / "locked.db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(tmp / "locked.db", timeout=0)
    try:
        other.execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as err:
        return err
    finally:
        holder.close()
        other.close()
    raise AssertionError("the second writer was not refused")


TRANSIENT = {
    "sa OperationalError(psycopg connection refused)": lambda: wrapped(
        sa.OperationalError, psycopg.OperationalError("connection failed: Connection refused")),
    "psycopg OperationalError, unwrapped": lambda: psycopg.OperationalError("server closed the connection"),
    "connection_invalidated": lambda: wrapped(sa.DBAPIError, Exception("gone"), connection_invalidated=True),
    "SQLSTATE 08006 connection failure": lambda: wrapped(sa.OperationalError, pg.ConnectionFailure("x")),
    "SQLSTATE 40001 serialization failure": lambda: wrapped(sa.OperationalError, pg.SerializationFailure("x")),
    "SQLSTATE 40P01 deadlock": lambda: wrapped(sa.OperationalError, pg.DeadlockDetected("x")),
    "SQLSTATE 53300 too many connections": lambda: wrapped(sa.OperationalError, pg.TooManyConnections("x")),
    "SQLSTATE 55P03 lock not available": lambda: wrapped(sa.OperationalError, pg.LockNotAvailable("x")),
    "SQLSTATE 57014 statement timeout": lambda: wrapped(sa.OperationalError, pg.QueryCanceled("x")),
    "SQLSTATE 57P01 admin shutdown": lambda: wrapped(sa.OperationalError, pg.AdminShutdown("x")),
    "SQLSTATE 57P03 cannot connect now": lambda: wrapped(sa.OperationalError, pg.CannotConnectNow("x")),
    "sqlite database is locked": lambda: wrapped(sa.OperationalError, sqlite3.OperationalError("database is locked")),
    "sa pool timeout": lambda: sa.TimeoutError("QueuePool limit reached"),
    "sa DisconnectionError": lambda: sa.DisconnectionError("gone"),
    "TimeoutError": lambda: TimeoutError("timed out"),
    "ConnectionRefusedError": lambda: ConnectionRefusedError(111, "Connection refused"),
    "ConnectionResetError": lambda: ConnectionResetError(104, "Connection reset by peer"),
    "requests.ConnectionError": lambda: requests.ConnectionError("Max retries exceeded"),
    "requests.ReadTimeout": lambda: requests.ReadTimeout("read timed out"),
    "HTTP 503 escaped a client": lambda: http_error(503),
    "HTTP 429 escaped a client": lambda: http_error(429),
    "vendor unavailable": lambda: EasyPostUnavailable("GET /trackers: gave up", status=503),
    "e-mail provider: try later": lambda: TryLater("rate limited", 429),
    "another run holds a lock": lambda: Busy("another run holds the send lock"),
    "wrapper caused by a lost connection": lambda: caused(
        RuntimeError("step failed"), wrapped(sa.OperationalError, psycopg.OperationalError("refused"))),
    "already classified transient": lambda: TransientStepError("OperationalError in load_orders"),
}

PERMANENT = {
    "SQLSTATE 23505 unique violation": lambda: wrapped(sa.IntegrityError, pg.UniqueViolation("dup")),
    "SQLSTATE 23502 not null": lambda: wrapped(sa.IntegrityError, pg.NotNullViolation("null")),
    "SQLSTATE 22001 too long": lambda: wrapped(sa.DataError, pg.StringDataRightTruncation("too long")),
    "SQLSTATE 22P02 bad text": lambda: wrapped(sa.DataError, pg.InvalidTextRepresentation("bad")),
    "SQLSTATE 42601 syntax": lambda: wrapped(sa.ProgrammingError, pg.SyntaxError("syntax")),
    "SQLSTATE 42P01 undefined table": lambda: wrapped(sa.ProgrammingError, pg.UndefinedTable("no table")),
    "SQLSTATE 54000 program limit (an OperationalError)": lambda: wrapped(
        sa.OperationalError, pg.ProgramLimitExceeded("too complex")),
    "sqlite IntegrityError": lambda: wrapped(sa.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")),
    "sqlite no such table": lambda: wrapped(sa.OperationalError, sqlite3.OperationalError("no such table: x")),
    "sa StatementError (parameter processing)": lambda: sa.StatementError("bad", SQL, PARAMS, TypeError("x")),
    "KeyError from bad data": lambda: KeyError("customer_id"),
    "ValueError from bad data": lambda: ValueError("not a date"),
    "ConfigError": lambda: ConfigError("LASTMILE_SOURCE='x'"),
    "HTTP 404 escaped a client": lambda: http_error(404),
    "vendor refused the request": lambda: EasyPostClientError("POST /trackers: HTTP 422", status=422),
    "e-mail provider rejected": lambda: Rejected("bad address", 400),
    "PermissionError (an OSError, not a connection error)": lambda: PermissionError("credentials refused"),
    "unknown RuntimeError": lambda: RuntimeError("something"),
    "integrity error wrapped": lambda: caused(RuntimeError("step failed"),
                                              wrapped(sa.IntegrityError, pg.UniqueViolation("dup"))),
    "bad data while handling a lost connection": lambda: during(KeyError("x"), ConnectionResetError()),
}


@pytest.mark.parametrize("make", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_failures_are_retried(make) -> None:
    assert is_transient(make()) is True


@pytest.mark.parametrize("make", PERMANENT.values(), ids=PERMANENT.keys())
def test_deterministic_failures_are_not_retried(make) -> None:
    assert is_transient(make()) is False


def test_a_real_locked_sqlite_database_is_transient(tmp_path: Path) -> None:
    err = locked_sqlite(tmp_path)
    assert is_transient(err) and is_transient(wrapped(sa.OperationalError, err))
    assert "SQLITE_BUSY" in describe(err)


def test_a_cycle_in_the_exception_chain_ends() -> None:
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__context__, b.__context__ = b, a
    assert is_transient(a) is False and chain_names(a) == "RuntimeError <- RuntimeError"


def test_describe_names_classes_and_sqlstate_never_parameters_nor_detail() -> None:
    orig = pg.UniqueViolation('duplicate key value violates unique constraint "customers_email_key"\n'
                              "DETAIL:  Key (email)=(zoe@example.com) already exists.")
    text = describe(wrapped(sa.IntegrityError, orig), "load_orders")
    assert text == ('IntegrityError (psycopg UniqueViolation, SQLSTATE 23505) in load_orders: '
                    'duplicate key value violates unique constraint "customers_email_key"')


def test_describe_masks_values_a_driver_quotes_in_its_first_line() -> None:
    orig = pg.InvalidTextRepresentation('invalid input syntax for type integer: "Zoë Example"')
    text = describe(wrapped(sa.DataError, orig), "load_orders")
    assert "Zoë" not in text and 'integer: "***"' in text and "SQLSTATE 22P02" in text


def test_describe_of_a_statement_error_gives_classes_only() -> None:
    text = describe(sa.StatementError("'Zoë Example' is not a date", SQL, PARAMS, TypeError("Zoë")), "x")
    assert text == "StatementError (TypeError) in x"


def test_describe_masks_a_password_in_a_url() -> None:
    err = ValueError("cannot reach postgresql+psycopg://lastmile:s3cr3t-pw@db.internal:5432/history")
    text = describe(err, "load_orders")
    assert "s3cr3t-pw" not in text
    assert text == "ValueError in load_orders: cannot reach postgresql+psycopg://lastmile:***@db.internal:5432/history"


def test_describe_masks_emails_clips_long_messages_and_drops_sql_tails() -> None:
    err = ValueError("customer zoe@example.com: " + "x" * 1000)
    text = describe(err)
    assert "zoe@example.com" not in text and "z***@e***.com" in text and len(text) < 330
    wrapper = RuntimeError(f"load failed: {wrapped(sa.DataError, pg.StringDataRightTruncation('too long'))}")
    assert "Zoë" not in describe(wrapper) and "[SQL" not in describe(wrapper)


def test_describe_of_a_wrapper_names_its_database_cause() -> None:
    err = caused(RuntimeError("step failed"), wrapped(sa.DataError, pg.StringDataRightTruncation("too long")))
    assert describe(err, "x") == ("RuntimeError in x: step failed "
                                  "(cause: DataError (psycopg StringDataRightTruncation, SQLSTATE 22001): too long)")


@pytest.mark.parametrize(("text", "masked"), [
    ("postgresql://app:s3cret@db/x", "postgresql://app:***@db/x"),
    ("redis://:pw@cache:6379/0 and https://u:p%40ss@h.example/x?y=1",
     "redis://:***@cache:6379/0 and https://u:***@h.example/x?y=1"),
    ("smtp://user:pa@ss:w@mail.example:25", "smtp://user:***@mail.example:25"),
    ("https://user@h/x http://127.0.0.1:8080/a@b", "https://user@h/x http://127.0.0.1:8080/a@b"),
])
def test_mask_url(text: str, masked: str) -> None:
    assert mask_url(text) == masked


# --------------------------------------------------------------------- the Airflow wrapper (steps.py)


def fail_with(err: BaseException):
    def step() -> None:
        raise err
    return step


def test_a_deterministic_error_fails_the_task_without_retry_and_without_its_text(caplog, capsys) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from lastmile_airflow.steps import classified

    err = wrapped(sa.IntegrityError, pg.UniqueViolation("duplicate key\nDETAIL:  Key (email)=(zoe@example.com)"))
    with caplog.at_level(logging.ERROR, logger="lastmile_airflow.steps"), \
            pytest.raises(AirflowFailException) as caught, classified("load_orders"):
        raise err
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # not chained into the log
    assert str(caught.value) == "IntegrityError (psycopg UniqueViolation, SQLSTATE 23505) in load_orders: duplicate key"
    logged = caplog.text + capsys.readouterr().out  # through logging, or stdout once Airflow's structlog took over
    assert "sqlalchemy.IntegrityError <- psycopg.UniqueViolation" in logged and "not retried" in logged
    assert "zoe@example.com" not in logged and "Zoë" not in logged


def test_a_transient_error_is_raised_for_airflow_to_retry() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from lastmile.steps.errors import TransientStepError
    from lastmile_airflow.steps import classified

    err = wrapped(sa.OperationalError, psycopg.OperationalError("connection failed: Connection refused"))
    with pytest.raises(TransientStepError) as caught, classified("load_orders"):
        raise err
    assert not isinstance(caught.value, AirflowFailException) and caught.value.__suppress_context__
    assert "Zoë" not in str(caught.value) and "OperationalError" in str(caught.value)


def test_airflow_outcomes_pass_through_the_wrapper() -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from lastmile_airflow.steps import classified

    for outcome in (AirflowFailException("data-quality checks failed: x"), AirflowSkipException("nothing")):
        with pytest.raises(type(outcome)) as caught, classified("check_quality"):
            raise outcome
        assert caught.value is outcome


def test_run_step_fails_fast_on_a_config_error(monkeypatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from lastmile_airflow.steps import run_step

    monkeypatch.setenv("LASTMILE_SOURCE", "nonsense")
    with pytest.raises(AirflowFailException, match=r"ConfigError in load_orders: LASTMILE_SOURCE='nonsense'"):
        run_step("load_orders", data_interval_end=None, logical_date=__import__("pendulum").now("UTC"))


def test_a_password_in_a_url_query_string_is_masked_too():
    from lastmile.core.privacy import mask_url
    from lastmile.store.db import masked_url

    url = "postgresql+psycopg://app@db:5432/shop?sslmode=require&password=QsecretPW&options=-csearch_path%3Dx"
    assert "QsecretPW" not in mask_url(url) and "password=***" in mask_url(url)
    assert "QsecretPW" not in masked_url(url) and "sslmode=require" in masked_url(url)
    assert "W0rd" not in masked_url("postgresql://postgres:p@ss:W0rd@127.0.0.1:5432/test")


def test_the_command_line_reports_a_failure_in_one_safe_line(tmp_path, monkeypatch, capsys):
    from lastmile.__main__ import main

    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    monkeypatch.setenv("LASTMILE_SOURCE", "files")
    monkeypatch.setenv("LASTMILE_ORDERS_PATH", str(tmp_path / "nowhere"))
    monkeypatch.setenv("LASTMILE_DB_URL", "postgresql+psycopg://postgres:p@ss:W0rd@127.0.0.1:5432/test")
    monkeypatch.delenv("LASTMILE_TRACEBACK", raising=False)
    assert main(["run", "--as-of", "2026-11-20T14:00:00+00:00"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lastmile: failed: ") and err.count("\n") == 1
    assert "W0rd" not in err and "Traceback" not in err
