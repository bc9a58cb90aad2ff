"""The command line sends through SendGrid with the same Connection the DAG reads (AIRFLOW_CONN_SENDGRID_DEFAULT)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlalchemy import select

from lastmile.config import Settings
from lastmile.core.brand import load_brand
from lastmile.email.sendgrid_client import (
    DEFAULT_HOST,
    SendGridConfig,
    SendGridConfigError,
    sendgrid_config_from_env,
    sendgrid_config_from_fields,
)
from lastmile.email.transport import SendGridTransport, make_transport
from lastmile.store import schema
from lastmile.store.db import prepare

VAR = "AIRFLOW_CONN_SENDGRID_DEFAULT"
KEY = "SG.secret-key.do-not-leak"


def test_the_cli_run_sends_through_the_connection_in_the_environment(monkeypatch, tmp_path, sendgrid_server, capsys):
    from lastmile.__main__ import main

    monkeypatch.setenv("LASTMILE_EMAIL_TRANSPORT", "sendgrid")
    monkeypatch.setenv("LASTMILE_SOURCE", "simulated")
    monkeypatch.setenv("LASTMILE_TRACKING_ACCOUNTS", "simulated")
    monkeypatch.setenv("LASTMILE_SIM_ORDERS", "200")
    monkeypatch.setenv("LASTMILE_SIM_SEED", "7")
    monkeypatch.setenv("LASTMILE_SIM_DIR", str(tmp_path / "sim"))
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path / "out"))
    monkeypatch.delenv("LASTMILE_DB_URL", raising=False)
    monkeypatch.setenv(VAR, json.dumps({"conn_type": "sendgrid", "host": sendgrid_server.url,
                                        "password": sendgrid_server.api_key, "extra": {"timeout": 5}}))

    assert main(["run", "--as-of", "2026-11-20T14:00:00+00:00"]) == 0

    settings = Settings.from_env()
    with prepare(settings.db_url).connect() as conn:
        rows = [dict(r) for r in conn.execute(select(schema.outbox)).mappings()]
    sent = {r["message_key"] for r in rows if r["state"] == "sent"}
    assert len(sent) >= 3, f"the run sent only {len(sent)} messages"
    assert {r["state"] for r in rows} <= {"sent", "suppressed"}
    assert all(r["transport_ref"].startswith("sendgrid:") for r in rows if r["state"] == "sent")
    keys = Counter(m.body["personalizations"][0]["custom_args"]["message_key"] for m in sendgrid_server.accepted)
    assert keys == Counter({k: 1 for k in sent})
    assert sendgrid_server.api_key not in capsys.readouterr().out


def test_the_json_form_gives_key_host_and_extras():
    env = {VAR: json.dumps({"conn_type": "sendgrid", "host": "http://127.0.0.1", "port": 8025, "password": KEY,
                            "extra": json.dumps({"sandbox_mode": True, "asm_group_id": "42", "timeout": 3})})}
    cfg = sendgrid_config_from_env(env=env)
    assert (cfg.api_key, cfg.host, cfg.sandbox_mode, cfg.asm_group_id, cfg.timeout) == (
        KEY, "http://127.0.0.1:8025", True, 42, 3.0)
    assert KEY not in repr(cfg)
    plain = sendgrid_config_from_env(env={VAR: json.dumps({"conn_type": "sendgrid", "password": KEY,
                                                           "extra": {"sandbox_mode": "false"}})})
    assert (plain.host, plain.sandbox_mode, plain.asm_group_id, plain.timeout) == (DEFAULT_HOST, False, None, 10.0)


@pytest.mark.parametrize("uri", [
    f"sendgrid://http://:{KEY}@127.0.0.1:8025?sandbox_mode=true&asm_group_id=42&timeout=3",  # Airflow's protocol form
    f"sendgrid://:{KEY}@127.0.0.1:8025?scheme=http&sandbox_mode=true&asm_group_id=42&timeout=3",  # as accounts
    f"sendgrid://http://:{KEY}@127.0.0.1:8025?__extra__=%7B%22sandbox_mode%22%3A+true%2C+%22asm_group_id%22"
    f"%3A+42%2C+%22timeout%22%3A+3%7D",
])
def test_the_uri_forms_read_as_airflow_reads_them(uri):
    from airflow.models.connection import Connection

    cfg = sendgrid_config_from_env("sendgrid_default", {VAR: uri})
    assert (cfg.api_key, cfg.host, cfg.sandbox_mode, cfg.asm_group_id, cfg.timeout) == (
        KEY, "http://127.0.0.1:8025", True, 42, 3.0)
    # Airflow's own parser, through the same fields mapping (the plugin's path), agrees.
    conn = Connection(conn_id="sendgrid_default", uri=uri)
    assert sendgrid_config_from_fields("sendgrid_default", conn.host, conn.port, conn.password,
                                       conn.extra_dejson) == cfg


def test_a_uri_with_only_a_key_goes_to_the_public_api():
    cfg = sendgrid_config_from_env(env={VAR: "sendgrid://:SG.a%2Bb.c@"})
    assert (cfg.api_key, cfg.host, cfg.sandbox_mode, cfg.asm_group_id) == ("SG.a+b.c", DEFAULT_HOST, False, None)


def test_the_airflow_plugin_reads_the_same_connection(monkeypatch):
    from lastmile_airflow.connections import sendgrid_config

    monkeypatch.setenv(VAR, json.dumps({"conn_type": "sendgrid", "host": "http://127.0.0.1:8025", "password": KEY,
                                        "extra": {"asm_group_id": 7, "timeout": 4}}))
    assert sendgrid_config() == sendgrid_config_from_env() == SendGridConfig(
        api_key=KEY, host="http://127.0.0.1:8025", asm_group_id=7, timeout=4.0)


def test_without_the_variable_the_error_names_it(monkeypatch, tmp_path):
    monkeypatch.delenv(VAR, raising=False)
    settings = Settings(db_url="sqlite://", source="simulated", email_transport="sendgrid", out_dir=tmp_path,
                        sim_dir=tmp_path, sim_seed=7)
    with pytest.raises(SendGridConfigError, match=f"LASTMILE_EMAIL_TRANSPORT=sendgrid.*set {VAR}"):
        make_transport(settings, load_brand())
    with pytest.raises(SendGridConfigError, match="set AIRFLOW_CONN_SENDGRID_EU"):
        sendgrid_config_from_env("sendgrid_eu", {VAR: f"sendgrid://:{KEY}@"})


def test_make_transport_falls_back_to_the_environment(monkeypatch, tmp_path):
    settings = Settings(db_url="sqlite://", source="simulated", email_transport="sendgrid", out_dir=tmp_path,
                        sim_dir=tmp_path, sim_seed=7)
    monkeypatch.setenv(VAR, f"sendgrid://:{KEY}@127.0.0.1:8025?scheme=http")
    t = make_transport(settings, load_brand())
    assert isinstance(t, SendGridTransport) and t.sender.config.host == "http://127.0.0.1:8025"
    given = SendGridConfig(api_key="SG.given", host="http://127.0.0.1:9")
    assert make_transport(settings, load_brand(), given).sender.config is given


@pytest.mark.parametrize("raw", [
    f"sendgrid://127.0.0.1:{KEY}",                      # the key where the port goes
    f"sendgrid://{KEY}@127.0.0.1",                      # the key as the login: no password
    f"sendgrid://:{KEY}@127.0.0.1?asm_group_id={KEY}",  # values are never quoted
    f'{{"conn_type": "sendgrid", "password": "{KEY}"',  # broken JSON
    json.dumps({"password": KEY, "port": KEY}),
    json.dumps({"password": KEY, "extra": {"asm_group_id": "not-a-number", "timeout": 1}}),
    json.dumps({"password": KEY, "extra": {"timeout": "soon"}}),
    json.dumps({"password": KEY, "extra": "[1, 2]"}),
    f"sendgrid://ht:tp://:{KEY}@127.0.0.1",              # a protocol Airflow refuses
    f"sendgrid://a://b://:{KEY}@127.0.0.1",
])
def test_errors_never_show_the_key(raw):
    with pytest.raises(SendGridConfigError) as err:
        sendgrid_config_from_env(env={VAR: raw})
    assert KEY not in str(err.value) and "do-not-leak" not in str(err.value)
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)
