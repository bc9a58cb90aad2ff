"""`./scripts/demo --ui`, as a new user runs it: the demo's runs, then the Airflow UI on a local port.

The script is run as written (one logical date to keep it short, its own Airflow home, outputs and
port). It must print the URL and the credentials on their own lines; with them, the REST API lists
the demo's successful runs, the ops page's API answers, the reconcile_outbox DAG is listed, and a
person in headless Chromium signs in and sees the grid and the ops page. Ctrl-C (SIGINT to the
script's process group, as a terminal sends it) stops every component it started.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from browser import Chromium, chromium_binary
from conftest import ROOT

pytestmark = pytest.mark.slow
DATE = "2026-11-20T14:00:00+00:00"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def airflow_processes(home: Path) -> list[str]:
    """Processes still running with this demo's Airflow home in their environment."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"AIRFLOW_HOME={home}".encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("demo-ui")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LASTMILE_"))}
    env.update({"AIRFLOW_HOME": str(home / "airflow"), "LASTMILE_OUT_DIR": str(home / "out"),
                "LASTMILE_UI_PORT": str(port), "LASTMILE_DEMO_DATES": DATE, "LASTMILE_SIM_ORDERS": "300"})
    log = home / "demo.log"
    with log.open("w") as out:
        # As from a terminal: Ctrl-C reaches the script even when this test runs in a background job
        # (which starts with SIGINT ignored, and a shell cannot trap a signal ignored on entry).
        proc = subprocess.Popen([str(ROOT / "scripts" / "demo"), "--ui"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 420
    while not re.search(r"^password: \S+$", log.read_text(), re.M):
        if proc.poll() is not None:
            pytest.fail(f"demo --ui exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGINT)
            pytest.fail(f"demo --ui printed no credentials in 420 s:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    text = log.read_text()
    user = re.search(r"^user: (\S+)$", text, re.M).group(1)
    password = re.search(r"^password: (\S+)$", text, re.M).group(1)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "user": user, "password": password, "log": text,
               "proc": proc, "port": port, "home": home / "airflow"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_demo_ui_prints_where_and_how_to_log_in(demo_ui) -> None:
    assert f"Airflow UI: {demo_ui['base']}" in demo_ui["log"]
    assert demo_ui["user"] == "ops" and len(demo_ui["password"]) >= 12


def test_the_rest_api_shows_the_demos_runs_the_ops_page_and_the_reconcile_dag(demo_ui) -> None:
    base = demo_ui["base"]
    bad = requests.post(f"{base}/auth/token", json={"username": demo_ui["user"], "password": "wrong"}, timeout=10)
    assert bad.status_code == 401
    token = requests.post(f"{base}/auth/token", json={"username": demo_ui["user"], "password": demo_ui["password"]},
                          timeout=10).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    runs = requests.get(f"{base}/api/v2/dags/delivery_exceptions/dagRuns", params={"state": "success"},
                        headers=auth, timeout=10).json()["dag_runs"]
    assert [r["logical_date"][:16] for r in runs] == ["2026-11-20T14:00"]
    snapshot = requests.get(f"{base}/lastmile/api/snapshot", headers=auth, timeout=10)
    assert snapshot.status_code == 200 and snapshot.json()["open_cases"]["total"] > 0
    dags = {d["dag_id"] for d in requests.get(f"{base}/api/v2/dags", headers=auth, timeout=10).json()["dags"]}
    assert {"delivery_exceptions", "exception_report", "reconcile_outbox"} <= dags


def test_a_person_signs_in_and_sees_the_grid_and_the_ops_page(demo_ui, tmp_path: Path) -> None:
    out_dir = Path(os.environ.get("LASTMILE_OUT_DIR") or ROOT / "out" / "test")
    out_dir.mkdir(parents=True, exist_ok=True)
    base = demo_ui["base"]
    browser = Chromium(chromium_binary(), tmp_path / "profile")
    try:
        browser.sign_in(f"{base}/dags/delivery_exceptions", demo_ui["user"], demo_ui["password"], timeout=90)
        # The DAG's page with its grid: the task names of the demo's run are drawn.
        browser.wait_for("location.pathname.startsWith('/dags/delivery_exceptions') && "
                         "document.body.innerText.includes('detect_exceptions')", "the grid of the demo's run",
                         timeout=120)
        time.sleep(2)  # let the grid's cells finish drawing before the screenshot
        grid = out_dir / "demo-ui-grid.png"
        browser.screenshot(grid)
        grid_text = browser.js("document.body.innerText")
        browser.call("Page.navigate", session=True, url=f"{base}/lastmile/")
        open_total = browser.wait_for(
            "(() => { const n = document.querySelector('[data-metric=open_total]'); return n && n.textContent })()",
            "the ops page", timeout=90)
        page = out_dir / "demo-ui-ops-page.png"
        browser.screenshot(page)
    finally:
        browser.close()
    print(f"\nscreenshots: {grid}\n             {page}")
    for name in ("load_orders", "fetch_tracking", "compute_windows", "send_messages", "summarise"):
        assert name in grid_text
    assert int(open_total) > 0
    assert grid.stat().st_size > 20_000 and page.stat().st_size > 20_000


def test_ctrl_c_stops_everything_it_started(demo_ui) -> None:
    proc = demo_ui["proc"]
    assert airflow_processes(demo_ui["home"]), "no Airflow component found running before Ctrl-C"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the foreground process group
    assert proc.wait(timeout=120) == 0
    deadline = time.monotonic() + 30
    while (left := airflow_processes(demo_ui["home"])) or port_open(demo_ui["port"]):
        assert time.monotonic() < deadline, f"still running after Ctrl-C: {left}"
        time.sleep(0.5)
