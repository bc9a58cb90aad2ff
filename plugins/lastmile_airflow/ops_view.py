"""The "Delivery exceptions" page in the Airflow UI, behind Airflow's own login.

An Airflow plugin: a FastAPI app mounted on the api-server at /lastmile (an HTML page and
/lastmile/api/snapshot) and a nav entry that shows the page inside the Airflow UI. Both routes
take the user from Airflow's auth manager (the `_token` cookie the UI sets at login, or an
`Authorization: Bearer` token from POST /auth/token) and allow whoever may see the Airflow UI
at all (`AccessView.WEBSITE`). A browser that is not logged in is sent to Airflow's login page.

Plugin loading stays cheap: FastAPI, SQLAlchemy queries and the template load on the first
request; Airflow imports this file in every component.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import FastAPI
    from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)

URL_PREFIX = "/lastmile"
TEMPLATES = Path(__file__).resolve().parent / "templates"
OPEN_STATES = ("open", "told", "escalated")  # every case state but "resolved"
# (label, upper bound in days): a case opened `age` ago falls in the first bucket with age < bound.
AGE_BUCKETS: tuple[tuple[str, int | None], ...] = (("<1d", 1), ("1-3d", 3), ("3-7d", 7), (">7d", None))
AGE_LABELS = {"<1d": "under 1 day", "1-3d": "1–3 days", "3-7d": "3–7 days", ">7d": "over 7 days"}
PROBLEM_MESSAGES = ("failed", "ambiguous")


def ops_snapshot(
    engine: Engine,
    as_of: datetime | None = None,
    *,
    accounts: Sequence[str] = (),
    stale_hours: float = 6.0,
    limit: int = 50,
    runs: int = 10,
) -> dict[str, Any]:
    """What the ops page shows, read from the history database; JSON-ready (times as ISO strings).

    `as_of` (default: now) is what case ages and feed staleness are measured against. `accounts`
    are the configured carrier accounts, listed even before their first fetch.
    """
    from sqlalchemy import inspect

    from lastmile.store.queries import unmapped_codes

    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        return {
            "as_of": as_of.isoformat(),
            "database": engine.url.render_as_string(hide_password=True),
            "open_cases": _open_cases(conn, as_of) if "cases" in tables else _no_cases(),
            "escalated": _escalated(conn, as_of, limit) if "cases" in tables else [],
            "feeds": _feeds(conn, as_of, accounts, stale_hours) if "feed_health" in tables else
            [_never_fetched(a) for a in accounts],
            "messages": _messages(conn, limit) if "outbox" in tables else _no_messages(),
            "runs": _runs(conn, runs) if "run_steps" in tables else [],
            # Carrier codes our vocabulary does not know, seen in the last 7 days (never guessed).
            "unmapped": ([{"code": k, "scans": n} for k, n in
                          unmapped_codes(conn, as_of - timedelta(days=7), as_of).items()]
                         if "scans" in tables else []),
        }


def _no_cases() -> dict[str, Any]:
    return {"total": 0, "by_state": {s: 0 for s in OPEN_STATES}, "by_type": {},
            "by_age": {label: 0 for label, _ in AGE_BUCKETS}}


def _open_cases(conn: Connection, as_of: datetime) -> dict[str, Any]:
    from sqlalchemy import case, func, select

    from lastmile.store import schema

    c = schema.cases.c
    bucket = case(*[(c.opened_at > as_of - timedelta(days=days), label) for label, days in AGE_BUCKETS if days],
                  else_=AGE_BUCKETS[-1][0])
    # Grouped in an outer query: Postgres cannot match a GROUP BY to a SELECT expression with parameters.
    rows = select(c.exception_type, c.state, bucket.label("age")).where(c.state.in_(OPEN_STATES)).subquery()
    result = _no_cases()
    by_type: dict[str, int] = {}
    for kind, state, age, n in conn.execute(
            select(rows.c.exception_type, rows.c.state, rows.c.age, func.count())
            .group_by(rows.c.exception_type, rows.c.state, rows.c.age)):
        result["total"] += n
        result["by_state"][state] += n
        result["by_age"][age] += n
        by_type[kind] = by_type.get(kind, 0) + n
    result["by_type"] = dict(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0])))
    return result


def _escalated(conn: Connection, as_of: datetime, limit: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from lastmile.store import schema
    from lastmile.store.db import utc

    c = schema.cases.c
    rows = conn.execute(select(c.case_id, c.order_id, c.exception_type, c.severity, c.owner, c.opened_at)
                        .where(c.state == "escalated").order_by(c.opened_at, c.case_id).limit(limit))
    return [{"case_id": r.case_id, "order_id": r.order_id, "exception_type": r.exception_type,
             "severity": r.severity, "owner": r.owner, "opened_at": utc(r.opened_at).isoformat(),
             "age_hours": _hours(as_of - utc(r.opened_at))} for r in rows]


def _never_fetched(account: str) -> dict[str, Any]:
    return {"account": account, "vendor": None, "status": "never fetched", "latest": None,
            "last_success_at": None, "hours_since_success": None, "recent_ok": []}


def _feeds(conn: Connection, as_of: datetime, accounts: Sequence[str], stale_hours: float) -> list[dict[str, Any]]:
    from sqlalchemy import func, select

    from lastmile.store import schema
    from lastmile.store.db import utc
    from lastmile.store.queries import feed_state

    f = schema.feed_health.c
    newest_first = func.row_number().over(partition_by=f.account, order_by=(f.as_of.desc(), f.batch_key.desc()))
    ranked = select(schema.feed_health, newest_first.label("rank")).subquery()
    recent: dict[str, list[Any]] = {}
    for r in conn.execute(select(ranked).where(ranked.c.rank <= 10).order_by(ranked.c.account, ranked.c.rank)):
        recent.setdefault(r.account, []).append(r)
    last_ok = dict(conn.execute(select(f.account, func.max(f.as_of)).where(f.ok.is_(True)).group_by(f.account)).all())

    feeds = []
    for account in sorted(recent):
        latest = recent[account][0]
        success = utc(last_ok.get(account))
        since = _hours(as_of - success) if success else None
        status = feed_state(bool(latest.ok), success, as_of, stale_hours)
        feeds.append({
            "account": account, "vendor": latest.vendor, "status": status,
            "latest": {"batch_key": latest.batch_key, "as_of": utc(latest.as_of).isoformat(), "ok": bool(latest.ok),
                       "trackers_updated": latest.trackers_updated, "scans_new": latest.scans_new,
                       "error": _mask_text(latest.error)},
            "last_success_at": success.isoformat() if success else None,
            "hours_since_success": since,
            "recent_ok": [bool(r.ok) for r in reversed(recent[account])],  # oldest first
        })
    return feeds + [_never_fetched(a) for a in accounts if a not in recent]


def _no_messages() -> dict[str, Any]:
    return {"by_state": {s: 0 for s in PROBLEM_MESSAGES}, "by_kind": {}, "items": []}


def _messages(conn: Connection, limit: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from lastmile.core.privacy import mask_email
    from lastmile.store import schema
    from lastmile.store.db import utc

    o = schema.outbox.c
    result = _no_messages()
    for state, kind, n in conn.execute(select(o.state, o.kind, func.count()).where(o.state.in_(PROBLEM_MESSAGES))
                                       .group_by(o.state, o.kind)):
        result["by_state"][state] += n
        result["by_kind"][kind] = result["by_kind"].get(kind, 0) + n
    result["by_kind"] = dict(sorted(result["by_kind"].items()))
    # Never the name, the address or the body: the recipient masked, the reason with any address masked.
    rows = conn.execute(select(o.case_id, o.order_id, o.kind, o.state, o.state_reason, o.recipient, o.planned_at,
                               o.attempts).where(o.state.in_(PROBLEM_MESSAGES))
                        .order_by(o.planned_at.desc(), o.message_key).limit(limit))
    result["items"] = [{"case_id": r.case_id, "order_id": r.order_id, "kind": r.kind, "state": r.state,
                        "reason": _mask_text(r.state_reason), "recipient": mask_email(r.recipient),
                        "planned_at": utc(r.planned_at).isoformat(), "attempts": r.attempts} for r in rows]
    return result


def _runs(conn: Connection, limit: int) -> list[dict[str, Any]]:
    from sqlalchemy import func, select

    from lastmile.store import schema
    from lastmile.store.db import utc

    rs = schema.run_steps.c
    latest = func.max(rs.as_of)
    batches = conn.execute(select(rs.batch_key, latest).group_by(rs.batch_key)
                           .order_by(latest.desc(), rs.batch_key.desc()).limit(limit)).all()
    steps: dict[str, dict[str, Any]] = {key: {} for key, _ in batches}
    for r in conn.execute(select(rs.batch_key, rs.step, rs.counts).where(rs.batch_key.in_(list(steps)))):
        steps[r.batch_key][r.step] = json.loads(r.counts)
    return [{"batch_key": key, "as_of": utc(at).isoformat(), **_run_counts(steps[key]),
             "steps": dict(sorted(steps[key].items()))} for key, at in batches]


def _run_counts(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One run's headline numbers; None where the step did not record (the run stopped before it)."""
    def get(step: str, key: str) -> Any:
        return steps[step].get(key) if step in steps else None

    fetches = [counts for step, counts in steps.items() if step.startswith("fetch_tracking")]
    return {
        "orders": get("load_orders", "orders"),
        "scans_new": sum(f.get("scans_new", 0) for f in fetches) if fetches else None,
        "feeds_down": sum(1 for f in fetches if f.get("ok") is False) if fetches else None,
        "detections": get("detect_exceptions", "detections"),
        "cases_changed": get("record_history", "cases_changed"),
        "planned": get("plan_messages", "planned"),
        "sent": get("send_messages", "sent"),
        "failed": get("send_messages", "failed"),
        "ambiguous": get("send_messages", "ambiguous"),
    }


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


