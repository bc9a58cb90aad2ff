"""Airflow Connections -> lastmile client configs. Secrets stay in the Connection, never in code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lastmile.carriers.accounts import SIMULATED, TrackingAccount, account_from_fields

if TYPE_CHECKING:
    from lastmile.email.sendgrid_client import SendGridConfig

# Airflow connection types -> SQLAlchemy drivers we ship (psycopg 3 for Postgres).
SQL_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg", "sqlite": "sqlite"}


def sendgrid_config(conn_id: str = "sendgrid_default") -> SendGridConfig:
    """SendGrid settings from the Connection (see lastmile.email.sendgrid_client.sendgrid_config_from_fields:
    password = API key; host/port override the API base URL; extra: sandbox_mode, asm_group_id, timeout)."""
    from airflow.sdk import Connection

    from lastmile.email.sendgrid_client import sendgrid_config_from_fields

    conn = Connection.get(conn_id)
    return sendgrid_config_from_fields(conn_id, conn.host, conn.port, conn.password, conn.extra_dejson)


def tracking_account(conn_id: str) -> TrackingAccount:
    """A carrier account from its Connection (type easypost/aftership; password = API key)."""
    if conn_id == SIMULATED:
        return TrackingAccount(SIMULATED, SIMULATED)
    from airflow.sdk import Connection

    conn = Connection.get(conn_id)
    return account_from_fields(conn_id, conn.conn_type, conn.host, conn.port, conn.password, conn.extra_dejson)


def orders_db_url(conn_id: str = "lastmile_orders") -> str:
    """The shop database as a SQLAlchemy URL, from a Postgres (or SQLite) Connection.

    Airflow keeps the database name in the Connection's `schema` field; extra `sqlalchemy_url`
    wins when a shop's database needs a driver we do not map.
    """
    from airflow.sdk import Connection
    from sqlalchemy.engine import URL

    conn = Connection.get(conn_id)
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    driver = SQL_DRIVERS.get((conn.conn_type or "").lower())
    if driver is None:
        raise ValueError(f"Airflow connection {conn_id!r} has type {conn.conn_type!r}: use postgres or sqlite, "
                         f"or give extra.sqlalchemy_url")
    if driver == "sqlite":
        return f"sqlite:///{conn.host}"
    return URL.create(driver, username=conn.login or None, password=conn.password or None, host=conn.host or None,
                      port=conn.port or None, database=conn.schema or None).render_as_string(hide_password=False)
