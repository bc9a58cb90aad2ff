"""The "Delivery exceptions" page: its numbers, Airflow's login in front of it, and a real browser.

1. `ops_snapshot` on a small hand-made history returns exactly its numbers (SQLite and Postgres).
2. A real `airflow api-server` (simple auth manager, a Viewer with a password) serves the page only
   to a logged-in user: 401/redirect to Airflow's login without a token, 403 with a forged one.
3. Headless Chromium opens the page, is sent to Airflow's login form, signs in there and lands on the
   page; the DOM shows the database's numbers, and a screenshot is saved (printed path).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import airflow  # noqa: F401  (puts the plugins folder on sys.path, as in every Airflow component)
import pytest
import requests

from lastmile.store import schema
from lastmile.store.db import prepare, upsert
from lastmile_airflow.ops_view import ops_snapshot, render_page

from browser import Chromium, chromium_binary
from conftest import ROOT

ACCOUNTS = "easypost-main,aftership-eu,dhl-direct"  # dhl-direct is configured but never fetched
USER, PASSWORD = "ops", "correct horse battery staple"
ESCALATION_OWNER = "Daniel Okafor (Delivery Care Lead)"
# What must never reach the page: customer names and full addresses (masked forms are fine).
SECRETS_ON_FILE = ("zoe.obrien@example.com", "sam.patel@shop.test", "Zoë", "Brien", "Sam Patel",
                   "admin@shop.example")


def batch(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fill_history(url: str, t: datetime) -> None:
    """A small history as of `t`: 8 cases, 4 feeds, 5 messages, 12 hourly runs."""
    h = lambda n: t - timedelta(hours=n)  # noqa: E731

    def case(cid: str, kind: str, state: str, opened: datetime) -> dict[str, Any]:
        return {"case_id": cid, "order_line_id": f"L-{cid}", "order_id": f"O-{cid}", "customer_id": f"CU-{cid}",
                "shipment_id": f"S-{cid}", "exception_type": kind, "severity": 2, "state": state,
                "resolution": "delivered" if state == "resolved" else None, "shipments_in_chain": 1,
                "opened_at": opened, "first_evidence_at": opened, "evidence": "test",
                "owner": ESCALATION_OWNER if state == "escalated" else "Maya from our Care Team",
                "last_batch": batch(h(1))}

    def feed(account: str, vendor: str, at: datetime, ok: bool, updated: int, scans: int,
             error: str | None = None) -> dict[str, Any]:
        return {"account": account, "batch_key": batch(at), "vendor": vendor, "as_of": at, "ok": ok,
                "shipments_asked": 50, "trackers_received": 50 if ok else 0, "trackers_updated": updated,
                "scans_new": scans, "error": error}

    def message(key: str, cid: str, kind: str, state: str, recipient: str | None, name: str | None,
                reason: str | None, planned: datetime, attempts: int) -> dict[str, Any]:
        return {"message_key": key, "case_id": cid, "order_id": f"O-{cid}", "kind": kind, "state": state,
                "state_reason": reason, "customer_id": f"CU-{cid}", "recipient": recipient, "recipient_name": name,
                "subject": f"Your order O-{cid}", "body_text": f"Dear {name}", "body_html": f"<p>Dear {name}</p>",
                "planned_at": planned, "planned_batch": batch(planned), "attempts": attempts}

    def steps(i: int) -> list[dict[str, Any]]:
        counts = {
            "load_orders": {"orders": 100 + i},
            "fetch_tracking[easypost-main]": {"account": "easypost-main", "ok": True, "scans_new": i},
            "fetch_tracking[aftership-eu]": {"account": "aftership-eu", "ok": i < 11, "scans_new": 2},
            "detect_exceptions": {"detections": 5 + i},
            "record_history": {"cases_changed": i % 4},
            "plan_messages": {"planned": i % 3},
            "send_messages": {"sent": i, "failed": i % 2, "ambiguous": 1 if i == 11 else 0},
        }
        if i == 12:
            del counts["send_messages"]  # the newest run stopped before sending
        at = h(13 - i)
        return [{"batch_key": batch(at), "step": s, "as_of": at, "counts": json.dumps(c)} for s, c in counts.items()]

    engine = prepare(url)
    with engine.begin() as conn:
        upsert(conn, schema.cases, [
            case("C-1", "lost", "open", h(2)),
            case("C-2", "late", "told", h(30)),
            case("C-3", "late", "escalated", h(50)),
            case("C-4", "damaged", "told", h(96)),
            case("C-5", "lost", "escalated", h(240)),
            case("C-6", "late", "open", h(192)),
            case("C-7", "late", "resolved", h(480)),
            case("C-8", "customs_hold", "told", h(5)),
        ])
        upsert(conn, schema.feed_health, [
            feed("easypost-main", "easypost", h(3), True, 12, 40),
            feed("easypost-main", "easypost", h(2), True, 10, 31),
            feed("easypost-main", "easypost", h(1), True, 7, 19),
            feed("aftership-eu", "aftership", h(3), True, 5, 9),
            feed("aftership-eu", "aftership", h(2), False, 0, 0, "timed out after 10 s"),
            feed("aftership-eu", "aftership", h(1), False, 0, 0,
                 "HTTP 401: API key revoked by admin@shop.example"),
            feed("legacy-ups", "easypost", h(9), True, 3, 4),
        ])
        upsert(conn, schema.outbox, [
            message("C-1/notice/x", "C-1", "notice", "failed", "zoe.obrien@example.com", "Zoë O'Brien",
                    "550 5.1.1 <zoe.obrien@example.com>: mailbox unavailable", h(2), 1),
            message("C-3/escalated/x", "C-3", "escalated", "ambiguous", "sam.patel@shop.test", "Sam Patel",
                    "the sending run stopped before the provider answered; not resent", h(1), 1),
            message("C-2/update/x", "C-2", "update", "failed", None, None,
                    "no valid e-mail address on file (see quarantine)", h(3), 0),
            message("C-4/notice/x", "C-4", "notice", "sent", "kim@example.org", "Kim", None, h(4), 1),
            message("C-8/notice/x", "C-8", "notice", "planned", "lee@example.org", "Lee", None, h(1), 0),
        ])
        upsert(conn, schema.run_steps, [row for i in range(1, 13) for row in steps(i)])
        # Two scans with a code our vocabulary does not know (one a week old: out of the page's window).
        upsert(conn, schema.scans, [
            {"scan_id": f"U{n}", "shipment_id": "S-U", "occurred_at": h(n), "utc_offset_minutes": 0,
             "status": "unmapped", "reason": "easypost:in_transit/sorted_by_robot", "carrier_status": "in_transit",
             "carrier_status_detail": "sorted_by_robot", "message": "Sorted", "city": None, "country": None,
             "raw": "{}", "first_seen_at": h(n)} for n in (2, 3, 24 * 8)])


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, datetime]:
    """The hand-made history on SQLite, as of the start of this minute (the server measures to now)."""
    t = datetime.now(UTC).replace(second=0, microsecond=0)
    url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'lastmile.db'}"
    fill_history(url, t)
    return url, t


def check_snapshot(snap: dict[str, Any], t: datetime) -> None:
    """The hand-made history's numbers, exactly."""
    assert snap["as_of"] == t.isoformat()
    assert snap["open_cases"] == {
        "total": 7,
        "by_state": {"open": 2, "told": 3, "escalated": 2},
        "by_type": {"late": 3, "lost": 2, "customs_hold": 1, "damaged": 1},
        "by_age": {"<1d": 2, "1-3d": 2, "3-7d": 1, ">7d": 2},
    }
    assert [(e["case_id"], e["owner"], e["age_hours"]) for e in snap["escalated"]] == [
        ("C-5", ESCALATION_OWNER, 240.0), ("C-3", ESCALATION_OWNER, 50.0)]

    feeds = {f["account"]: f for f in snap["feeds"]}
    assert list(feeds) == ["aftership-eu", "easypost-main", "legacy-ups", "dhl-direct"]
    assert {a: f["status"] for a, f in feeds.items()} == {
        "aftership-eu": "down", "easypost-main": "ok", "legacy-ups": "stale", "dhl-direct": "never fetched"}
    down = feeds["aftership-eu"]
    assert down["latest"]["batch_key"] == batch(t - timedelta(hours=1))
    assert down["latest"]["error"] == "HTTP 401: API key revoked by a***@s***.example"
    assert down["last_success_at"] == (t - timedelta(hours=3)).isoformat() and down["hours_since_success"] == 3.0
    assert down["recent_ok"] == [True, False, False]
    ok = feeds["easypost-main"]
    assert (ok["latest"]["trackers_updated"], ok["latest"]["scans_new"], ok["hours_since_success"]) == (7, 19, 1.0)
    assert feeds["legacy-ups"]["hours_since_success"] == 9.0
    assert feeds["dhl-direct"]["latest"] is None

    messages = snap["messages"]
    assert messages["by_state"] == {"failed": 2, "ambiguous": 1}
    assert messages["by_kind"] == {"escalated": 1, "notice": 1, "update": 1}
    assert [(m["case_id"], m["state"], m["recipient"], m["reason"]) for m in messages["items"]] == [
        ("C-3", "ambiguous", "s***@s***.test", "the sending run stopped before the provider answered; not resent"),
        ("C-1", "failed", "z***@e***.com", "550 5.1.1 <z***@e***.com>: mailbox unavailable"),
        ("C-2", "failed", "(none)", "no valid e-mail address on file (see quarantine)"),
    ]

    runs = snap["runs"]
    assert [r["batch_key"] for r in runs] == [batch(t - timedelta(hours=n)) for n in range(1, 11)]
    newest, oldest = runs[0], runs[-1]
    assert {k: newest[k] for k in ("orders", "scans_new", "feeds_down", "detections", "sent", "failed")} == {
        "orders": 112, "scans_new": 14, "feeds_down": 1, "detections": 17, "sent": None, "failed": None}
    assert {k: oldest[k] for k in ("orders", "scans_new", "feeds_down", "detections", "cases_changed",
                                   "planned", "sent", "failed", "ambiguous")} == {
        "orders": 103, "scans_new": 5, "feeds_down": 0, "detections": 8, "cases_changed": 3, "planned": 0,
        "sent": 3, "failed": 1, "ambiguous": 0}
    assert runs[1]["ambiguous"] == 1 and len(newest["steps"]) == 6
    assert snap["unmapped"] == [{"code": "easypost:in_transit/sorted_by_robot", "scans": 2}]
    assert not any(s in json.dumps(snap, ensure_ascii=False) for s in SECRETS_ON_FILE)