def _mask_text(text: str | None) -> str | None:
    from lastmile.core.privacy import mask_emails_in

    return mask_emails_in(text)


# --- the web app --------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _history_engine(url: str) -> Engine:
    """A reader's engine: never migrates or writes (the pipeline owns the schema)."""
    from sqlalchemy import create_engine, make_url

    sqlite = make_url(url).get_backend_name() == "sqlite"
    return create_engine(url, pool_pre_ping=True, connect_args={"timeout": 30} if sqlite else {})


def current_snapshot() -> dict[str, Any]:
    """The snapshot of the history database (Connection `lastmile_history`, else LASTMILE_DB_URL), as of now."""
    from lastmile_airflow.connections import airflow_settings

    settings = airflow_settings()
    return ops_snapshot(_history_engine(settings.db_url), accounts=settings.tracking_accounts,
                        stale_hours=settings.feed_stale_hours)


def render_page(snapshot: dict[str, Any]) -> str:
    """The HTML page: self-contained (inline CSS and server-drawn SVG charts, no script, no CDN)."""
    cases = snapshot["open_cases"]
    charts = {
        "by_type": [{"key": k, "label": _label(k), "value": v} for k, v in cases["by_type"].items()],
        "by_age": [{"key": k, "label": AGE_LABELS[k], "value": v} for k, v in cases["by_age"].items()],
    }
    return _template().render(s=snapshot, charts=charts, runs_oldest_first=list(reversed(snapshot["runs"])))


