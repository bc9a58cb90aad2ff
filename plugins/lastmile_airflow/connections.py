"""Airflow Connections -> lastmile client configs. Secrets stay in the Connection, never in code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lastmile.carriers.accounts import SIMULATED, TrackingAccount, account_from_fields

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from lastmile.config import Settings
    from lastmile.email.sendgrid_client import SendGridConfig

POSTGRES_TYPES = ("postgres", "postgresql")
SQLITE_TYPE = "sqlite"
OVERRIDE_EXTRA = "sqlalchemy_url"  # extra that bypasses the mapping (a driver we do not map)


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
    """The shop database as a SQLAlchemy URL string (password included: for create_engine, never a log).

    A Postgres Connection goes through the provider's PostgresHook (psycopg 3 driver, `schema` = database),
    its libpq extras (sslmode, connect_timeout, ...) carried into the URL; a SQLite Connection's host is the
    file's path; extra `sqlalchemy_url` wins when a shop's database needs a driver we do not map.
    """
    from airflow.sdk import Connection

    return _sqlalchemy_url(Connection.get(conn_id))


def history_db_url(conn_id: str = "lastmile_history") -> str | None:
    """lastmile's own history database from its Connection, as orders_db_url reads it; None when the
    Connection is not defined, so the caller keeps LASTMILE_DB_URL."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    return _sqlalchemy_url(conn)


def _sqlalchemy_url(conn: Any) -> str:
    extra = conn.extra_dejson or {}
    if extra.get(OVERRIDE_EXTRA):
        override = str(extra[OVERRIDE_EXTRA])
        _mask_url_password(override)
        return override
    conn_type = (conn.conn_type or "").lower()
    if conn_type in POSTGRES_TYPES:
        url = _postgres_url(conn)
    elif conn_type == SQLITE_TYPE:
        url = _sqlite_url(conn)
    else:
        raise ValueError(f"Airflow connection {conn.conn_id!r} has type {conn.conn_type!r}: use postgres or "
                         f"sqlite, or give extra.{OVERRIDE_EXTRA}")
    _mask_url_password(url)
    return url.render_as_string(hide_password=False)


def _mask_url_password(url: URL | str) -> None:
    """Airflow's log masker knows a Connection's password as typed, but a URL string spells it
    percent-encoded ('/' as %2F, ...), which it would print as is; the URL's spelling is registered too.
    (Extra sqlalchemy_url is not a field Airflow masks at all.)"""
    from airflow.sdk.log import mask_secret
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):  # create_engine will refuse it; nothing to mask here
        return
    if password:
        password = str(password)
        mask_secret(password)
        encoded = quote(password, safe=" +")  # as URL.render_as_string writes it
        if encoded != password:
            mask_secret(encoded)


def _postgres_url(conn: Any) -> URL:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    # The Connection already fetched is handed over, so the hook does not ask the secrets backends again.
    hook = PostgresHook(postgres_conn_id=conn.conn_id, connection=conn)
    url = hook.sqlalchemy_url
    # The provider's sqlalchemy_url only copies extra `sqlalchemy_query` into the URL; the libpq settings
    # (sslmode, sslrootcert, connect_timeout, options, ...) reach psycopg only through its own get_conn().
    # An engine built from the URL would silently connect without them (e.g. without TLS), so they are
    # carried over here: the same extras get_conn() passes, with `sqlalchemy_query` winning on a clash.
    skip = set(hook.ignored_extra_options) | {OVERRIDE_EXTRA}
    libpq: dict[str, str] = {}
    for key, value in (conn.extra_dejson or {}).items():
        if key in skip or value is None:
            continue
        if isinstance(value, dict | list):  # the value may be a secret: name the key only
            raise ValueError(f"Airflow connection {conn.conn_id!r}: extra {key!r} is not a libpq parameter "
                             f"value (a string or number); move it out of the extras or into {OVERRIDE_EXTRA}")
        libpq[key] = str(value)
    return url.update_query_dict({**libpq, **url.query})


def _sqlite_url(conn: Any) -> URL:
    from sqlalchemy.engine import URL

    # URL.create, not SqliteHook.get_uri(): the hook unquotes the whole URI (a '%' or '?' in the path
    # breaks it) and sends every extra to sqlite3.connect, which refuses names it does not know.
    if not conn.host:
        raise ValueError(f"Airflow connection {conn.conn_id!r} (sqlite) has no host: put the database "
                         f"file's path there")
    return URL.create("sqlite", database=conn.host)


def airflow_settings() -> Settings:
    """lastmile's settings inside Airflow: the environment's, with the databases from Connections.

    The history is the Connection `lastmile_history` when it exists (LASTMILE_DB_URL otherwise: the
    command line's way, and the fallback of a deployment that has not made the Connection); the shop
    database of LASTMILE_SOURCE=sql is the Connection `lastmile_orders`.
    """
    import dataclasses

    from lastmile.config import Settings

    settings = Settings.from_env()
    history = history_db_url()
    if history:
        settings = dataclasses.replace(settings, db_url=history)
    if settings.source == "sql" and not settings.orders_db_url:
        settings = dataclasses.replace(settings, orders_db_url=orders_db_url())
    return settings
