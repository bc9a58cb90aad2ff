"""What SendGrid later says about the e-mails we sent: its Event Webhook, verified and recorded.

SendGrid posts a JSON array of events (docs: "Event Webhook Reference"): each has `event`
(processed, delivered, deferred, dropped, bounce, open, click, spamreport, unsubscribe,
group_unsubscribe, group_resubscribe), a Unix `timestamp`, a unique `sg_event_id`, and our custom
args as top-level keys — we send `message_key` and `case_id` with every message. With the Signed
Event Webhook, the request carries `X-Twilio-Email-Event-Webhook-Signature` (base64 ECDSA P-256 /
SHA-256 over the timestamp header followed by the raw body) and
`X-Twilio-Email-Event-Webhook-Timestamp`; the public key is shown in SendGrid's settings. The signature
is checked with the `sendgrid` library's own EventWebhook helper, not hand-written crypto.

The endpoint is public (SendGrid cannot log in), so it refuses cheaply before trusting anything:
the body is capped at `MAX_BODY_BYTES` (SendGrid posts a batch every ~30 s or once it reaches
768 KB, so 5 MiB is generous headroom, yet an attacker cannot make us buffer hundreds of MB), and the
signed timestamp must be near now (`timestamp_is_fresh`), so a captured delivery cannot be replayed later.

Rows go to `message_events` keyed by `sg_event_id`, so a redelivered batch is stored once. The
recipient's address is never stored; addresses inside a reason are masked.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine

from lastmile.core.privacy import mask_emails_in
from lastmile.core.rejections import Rejection
from lastmile.store import schema
from lastmile.store.db import upsert
from lastmile.store.quarantine import store_rejections

log = logging.getLogger(__name__)

EVENTS = frozenset({"processed", "delivered", "deferred", "dropped", "bounce", "open", "click", "spamreport",
                    "unsubscribe", "group_unsubscribe", "group_resubscribe"})
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# SendGrid posts a batch "within approximately 30 seconds or when the batch size reaches 768
# kilobytes": 5 MiB is over six times that, and small enough that a flood of unsigned bodies costs
# little memory. Larger bodies are refused (413) before or while reading, never buffered whole.
MAX_BODY_BYTES = 5 * 1024 * 1024
# SendGrid signs each delivery attempt at the moment it posts it (a retry is signed anew), so a genuine
# timestamp is seconds old. Ten minutes absorbs slow networks and clock drift; anything older is a
# replay of a captured body. Five minutes ahead absorbs our clock running slow, no more.
MAX_TIMESTAMP_AGE = timedelta(minutes=10)
MAX_TIMESTAMP_AHEAD = timedelta(minutes=5)


@dataclass
class EventBatch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    foreign: int = 0  # events about mail we did not send (no message_key): counted, not stored


def timestamp_is_fresh(timestamp: str, now: datetime) -> bool:
    """True when the timestamp header (whole Unix seconds) lies within the tolerance around `now`."""
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 20:
        return False
    age = now.timestamp() - int(timestamp)  # plain numbers: a year-30000 stamp cannot overflow a datetime
    return -MAX_TIMESTAMP_AHEAD.total_seconds() <= age <= MAX_TIMESTAMP_AGE.total_seconds()


@lru_cache(maxsize=4)
def _ecdsa_key(public_key: str) -> Any:
    from sendgrid.helpers.eventwebhook import EventWebhook

    return EventWebhook().convert_public_key_to_ecdsa(public_key.strip())


def is_signed_by_sendgrid(public_key: str, signature: str, timestamp: str, body: bytes) -> bool:
    """True when SendGrid signed `timestamp + body` with the key whose public half is `public_key`
    (the base64 key from SendGrid's settings). Uses the `sendgrid` library's EventWebhook helper.

    The helper takes the payload as `str` and signs `(timestamp + payload).encode("utf-8")`, so the
    raw body is decoded as strict UTF-8 (which re-encodes to exactly the same bytes, non-ASCII
    included); a body that is not UTF-8 cannot be what SendGrid signed and is refused.
    """
    from cryptography.hazmat.primitives.asymmetric import ec
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        payload = body.decode("utf-8")
        key = _ecdsa_key(public_key)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        return bool(EventWebhook().verify_signature(payload, signature, timestamp, key))
    except (ValueError, TypeError):  # not UTF-8, a malformed key, signature not base64
        return False


def sendgrid_event_rows(events: Any) -> EventBatch:
    """`message_events` rows from one webhook body; malformed events become rejections."""
    out = EventBatch()
    if not isinstance(events, list):
        out.rejections.append(Rejection.of("sendgrid_events", "(body)", "body", "the body is not a JSON array",
                                           {"type": type(events).__name__}))
        return out
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            out.rejections.append(Rejection.of("sendgrid_events", f"#{index}", "event", "not a JSON object", {}))
            continue
        # Only what identifies the event is kept in quarantine: never the address.
        kept = {k: event.get(k) for k in ("sg_event_id", "event", "timestamp", "message_key")}
        record = str(event.get("sg_event_id") or f"#{index}")
        if not event.get("message_key"):
            out.foreign += 1
            continue
        name = str(event.get("event") or "")
        problem = None
        if not event.get("sg_event_id"):
            problem = ("sg_event_id", "sg_event_id is missing")
        elif name not in EVENTS:
            problem = ("event", f"unknown event {name!r}")
        else:
            try:
                at = datetime.fromtimestamp(int(event["timestamp"]), UTC)
            except (KeyError, TypeError, ValueError, OverflowError):
                problem = ("timestamp", f"timestamp {event.get('timestamp')!r} is not a Unix time")
        if problem:
            out.rejections.append(Rejection.of("sendgrid_events", record, problem[0], problem[1], kept))
            continue
        reason = event.get("reason") or event.get("response") or event.get("type")
        out.rows.append({"provider_event_id": str(event["sg_event_id"]), "message_key": str(event["message_key"]),
                         "event": name, "at": at, "reason": mask_emails_in(str(reason)) if reason else None})
    return out


def record(engine: Engine, events: Any, received_at: datetime) -> dict[str, Any]:
    """Store one webhook body; returns counts (stored, duplicates, foreign, quarantined, by event)."""
    batch = sendgrid_event_rows(events)
    with engine.begin() as conn:
        stored = upsert(conn, schema.message_events, batch.rows)
        store_rejections(conn, batch.rejections, received_at)
    counts = {"stored": stored, "duplicates": len(batch.rows) - stored, "foreign": batch.foreign,
              "quarantined": len(batch.rejections),
              "by_event": dict(sorted(Counter(r["event"] for r in batch.rows).items()))}
    log.info("sendgrid events: %s", counts)
    return counts