@lru_cache(maxsize=1)
def _template() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, age=_age, label=_label)
    return env.get_template("ops.html")


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _when(iso: str | None) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if iso else "—"


def _age(hours: float | None) -> str:
    if hours is None:
        return "—"
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.1f} d"


# The page holds customer case data: never cached, framed only by the Airflow UI itself, no scripts.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
}


def create_app() -> FastAPI:
    """The FastAPI app the api-server mounts at URL_PREFIX."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
    from starlette.exceptions import HTTPException

    app = FastAPI(title="lastmile: delivery exceptions", docs_url=None, redoc_url=None, openapi_url=None)
    # Airflow's own check: a valid JWT (Bearer header or the UI's `_token` cookie), then the auth
    # manager's permission to view the Airflow UI. 401 without a user, 403 with a bad token or no right.
    logged_in = [Depends(requires_access_view(AccessView.WEBSITE))]

    @app.exception_handler(HTTPException)
    async def login_first(request: Request, exc: HTTPException) -> Any:
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(get_auth_manager().get_url_login(next_url=target), status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", response_class=HTMLResponse, dependencies=logged_in)
    def page() -> HTMLResponse:
        return HTMLResponse(render_page(current_snapshot()), headers=PAGE_HEADERS)

    @app.get("/api/snapshot", dependencies=logged_in)
    def snapshot() -> JSONResponse:
        return JSONResponse(current_snapshot(), headers={"Cache-Control": "no-store"})

    async def sendgrid_events(request: Request) -> JSONResponse:
        """SendGrid's Signed Event Webhook: no Airflow login (SendGrid cannot log in), so every body
        must carry SendGrid's signature; unsigned or badly signed bodies are refused. Anyone can post
        here, so the headers and timestamp are checked before any of the body is read, and the body
        is read only up to `MAX_BODY_BYTES` (413 beyond): an unsigned 200 MB post costs nothing."""
        return await receive_sendgrid_request(request)

    # A plain Starlette route (the handler gets the Request itself): FastAPI's dependency injection
    # would resolve the string annotation "Request" in the module globals, miss the local import, and
    # answer every delivery with 422 ("query parameter `request` missing").
    app.add_route("/sendgrid/events", sendgrid_events, methods=["POST"])

    async def easypost_events(request: Request) -> JSONResponse:
        """EasyPost's tracker webhook for one account (the path names its Connection): no Airflow
        login, so every body must carry EasyPost's HMAC under that account's webhook secret; the
        signature header is checked before the body is read, and the body is capped."""
        return await receive_easypost_request(request)

    app.add_route("/easypost/{account}/events", easypost_events, methods=["POST"])

    return app


def webhook_public_key(conn_id: str = "sendgrid_default") -> str | None:
    """The Signed Event Webhook's public key: extra `event_webhook_public_key` of the SendGrid Connection."""
    from airflow.models.connection import Connection

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except Exception:  # noqa: BLE001 -- no Connection: the webhook is not set up
        return None
    return (conn.extra_dejson or {}).get("event_webhook_public_key") or None