# --- 1. the numbers ---------------------------------------------------------------------------------

def test_snapshot_returns_the_histories_numbers(history: tuple[str, datetime]) -> None:
    url, t = history
    check_snapshot(ops_snapshot(prepare(url), as_of=t, accounts=ACCOUNTS.split(",")), t)


@pytest.mark.postgres
def test_snapshot_is_the_same_on_postgres(postgres_url: str) -> None:
    t = datetime(2026, 11, 20, 14, tzinfo=UTC)
    fill_history(postgres_url, t)
    engine = prepare(postgres_url)
    check_snapshot(ops_snapshot(engine, as_of=t, accounts=ACCOUNTS.split(",")), t)
    engine.dispose()


def test_page_before_the_first_run(tmp_path: Path) -> None:
    """A fresh install (no history tables yet) shows empty sections, not an error."""
    from sqlalchemy import create_engine

    snap = ops_snapshot(create_engine(f"sqlite:///{tmp_path / 'empty.db'}"), accounts=["simulated"])
    assert snap["open_cases"]["total"] == 0 and snap["runs"] == []
    assert snap["feeds"][0]["status"] == "never fetched"
    html = render_page(snap)
    assert "No run recorded yet." in html and 'data-metric="open_total">0<' in html


def test_loading_the_plugin_stays_light() -> None:
    """Airflow imports plugins in every component: FastAPI and the queries load on the first request."""
    code = ("import sys; import airflow.plugins_manager; import lastmile_airflow.ops_view as v; "
            "assert v.LastmileOpsPlugin.fastapi_apps[0]['url_prefix'] == '/lastmile'; "
            "print(sorted(m for m in ('fastapi', 'lastmile.store.schema', 'lastmile.store.db') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- 2. behind Airflow's login ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api_server(history: tuple[str, datetime], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`airflow api-server` with this repo's plugins, the simple auth manager and one Viewer with a password."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "LASTMILE_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "LASTMILE_DB_URL": history[0],
        "LASTMILE_TRACKING_ACCOUNTS": ACCOUNTS,
        "LASTMILE_OUT_DIR": str(home / "out"),
    })
    airflow_cli = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow_cli, "db", "migrate"], env=env, check=True, capture_output=True, timeout=120)
    log = home / "api-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([airflow_cli, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"api-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"api-server not up after 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: the uvicorn worker goes too
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def login(base: str, password: str = PASSWORD) -> requests.Response:
    return requests.post(f"{base}/auth/token", json={"username": USER, "password": password}, timeout=10)


