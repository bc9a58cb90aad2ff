"""Airflow Connections -> database URLs and vendor configs, and the vendor types Airflow registers for them.

The databases: a Postgres Connection goes through the provider's PostgresHook and keeps its libpq extras
(sslmode, ...) on the way to the engine; a SQLite Connection's host is the file. The vendor types come
from lastmile's provider entry point, which Airflow reads from the installed package's metadata.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import airflow  # noqa: F401  (puts the plugins folder on sys.path, as in every Airflow component)
import pytest
from sqlalchemy import create_engine, make_url, text

from lastmile.carriers.accounts import TrackingAccount
from lastmile.email.sendgrid_client import SendGridConfig
from lastmile_airflow.connections import history_db_url, orders_db_url

PASSWORD = "s3cr3t-Pa55word/with:odd@chars"
KEY = "EZAK-test-4f1c9d0b7e"
VENDOR_TYPES = {"easypost": "EasyPostHook", "aftership": "AfterShipHook", "sendgrid": "SendGridHook"}


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def postgres_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = "lastmile_orders", **extra: object) -> None:
    set_conn(monkeypatch, conn_id, conn_type="postgres", host="shop-db.internal", port=5433, login="lastmile",
             password=PASSWORD, schema="shop", extra=extra)


# ------------------------------------------------------------------------------------ shop database


def test_a_postgres_extra_reaches_the_engine(monkeypatch):
    postgres_conn(monkeypatch, sslmode="require")
    url = create_engine(orders_db_url()).url
    assert url.query["sslmode"] == "require"
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg", "lastmile", PASSWORD, "shop-db.internal", 5433, "shop")


def test_libpq_extras_ride_along_and_the_providers_own_keys_do_not(monkeypatch):
    postgres_conn(monkeypatch, sslmode="verify-full", sslrootcert="/etc/ssl/shop-ca.pem", connect_timeout=5,
                  sqlalchemy_query={"application_name": "lastmile"}, cursor="dictcursor")
    query = make_url(orders_db_url()).query
    assert query == {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/shop-ca.pem", "connect_timeout": "5",
                     "application_name": "lastmile"}


def test_sqlalchemy_query_wins_over_a_plain_extra(monkeypatch):
    postgres_conn(monkeypatch, sslmode="prefer", sqlalchemy_query={"sslmode": "require"})
    assert make_url(orders_db_url()).query["sslmode"] == "require"


def test_extra_sqlalchemy_url_overrides_everything(monkeypatch):
    postgres_conn(monkeypatch, sqlalchemy_url="mysql+pymysql://shop@db/shop", sslmode="require")
    assert orders_db_url() == "mysql+pymysql://shop@db/shop"


def test_a_sqlite_connection_is_its_host_path(monkeypatch, tmp_path):
    path = tmp_path / "a folder" / "shop%1.db"
    path.parent.mkdir()
    set_conn(monkeypatch, "lastmile_orders", conn_type="sqlite", host=str(path))
    engine = create_engine(orders_db_url())
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x int)"))
    assert path.exists()


def test_an_unmapped_type_names_the_connection_not_its_secrets(monkeypatch):
    set_conn(monkeypatch, "lastmile_orders", conn_type="mysql", host="db", login="u", password=PASSWORD)
    with pytest.raises(ValueError, match="'lastmile_orders' has type 'mysql'") as caught:
        orders_db_url()
    assert PASSWORD not in str(caught.value)


def test_a_structured_extra_is_refused_by_name_without_its_value(monkeypatch):
    postgres_conn(monkeypatch, sslmode="require", ssl={"key": PASSWORD})
    with pytest.raises(ValueError, match="extra 'ssl'") as caught:
        orders_db_url()
    assert PASSWORD not in str(caught.value)


def test_the_password_never_reaches_a_log_line(monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    postgres_conn(monkeypatch, sslmode="require")
    postgres_conn(monkeypatch, "lastmile_history", sslmode="require")
    assert make_url(orders_db_url()).password == make_url(history_db_url()).password == PASSWORD
    out, err = capfd.readouterr()
    lines = [r.getMessage() for r in caplog.records] + [str(r.args) for r in caplog.records]
    for secret in (PASSWORD, quote(PASSWORD, safe="")):  # as typed, and as a URL spells it
        assert not [line for line in [*lines, out, err] if secret in line]


@pytest.mark.parametrize("override", [False, True])
def test_a_url_that_slips_into_a_task_log_is_masked(monkeypatch, override):
    """Airflow masks the password as typed; the URL's percent-encoded spelling must be masked too."""
    from airflow.sdk.log import redact

    if override:
        set_conn(monkeypatch, "lastmile_orders", conn_type="generic",
                 extra={"sqlalchemy_url": f"postgresql+psycopg://u:{quote(PASSWORD, safe='')}@db/shop"})
    else:
        postgres_conn(monkeypatch)
    line = redact(f"connecting to {orders_db_url()}")
    assert PASSWORD not in line and quote(PASSWORD, safe=" +") not in line and quote(PASSWORD, safe="") not in line


@pytest.mark.postgres
def test_the_extras_reach_a_real_postgres_session(monkeypatch, postgres_url):
    """Not only the URL: psycopg connects with them (application_name is libpq's, seen by the server)."""
    real = make_url(postgres_url)
    set_conn(monkeypatch, "lastmile_orders", conn_type="postgres", host=real.host, port=real.port,
             login=real.username, password=real.password, schema=real.database,
             extra={"application_name": "lastmile-orders", "connect_timeout": 5, "sslmode": "prefer"})
    engine = create_engine(orders_db_url())
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_setting('application_name')")).scalar() == "lastmile-orders"
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------- history database