async def receive_sendgrid_request(request: Any, now: datetime | None = None) -> Any:
    """The endpoint's work: refuse on the headers alone when possible, then read the body with a cap."""
    from starlette.concurrency import run_in_threadpool

    from lastmile.email.provider_events import MAX_BODY_BYTES

    now = now or datetime.now(UTC)
    key = await run_in_threadpool(webhook_public_key)  # a Connection lookup may hit the DB
    refused = _refuse_on_headers(key, request.headers, now)
    if refused is not None:
        return refused
    body = await _body_within(request, MAX_BODY_BYTES)
    if not isinstance(body, bytes):
        return body
    # Verifying and writing the history DB block: off the event loop the api-server shares.
    return await run_in_threadpool(_verify_and_record, key, body, request.headers, now)


def receive_sendgrid_events(body: bytes, headers: Any, now: datetime | None = None) -> Any:
    """Verify and record one Event Webhook delivery; the answer tells SendGrid whether to retry."""
    from fastapi.responses import JSONResponse

    from lastmile.email.provider_events import MAX_BODY_BYTES

    now = now or datetime.now(UTC)
    key = webhook_public_key()
    refused = _refuse_on_headers(key, headers, now)
    if refused is not None:
        return refused
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
    return _verify_and_record(key, body, headers, now)


def _refuse_on_headers(key: str | None, headers: Any, now: datetime) -> Any:
    """The answer when the delivery can be refused before its body is read, else None."""
    from fastapi.responses import JSONResponse

    from lastmile.email.provider_events import SIGNATURE_HEADER, TIMESTAMP_HEADER, timestamp_is_fresh

    if not key:  # 503: SendGrid retries, and nothing is lost while ops add the key
        return JSONResponse({"detail": "event webhook public key not configured"}, status_code=503)
    signature, stamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
    if not signature or not stamp:
        return JSONResponse({"detail": "missing or invalid SendGrid signature"}, status_code=403)
    if not timestamp_is_fresh(stamp, now):  # a replayed (or forged-ahead) delivery
        return JSONResponse({"detail": "SendGrid signature timestamp is not current"}, status_code=403)
    return None


def _declared_too_large(content_length: str | None, limit: int) -> bool:
    """True when the Content-Length header announces more than `limit` bytes."""
    if not content_length or not (content_length.isascii() and content_length.isdigit()):
        return False  # absent or malformed: the streaming cap still applies
    return len(content_length.lstrip("0")) > 18 or int(content_length) > limit


async def _body_within(request: Any, limit: int) -> Any:
    """The body, or the 413 answer when it announces or grows past `limit` bytes (never read whole)."""
    from fastapi.responses import JSONResponse

    body = None if _declared_too_large(request.headers.get("content-length"), limit) else (
        await _read_capped(request, limit))
    return body if body is not None else JSONResponse({"detail": f"body larger than {limit} bytes"}, status_code=413)