def test_page_is_behind_airflows_login(api_server: str, history: tuple[str, datetime]) -> None:
    base = api_server
    page, api = f"{base}/lastmile/", f"{base}/lastmile/api/snapshot"

    # Nobody logged in: the API says 401; a browser is sent to Airflow's own login page, and back after.
    assert requests.get(api, timeout=10).status_code == 401
    r = requests.get(page, headers={"Accept": "text/html"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/auth/login?next=%2Flastmile%2F"
    # A token Airflow did not sign, or a wrong password, gets nothing.
    forged = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJl"
    assert requests.get(api, headers={"Authorization": f"Bearer {forged}"}, timeout=10).status_code == 403
    assert requests.get(page, cookies={"_token": forged}, timeout=10, allow_redirects=False).status_code == 403
    assert login(base, "wrong").status_code == 401

    # Logged in through Airflow (POST /auth/token), as a Viewer: the API as Bearer, the page as the UI's cookie.
    token = login(base).json()["access_token"]
    r = requests.get(api, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    snap = r.json()
    assert snap["open_cases"]["total"] == 7 and snap["messages"]["by_state"] == {"failed": 2, "ambiguous": 1}
    assert [f["status"] for f in snap["feeds"]] == ["down", "ok", "stale", "never fetched"]
    r = requests.get(page, cookies={"_token": token}, timeout=10)
    assert r.status_code == 200 and "Delivery exceptions" in r.text
    assert r.headers["cache-control"] == "no-store" and "frame-ancestors 'self'" in r.headers["content-security-policy"]

    # Airflow lists the plugin: the FastAPI app and the nav entry of the UI.
    plugins = requests.get(f"{base}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    ours = next(p for p in plugins.json()["plugins"] if p["name"] == "lastmile_ops")
    assert ours["fastapi_apps"][0]["url_prefix"] == "/lastmile"
    view = ours["external_views"][0]
    assert {k: view[k] for k in ("name", "href", "url_route", "destination")} == {
        "name": "Delivery exceptions", "href": "lastmile/", "url_route": "delivery-exceptions", "destination": "nav"}


# --- 3. in a real browser -------------------------------------------------------------------------------

def metrics(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-metric="([a-z_]+)"[^>]*>([^<]*)<', html))


def bars(html: str, chart: str) -> dict[str, int]:
    return {label: int(value) for label, value in
            re.findall(rf'data-chart="{chart}" data-label="([^"]+)"\s+data-value="(\d+)"', html.replace("&lt;", "<")
                       .replace("&gt;", ">"))}


def test_page_in_headless_chromium(api_server: str, history: tuple[str, datetime],
                                   tmp_path: Path) -> None:
    out_dir = Path(os.environ.get("LASTMILE_OUT_DIR") or ROOT / "out" / "test")
    out_dir.mkdir(parents=True, exist_ok=True)
    browser = Chromium(chromium_binary(), tmp_path / "profile")
    try:
        # Not logged in: the page sends the browser to Airflow's login form; sign in there as a person would.
        browser.sign_in(f"{api_server}/lastmile/", USER, PASSWORD)
        browser.wait_for("location.pathname === '/lastmile/' && document.readyState === 'complete' && "
                         "!!document.querySelector('[data-metric=open_total]')", "the ops page after login")
        html = browser.js("document.documentElement.outerHTML")
        shot = out_dir / "ops-page.png"
        browser.screenshot(shot)
        (out_dir / "ops-page.html").write_text(html)

        # The page inside the Airflow UI: the nav entry's route frames it.
        browser.call("Page.navigate", session=True, url=f"{api_server}/plugin/delivery-exceptions")
        framed = browser.wait_for(
            "(() => { const f = document.querySelector('iframe'); const d = f && f.contentDocument;"
            " const n = d && d.querySelector('[data-metric=open_total]'); return n && n.textContent })()",
            "the ops page framed in the Airflow UI", timeout=30)
        in_ui = out_dir / "ops-page-in-airflow-ui.png"
        browser.screenshot(in_ui)
    finally:
        browser.close()
    print(f"\nscreenshots: {shot}\n             {in_ui}")

    assert metrics(html) == {
        "open_total": "7", "open_state_open": "2", "open_state_told": "3", "escalated_total": "2",
        "feeds_down": "1", "feeds_total": "4", "feeds_stale": "1", "messages_failed": "2",
        "messages_ambiguous": "1",
        "last_run": (history[1] - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M UTC"),
    }
    assert framed == "7"
    assert bars(html, "open_by_type") == {"late": 3, "lost": 2, "customs_hold": 1, "damaged": 1}
    assert bars(html, "open_by_age") == {"<1d": 2, "1-3d": 2, "3-7d": 1, ">7d": 2}
    assert len(bars(html, "runs_detections")) == 10 and len(bars(html, "runs_sent")) == 9  # newest run: no send
    assert re.findall(r'data-account="([^"]+)" data-status="([^"]+)"', html) == [
        ("aftership-eu", "down"), ("easypost-main", "ok"), ("legacy-ups", "stale"), ("dhl-direct", "never fetched")]
    assert re.findall(r'data-case="([^"]+)"', html) == ["C-5", "C-3"] and ESCALATION_OWNER in html
    assert "z***@e***.com" in html and not any(s in html for s in SECRETS_ON_FILE)
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