def test_without_a_history_connection_the_caller_keeps_its_env_url(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_LASTMILE_HISTORY", raising=False)
    assert history_db_url() is None


def test_a_sqlite_history_connection(monkeypatch, tmp_path):
    set_conn(monkeypatch, "lastmile_history", conn_type="sqlite", host=str(tmp_path / "history.db"))
    assert history_db_url() == f"sqlite:///{tmp_path / 'history.db'}"


def test_a_postgres_history_connection_keeps_its_extras(monkeypatch):
    postgres_conn(monkeypatch, "lastmile_history", sslmode="require")
    url = create_engine(history_db_url()).url
    assert (url.drivername, url.database, url.query["sslmode"]) == ("postgresql+psycopg", "shop", "require")


def test_a_history_connection_of_another_type_is_an_error_not_a_fallback(monkeypatch):
    set_conn(monkeypatch, "lastmile_history", conn_type="http", host="x")
    with pytest.raises(ValueError, match="'lastmile_history' has type 'http'"):
        history_db_url()


# ------------------------------------------------------------------------------ vendor connection types


@pytest.fixture(scope="module")
def providers():
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_the_provider_is_installed(providers):
    assert "lastmile" in providers.providers, "reinstall: .venv/bin/pip install --no-deps -e ."


def test_the_vendor_types_resolve_to_our_hooks(providers):
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks  # ProvidersManager.hooks is deprecated in Airflow 3.3
    for conn_type, name in VENDOR_TYPES.items():
        info = hooks[conn_type]
        assert info is not None, f"{conn_type}: the hook failed to import"
        assert (info.hook_class_name, info.package_name, info.connection_type, info.connection_testable) == (
            f"lastmile_airflow.hooks.{name}", "lastmile", conn_type, True)
        assert info.connection_id_attribute_name == f"{conn_type}_conn_id"


def test_the_forms_show_the_key_as_api_key_and_the_vendor_url(providers):
    from lastmile.carriers.aftership_client import DEFAULT_BASE_URL as AFTERSHIP
    from lastmile.carriers.easypost_client import DEFAULT_BASE_URL as EASYPOST
    from lastmile.email.sendgrid_client import DEFAULT_HOST as SENDGRID

    urls = {"easypost": EASYPOST, "aftership": AFTERSHIP, "sendgrid": SENDGRID}
    behaviours = providers.field_behaviours
    for conn_type, url in urls.items():
        form = behaviours[conn_type]
        assert form["relabeling"]["password"] == "API key"
        assert set(form["hidden_fields"]) == {"login", "schema"}
        assert form["placeholders"]["host"] == url


def test_the_forms_carry_the_extras_the_readers_read(providers):
    widgets = providers.connection_form_widgets
    expected = {"easypost": {"timeout", "webhook_secret"}, "aftership": {"timeout"},
                "sendgrid": {"timeout", "sandbox_mode", "asm_group_id", "scheme"}}
    for conn_type, fields in expected.items():
        ours = {w.field_name for key, w in widgets.items() if key.startswith(f"extra__{conn_type}__")}
        assert ours == fields
    assert widgets["extra__sendgrid__sandbox_mode"].field["schema"]["type"] == ["boolean", "null"]
    assert widgets["extra__easypost__timeout"].field["value"] == 10


def test_the_api_server_offers_the_forms():
    """What the UI's connection form is built from."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}
    for conn_type, name in VENDOR_TYPES.items():
        assert meta[conn_type].hook_class_name == f"lastmile_airflow.hooks.{name}"
        assert meta[conn_type].standard_fields.password.title == "API key"
        assert meta[conn_type].standard_fields.login.hidden
        assert "timeout" in meta[conn_type].extra_fields


@pytest.mark.parametrize(("conn_type", "config_type"), [("easypost", TrackingAccount),
                                                        ("aftership", TrackingAccount),
                                                        ("sendgrid", SendGridConfig)])
def test_a_hook_hands_back_the_client_config(monkeypatch, conn_type, config_type):
    from lastmile_airflow import hooks

    set_conn(monkeypatch, f"{conn_type}_eu", conn_type=conn_type, password=KEY, host="http://127.0.0.1:8025",
             extra={"timeout": 3})
    hook = getattr(hooks, VENDOR_TYPES[conn_type])(**{f"{conn_type}_conn_id": f"{conn_type}_eu"})
    config = hook.get_conn()
    assert isinstance(config, config_type)
    assert (config.api_key, config.timeout) == (KEY, 3.0)


@pytest.mark.parametrize("conn_type", VENDOR_TYPES)
def test_the_test_button_checks_offline_and_never_shows_the_key(conn_type):
    """Through Airflow's own path: Connection.test_connection -> the registered hook's test_connection."""
    from airflow.sdk import Connection

    ok, message = Connection(conn_id="x", conn_type=conn_type, password=KEY).test_connection()
    assert ok, message
    assert KEY not in message
    for broken in (Connection(conn_id="x", conn_type=conn_type),  # no key
                   Connection(conn_id="x", conn_type=conn_type, password=KEY, host="ftp://files.example"),
                   Connection(conn_id="x", conn_type=conn_type, password=KEY, extra=json.dumps({"timeout": 0}))):
        ok, message = broken.test_connection()
        assert not ok
        assert KEY not in message


def test_the_carrier_types_are_the_vendor_names_accounts_expects():
    from lastmile.carriers.accounts import vendor_of

    for conn_type in ("easypost", "aftership"):
        assert vendor_of("any_account", conn_type) == conn_type