async def _read_capped(request: Any, limit: int) -> bytes | None:
    """The body, or None as soon as it grows past `limit`: never more than one chunk past it is read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _verify_and_record(key: str, body: bytes, headers: Any, now: datetime) -> Any:
    from fastapi.responses import JSONResponse

    from lastmile.email.provider_events import (
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        is_signed_by_sendgrid,
        record,
    )
    from lastmile.store.db import engine_for
    from lastmile_airflow.connections import airflow_settings

    if not is_signed_by_sendgrid(key, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], body):
        return JSONResponse({"detail": "missing or invalid SendGrid signature"}, status_code=403)
    try:
        events = json.loads(body)
    except ValueError:
        return JSONResponse({"detail": "body is not JSON"}, status_code=400)
    counts = record(engine_for(airflow_settings().db_url), events, now)
    return JSONResponse(counts)


def _now() -> datetime:
    """The instant a delivery is received (one place, so tests can hold the clock)."""
    return datetime.now(UTC)


def easypost_webhook_target(account: str) -> tuple[str, str] | None:
    """(webhook secret, history URL) for the EasyPost account `account` (its Connection's extra
    `webhook_secret`); None unless `account` is, exactly, one of the tracking accounts the pipeline
    fetches (a push stored for another name would never be read, nor deleted)."""
    from airflow.models.connection import Connection

    from lastmile.carriers.accounts import account_from_fields
    from lastmile_airflow.connections import airflow_settings

    try:
        settings = airflow_settings()
        if account not in settings.tracking_accounts:
            return None
    except Exception as err:  # noqa: BLE001 -- the api-server's lastmile settings are broken: said once per delivery
        log.warning("EasyPost webhook: lastmile's settings cannot be read here (%s)", type(err).__name__)
        return None
    try:
        conn = Connection.get_connection_from_secrets(account)
        found = account_from_fields(account, conn.conn_type, conn.host, conn.port, conn.password, conn.extra_dejson)
    except Exception:  # noqa: BLE001 -- no Connection, or not a usable one: the webhook is not set up
        return None
    return (found.webhook_secret, settings.db_url) if found.vendor == "easypost" and found.webhook_secret else None


async def receive_easypost_request(request: Any, now: datetime | None = None) -> Any:
    """The EasyPost endpoint's work: refuse on the headers alone when possible, then read the body with a cap."""
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    from lastmile.carriers.easypost_events import MAX_BODY_BYTES, SIGNATURE_HEADER

    account = str(request.path_params["account"])
    if not request.headers.get(SIGNATURE_HEADER):  # (before any lookup: an unsigned post costs nothing)
        return JSONResponse({"detail": "missing or invalid EasyPost signature"}, status_code=403)
    target = await run_in_threadpool(easypost_webhook_target, account)
    if target is None:
        # 503: EasyPost retries for a while (then may disable the webhook: the day's full fetch
        # still reads every parcel), so a secret added promptly loses nothing.
        log.warning("EasyPost webhook: a delivery for %r was refused: not a tracking account with a webhook "
                    "secret (LASTMILE_TRACKING_ACCOUNTS, the Connection's extra webhook_secret)", account[:100])
        return JSONResponse({"detail": "no EasyPost account with a webhook secret at this address"}, status_code=503)
    body = await _body_within(request, MAX_BODY_BYTES)
    if not isinstance(body, bytes):
        return body
    return await run_in_threadpool(receive_easypost_event, account, *target, body, request.headers, now or _now())


def receive_easypost_event(account: str, secret: str, db_url: str, body: bytes, headers: Any, now: datetime) -> Any:
    """Verify and record one delivery of EasyPost's webhook; the answer tells EasyPost whether to retry
    (a 2xx: never again, so a body we cannot read is quarantined and acknowledged)."""
    from fastapi.responses import JSONResponse

    from lastmile.carriers.easypost_events import SIGNATURE_HEADER, is_signed_by_easypost, record
    from lastmile.store.db import engine_for

    if not is_signed_by_easypost(secret, body, headers.get(SIGNATURE_HEADER)):
        return JSONResponse({"detail": "missing or invalid EasyPost signature"}, status_code=403)
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # (nested deeper than the parser goes: not an EasyPost event)
        return JSONResponse({"detail": "body is not JSON"}, status_code=400)
    return JSONResponse(record(engine_for(db_url), account, event, now))


class _LazyApp:
    """An ASGI app that builds the FastAPI app on its first request, so loading the plugin stays light."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


class LastmileOpsPlugin(AirflowPlugin):
    """Adds "Delivery exceptions" to the Airflow UI's navigation, served by the api-server."""

    name = "lastmile_ops"
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": URL_PREFIX, "name": "lastmile delivery exceptions"}]
    external_views = [{
        "name": "Delivery exceptions",
        "href": URL_PREFIX.lstrip("/") + "/",  # relative to the UI's base URL (works under a base_url path)
        "url_route": "delivery-exceptions",  # shown inside the UI at /plugin/delivery-exceptions
        "destination": "nav",
        "category": "browse",
    }]
