"""Settling the outbox by hand: the ambiguous or failed messages a person confirms, resends or drops.

One home for the rule, whoever asks: the CLI (`python -m lastmile outbox`) and the Airflow
`reconcile_outbox` DAG (a person answers in the Airflow UI) both call `reconcile`.

- mark sent: the provider did deliver it (seen in its activity log) → `sent` (sent when its run
  handed it over; a notice makes its open case `told`, as a send does); never sent again.
- resend: the provider never got it → `planned`; the next `send_messages` sends it, once.
- drop: it must never go (no longer true, the customer was told another way) → `dropped`.

Only a message still waiting for a person (`ambiguous` or `failed`) can be settled, and each
settlement is also written to its case's history (`case_events`): what was done, by whom.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from lastmile.config import Settings
from lastmile.core.privacy import mask_emails_in, one_line
from lastmile.steps.record_history import CASE_EVENT_KEY
from lastmile.steps.send_messages import mark_told
from lastmile.store import schema
from lastmile.store.db import batch_key_for, engine_for, upsert, utc, writing

log = logging.getLogger("lastmile")

NEEDS_PERSON = ("ambiguous", "failed")
# choice -> (the message's new state, its state_reason, the case event that records it)
SETTLEMENTS = {
    "mark_sent": ("sent", "confirmed by {by}", "message_marked_sent"),
    "resend": ("planned", "released by {by} for resending", "message_released"),
    "drop": ("dropped", "dropped by {by}; never to be sent (was {was})", "message_dropped"),
}
LAST_ERROR_CHARS = 120


class NotWaiting(ValueError):
    """The message is not (or no longer) ambiguous or failed: someone settled it already, or it never was."""


class Stale(ValueError):
    """A resend would say what is no longer true: its case is resolved, or the window it promises is
    over. Drop it instead; the next run writes what the customer is owed now."""


def reconcile(settings: Settings, mark_sent: str | None = None, resend: str | None = None,
              drop: str | None = None, *, by: str = "ops", at: datetime | None = None) -> list[dict[str, Any]]:
    """Settle ambiguous or failed messages by hand; returns those still needing a person.

    `by` names who decided (an ops user, never a customer); `at` is when (default: now).
    Raises NotWaiting, and changes nothing, when a key is not an ambiguous or failed message.
    """
    ob = schema.outbox
    at = utc(at) if at is not None else datetime.now(UTC)
    by = (mask_emails_in(one_line(by)) or "")[:60] or "ops"  # an SSO login may be an address
    with writing(engine_for(settings.db_url)) as conn:
        needs_person = ob.c.state.in_(NEEDS_PERSON)
        for choice, key in (("mark_sent", mark_sent), ("resend", resend), ("drop", drop)):
            if not key:
                continue
            row = conn.execute(select(ob.c.case_id, ob.c.kind, ob.c.state, ob.c.window_latest).where(
                ob.c.message_key == key, needs_person)).mappings().first()
            if row is None:
                raise NotWaiting(f"{key!r} is not an ambiguous or failed message")
            if choice == "resend":
                _still_true(conn, key, row, at)
            state, reason, event = SETTLEMENTS[choice]
            values: dict[str, Any] = {"state": state, "state_reason": reason.format(by=by, was=row["state"])}
            if choice == "mark_sent":
                # Sent when its run handed it over, as the sender would have recorded it, so the
                # confirmed message counts in the analysts' views (time to e-mail, promises kept).
                # (Handed over before that was recorded: now, when a person confirmed it, at the latest.)
                values["sent_at"] = func.coalesce(ob.c.handed_at, at)
            conn.execute(update(ob).where(ob.c.message_key == key, needs_person).values(**values))
            if choice == "mark_sent" and row["kind"] == "notice":
                mark_told(conn, [row["case_id"]])
            # the case's history: what happened to which of its messages, and who decided
            upsert(conn, schema.case_events, [{
                "case_id": row["case_id"], "batch_key": batch_key_for(at), "at": at, "event": event,
                "detail": f"{key.removeprefix(row['case_id'] + '/')} by {by}"[:128]}], conflict=CASE_EVENT_KEY)
            log.info("outbox %s: %s -> %s by %s", key, row["state"], state, by)
        return [dict(r) for r in conn.execute(select(ob.c.message_key, ob.c.state, ob.c.state_reason)
                                               .where(needs_person).order_by(ob.c.message_key)).mappings()]


def _still_true(conn: Any, key: str, row: Any, at: datetime) -> None:
    """Raise Stale when resending `key` would tell the customer something no longer true."""
    case_state = conn.execute(select(schema.cases.c.state).where(schema.cases.c.case_id == row["case_id"])
                              ).scalar()
    if case_state == "resolved":
        raise Stale(f"{key!r} belongs to a case already resolved: drop it instead of resending")
    latest = row["window_latest"]
    if latest is not None and str(latest)[:10] < at.date().isoformat():
        raise Stale(f"{key!r} promises a window that ended on {str(latest)[:10]}: drop it instead of resending")


def waiting_for_a_person(settings: Settings, limit: int | None = None) -> list[dict[str, Any]]:
    """The ambiguous or failed messages, with only what a person needs to decide and may see anywhere
    (a log, XCom, a prompt): ids, kind, state, when, tries and the last error's class. Never the
    recipient, their name, the subject or the body."""
    ob = schema.outbox.c
    with engine_for(settings.db_url).connect() as conn:
        rows = conn.execute(select(ob.message_key, ob.case_id, ob.order_id, ob.kind, ob.state, ob.state_reason,
                                   ob.planned_at, ob.attempts).where(ob.state.in_(NEEDS_PERSON))
                            .order_by(ob.planned_at, ob.message_key).limit(limit)).mappings().all()
    return [{"message_key": r["message_key"], "case_id": r["case_id"], "order_id": r["order_id"],
             "kind": r["kind"], "state": r["state"], "last_error": last_error(r["state_reason"]),
             "planned_at": utc(r["planned_at"]).isoformat(), "attempts": r["attempts"]} for r in rows]


def last_error(reason: str | None) -> str | None:
    """What went wrong, safe to show anywhere: a provider's answer is cut to its status ('HTTP 400'),
    since its body may echo the request; any other text is one line, addresses masked, shortened."""
    if not reason:
        return None
    text = one_line(reason)
    if text.startswith("HTTP ") and ":" in text:
        return text.split(":", 1)[0]
    text = mask_emails_in(text) or ""
    return text if len(text) <= LAST_ERROR_CHARS else text[: LAST_ERROR_CHARS - 1] + "…"
