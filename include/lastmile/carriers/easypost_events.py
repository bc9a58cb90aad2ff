"""What EasyPost pushes to us: its tracker webhook, verified, stored, and read back as a listing of changes.

EasyPost cannot be asked which trackers changed (GET /trackers filters by creation, not by update),
so an account that is polled is asked about every parcel in flight every hour. It can push each
change instead: an `Event` whose `description` is `tracker.updated` (or `tracker.created`) and
whose `result` is the whole Tracker, as GET /trackers/{id} returns it. The webhook is registered
with a secret (POST /v2/webhooks, `webhook_secret`); every delivery then carries
`X-Hmac-Signature: hmac-sha256-hex=<hex HMAC-SHA256 of the raw body>`, keyed with the secret in
Unicode NFKD form, as EasyPost's own client libraries check it (`validate_webhook`).

The ops plugin serves `/easypost/<account>/events`: it refuses what is not signed with that
account's secret, and `record` stores each tracker event in `tracker_events`, keyed by the event's
id (EasyPost retries a delivery until it gets a 2xx: a retry is stored once). An hour of that
account then reads what was pushed since its previous fetch (`PushedEasyPostClient`, through the
same ChangeListing path as AfterShip's listing); the day's first fetch still asks about every
parcel in flight, which also mends a push that never arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import unicodedata
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from lastmile.carriers.easypost_client import EasyPostClient, EasyPostConfig
from lastmile.core.rejections import Rejection
from lastmile.core.timestamps import parse_timestamp
from lastmile.store import schema
from lastmile.store.db import upsert, utc
from lastmile.store.quarantine import store_rejections
from lastmile.store.queries import chunks

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hmac-Signature"
SIGNATURE_PREFIX = "hmac-sha256-hex="
TRACKER_EVENTS = frozenset({"tracker.created", "tracker.updated"})
# One event carries one Tracker with its whole scan history: tens of kilobytes for a long journey.
# 2 MiB is far above any real one, and a flood of unsigned bodies cannot make us buffer more.
MAX_BODY_BYTES = 2 * 1024 * 1024
# How long a pushed tracker is kept: a listing reads back to the previous fetch of the same UTC day
# (steps/fetch_tracking.changes_since), so two days always covers it; older rows are deleted by the
# day's first fetch of the account.
KEEP = timedelta(days=2)


def signature_for(secret: str, body: bytes) -> str:
    """The X-Hmac-Signature EasyPost sends with `body` for a webhook registered with `secret`."""
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def is_signed_by_easypost(secret: str, body: bytes, signature: str | None) -> bool:
    """True when `signature` (the header's value) is EasyPost's for `body` under `secret`."""
    if not secret or not signature:
        return False
    return hmac.compare_digest(signature.strip().lower().encode("utf-8", "replace"),
                               signature_for(secret, body).encode("ascii"))


def _instant(raw: Any) -> datetime | None:
    """An EasyPost time in UTC; None when it is absent or no time (as if absent)."""
    try:
        return parse_timestamp(raw)[0]
    except ValueError:
        return None


def _plain(value: Any, most: int) -> str | None:
    """`value` as a string fit for a key column: non-empty, printable, at most `most` characters."""
    text = str(value) if value not in (None, "") else ""
    return text if text and len(text) <= most and text.isprintable() else None


def _printable(value: Any, most: int) -> str:
    """`value` cut to `most` characters, anything unprintable shown as '?' (for quarantine's record id)."""
    return "".join(c if c.isprintable() else "?" for c in str(value if value is not None else ""))[:most]


def tracker_event_row(event: Any, account: str, received_at: datetime) -> dict[str, Any] | Rejection | None:
    """The `tracker_events` row for one pushed Event; a Rejection when it cannot be read; None for an
    event about something other than a tracker (a batch, a refund...), or about a tracker state
    older than KEEP (a captured body replayed: the day's full fetch has read newer): acknowledged,
    not kept."""
    if not isinstance(event, dict) or event.get("object") != "Event":
        return Rejection.of("easypost_events", "(body)", "object", "the body is not an EasyPost Event",
                            {"type": type(event).__name__})
    description = str(event.get("description") or "")
    if description not in TRACKER_EVENTS:
        return None
    tracker = event.get("result")
    event_id = _plain(event.get("id"), 100)
    code = _plain(tracker.get("tracking_code"), 64) if isinstance(tracker, dict) else None
    # Only what identifies the event goes to quarantine (a tracker may name who signed for it), and
    # only as printable text: a NUL would make Postgres refuse the quarantine row too.
    kept = {"id": event_id or _printable(event.get("id"), 100) or "(no id)", "description": description,
            "tracking_code": code or (_printable(tracker.get("tracking_code"), 64) if isinstance(tracker, dict) else None)}

    def rejected(field: str, reason: str) -> Rejection:
        return Rejection.of("easypost_events", kept["id"], field, reason, kept)

    if event_id is None:
        return rejected("id", "the event has no id of at most 100 printable characters")
    if not isinstance(tracker, dict) or tracker.get("object") != "Tracker":
        return rejected("result", "the event's result is not a Tracker")
    tracker_id = _plain(tracker.get("id"), 100)
    if tracker_id is None:
        return rejected("result.id", "the tracker has no id of at most 100 printable characters")
    if code is None:
        return rejected("result.tracking_code", "the tracker has no tracking code of at most 64 printable characters")
    # A version cannot be newer than its delivery (a clock ahead, or a forged year 2099, would
    # otherwise outrank every real version for days); one without a time is as new as its delivery.
    updated = min(_instant(tracker.get("updated_at")) or received_at, received_at)
    if updated < received_at - KEEP:
        return None
    return {"account": account, "event_id": event_id, "tracker_id": tracker_id, "tracking_code": code,
            "received_at": received_at, "tracker_updated_at": updated,
            "event_created_at": min(_instant(event.get("created_at")) or received_at, received_at),
            "tracker": json.dumps(tracker, separators=(",", ":"))}


def record(engine: Engine, account: str, event: Any, received_at: datetime) -> dict[str, Any]:
    """Store one pushed Event for `account`; returns counts (stored, duplicates, ignored, quarantined)."""
    found = tracker_event_row(event, account, received_at)
    rows = [found] if isinstance(found, dict) else []
    rejections = [found] if isinstance(found, Rejection) else []
    with engine.begin() as conn:
        stored = upsert(conn, schema.tracker_events, rows)
        store_rejections(conn, rejections, received_at)
    counts = {"stored": stored, "duplicates": len(rows) - stored, "ignored": int(found is None),
              "quarantined": len(rejections)}
    log.info("easypost events for %s: %s", account, counts)
    return counts


def _without_estimate(tracker: dict[str, Any]) -> dict[str, Any]:
    """The tracker with its scans and no estimated delivery date (tracking._estimate reads both places)."""
    detail = tracker.get("carrier_detail")
    return {**tracker, "est_delivery_date": None,
            "carrier_detail": {**detail, "est_delivery_date_local": None} if isinstance(detail, dict) else detail}


def _version(updated: Any, created: Any) -> tuple[datetime, datetime]:
    """A version's rank: the tracker's update time, then the event's creation (None: the earliest)."""
    least = datetime.min.replace(tzinfo=UTC)
    return (utc(updated) or least, utc(created) or least)


def pushed_trackers(conn: Connection, account: str, since: datetime, until: datetime,
                    settled: datetime | None = None) -> list[dict[str, Any]]:
    """The trackers pushed to `account` after `since` and by `until`: each tracker's newest version,
    newest first, unless a newer version of it was received by `since` (read by an earlier hour: this
    one is a retried delivery arriving late, whose scans that one holds too).

    A version not newer than `settled` (when the account was last asked about every parcel) comes
    without its estimated delivery date: that read may have seen a newer estimate, which an older
    one must not replace. Its scans stay: a scan is a fact, stored once however often it is read."""
    te = schema.tracker_events.c
    window = conn.execute(select(te.tracker_id, te.tracker_updated_at, te.event_created_at, te.tracker).where(
        te.account == account, te.received_at > since, te.received_at <= until)).all()
    newest: dict[str, tuple[tuple[datetime, datetime], str]] = {}
    for tracker_id, updated, created, raw in window:
        rank = _version(updated, created)
        if tracker_id not in newest or rank > newest[tracker_id][0]:
            newest[tracker_id] = (rank, raw)
    # What earlier hours read of the same trackers, through (account, tracker_id): a tracker's few
    # kept versions, the time filtered here (with it in the query, SQLite ranged over every push
    # received before `since` instead).
    read: dict[str, tuple[datetime, datetime]] = {}
    for part in chunks(newest):
        for tracker_id, received, updated, created in conn.execute(select(
                te.tracker_id, te.received_at, te.tracker_updated_at, te.event_created_at).where(
                te.account == account, te.tracker_id.in_(part))):
            if utc(received) <= since:  # type: ignore[operator]
                read[tracker_id] = max(read.get(tracker_id, _version(None, None)), _version(updated, created))
    out = []
    for tracker_id, (rank, raw) in sorted(newest.items(), key=lambda item: item[1][0], reverse=True):
        if tracker_id in read and read[tracker_id] > rank:
            continue
        tracker = json.loads(raw)
        stale = settled is not None and rank[0] <= settled
        out.append(_without_estimate(tracker) if stale else tracker)
    return out


def prune(conn: Connection, account: str, as_of: datetime) -> int:
    """Forget `account`'s pushes older than KEEP before `as_of`: no listing reads them again."""
    te = schema.tracker_events.c
    return conn.execute(delete(schema.tracker_events).where(te.account == account,
                                                            te.received_at < as_of - KEEP)).rowcount


class PushedEasyPostClient(EasyPostClient):
    """An EasyPost account whose changes are pushed to us: asked by code like any EasyPost account,
    and asked what changed by reading what it pushed (by `until`, the run's instant) from the history;
    `settled`: when the account was last asked about every parcel (pushed_trackers)."""

    def __init__(self, config: EasyPostConfig, engine: Engine, account: str, until: datetime,
                 settled: datetime | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(config, sleep)
        self.engine, self.account, self.until, self.settled = engine, account, until, settled

    def _updated_since(self, since: datetime) -> Iterable[dict[str, Any]]:
        with self.engine.connect() as conn:
            return pushed_trackers(conn, self.account, since, self.until, self.settled)
