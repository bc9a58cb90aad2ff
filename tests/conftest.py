"""Test setup. Airflow reads its configuration at import, so the environment is fixed here first."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TMP = Path(tempfile.mkdtemp(prefix="lastmile-tests-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
if os.environ.get("AIRFLOW_HOME") == str(ROOT / ".airflow"):
    # pytest run by hand after `source scripts/env.sh`: never reset the demo's Airflow database or
    # write into its outputs; use the homes ./scripts/test uses.
    os.environ["AIRFLOW_HOME"] = str(ROOT / ".airflow" / "test")
    if os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") in (None, f"sqlite:///{ROOT / '.airflow' / 'airflow.db'}"):
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{ROOT / '.airflow' / 'test' / 'airflow.db'}"
    if os.environ.get("LASTMILE_OUT_DIR") == str(ROOT / "out"):
        os.environ["LASTMILE_OUT_DIR"] = str(ROOT / "out" / "test")
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers (scripts/test runs pytest-xdist): each needs its own Airflow metadata database
    # and outputs, as tests reset and fill them: a folder of its own inside the inherited ones.
    for inherited in ("AIRFLOW_HOME", "LASTMILE_OUT_DIR"):
        if os.environ.get(inherited):
            os.environ[inherited] = str(Path(os.environ[inherited]) / worker)
    if os.environ.get("AIRFLOW_HOME"):
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{Path(os.environ['AIRFLOW_HOME']) / 'airflow.db'}"
os.environ.setdefault("AIRFLOW_HOME", str(_TMP / "airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                      f"sqlite:///{Path(os.environ['AIRFLOW_HOME']) / 'airflow.db'}")
os.environ.setdefault("LASTMILE_OUT_DIR", str(_TMP / "out"))
# dag.test() cannot finish a run of a DAG with a Deadline Alert in Airflow 3.3.2 (see
# lastmile_airflow.alerts.run_deadline); the deadline's own test parses the DAG with it.
os.environ["LASTMILE_RUN_DEADLINE_MINUTES"] = "0"
Path(os.environ["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)

import pytest  # noqa: E402

PARSE_TIME = "dag_parse_seconds"  # a test's property, which pytest-xdist brings back from its worker
FIXTURES = ROOT.parent / "shared" / "fixtures"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    times = {report.nodeid.rsplit("[", 1)[-1].rstrip("]"): value
             for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", [])
             for name, value in getattr(report, "user_properties", []) if name == PARSE_TIME}
    if times:
        terminalreporter.section("DAG parse times")
        for name, seconds in sorted(times.items()):
            terminalreporter.write_line(f"{name}: {seconds * 1000:.0f} ms")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.exists():
        pytest.fail(f"shared fixtures not found at {FIXTURES}: clone the project beside ../shared")
    return FIXTURES


POSTGRES_URL = os.environ.get("LASTMILE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture()
def postgres_url() -> str:
    """A fresh schema on the real local Postgres; in CI its absence fails the test, never skips it."""
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"lastmile_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as err:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI: {err}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {err}")
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture()
def postgres_database() -> str:
    """A fresh database on the real local Postgres (e.g. a shop's own order database), dropped after."""
    import uuid

    from sqlalchemy import create_engine, make_url, text

    name = f"lastmile_shop_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as err:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI: {err}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {err}")
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh history database, migrated (the tests' explicit migration step, as `python -m lastmile
    migrate` is the demo's): a SQLite file, and the real Postgres (its own schema)."""
    from lastmile.store.db import prepare

    url = f"sqlite:///{tmp_path / 'history.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    prepare(url)
    return url


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A fresh Airflow metadata database, once per session (Airflow's own reset)."""
    from airflow.utils import db

    db.resetdb()


@pytest.fixture(scope="session")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default seeded shop, generated once and shared read-only by the tests that need it."""
    from lastmile.sim import simulator

    folder = tmp_path_factory.mktemp("sim")
    simulator.ensure(folder, seed=7)
    return folder


from servers.easypost import easypost_server  # noqa: E402,F401  (fixtures offered to every test)
from servers.fixtures import sendgrid_server  # noqa: E402,F401
