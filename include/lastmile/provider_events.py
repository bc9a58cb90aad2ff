"""What SendGrid later says about the e-mails we sent: its Event Webhook, verified and recorded.

SendGrid posts a JSON array of events (docs: "Event Webhook Reference"): each has `event`
(processed, delivered, deferred, dropped, bounce, open, click, spamreport, unsubscribe,
group_unsubscribe, group_resubscribe), a Unix `timestamp`, a unique `sg_event_id`, and our custom
args as top-level keys — we send `message_key` and `case_id` with every message. With the Signed
Event Webhook, the request carries `X-Twilio-Email-Event-Webhook-Signature` (base64 ECDSA P-256 /
SHA-256 over the timestamp header followed by the raw body) and
`X-Twilio-Email-Event-Webhook-Timestamp`; the public key is shown in SendGrid's settings.

Rows go to `message_events` keyed by `sg_event_id`, so a redelivered batch is stored once. The
recipient's address is never stored; addresses inside a reason are masked.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from lastmile import schema
from lastmile.db import upsert
from lastmile.privacy import mask_emails_in
from lastmile.quarantine import Rejection, store_rejections

log = logging.getLogger(__name__)

EVENTS = frozenset({"processed", "delivered", "deferred", "dropped", "bounce", "open", "click", "spamreport",
                    "unsubscribe", "group_unsubscribe", "group_resubscribe"})
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass
class EventBatch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    foreign: int = 0  # events about mail we did not send (no message_key): counted, not stored


def verify_signature(public_key: str, signature: str, timestamp: str, body: bytes) -> bool:
    """True when SendGrid signed `timestamp + body` with the key whose public half is `public_key`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(base64.b64decode(public_key))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


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
