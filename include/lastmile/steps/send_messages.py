"""send_messages: the outbox's planned messages → the transport, at most once each."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, select, update

from lastmile.config import Settings
from lastmile.core.brand import load_brand
from lastmile.core.policy import gate
from lastmile.core.privacy import mask_email
from lastmile.email.outgoing import Ambiguous, Outgoing, Rejected, TryLater, Unauthorized
from lastmile.email.transport import SendGridTransport, make_transport, write_index
from lastmile.steps.common import record_step, utc_instant
from lastmile.store import schema
from lastmile.store.db import Busy, batch_key_for, engine_for, held, upsert, utc
from lastmile.store.queries import newer_batch

if TYPE_CHECKING:
    from lastmile.email.sendgrid_client import SendGridConfig

log = logging.getLogger("lastmile")


def send_messages(settings: Settings, as_of: datetime, sendgrid: SendGridConfig | None = None) -> dict[str, Any]:
    """Send every planned message at most once, within the attention policy.

    One sender at a time: the step holds the history's send lock (a second run waits for it, then
    finds nothing left to send), and each message is claimed `planned → sending` only while it is
    still planned. A message found still 'sending' was handed to the provider by a run that died
    before hearing back: it becomes 'ambiguous' for ops to reconcile and is never resent blindly.
    """
    as_of = utc_instant(as_of)
    engine = engine_for(settings.db_url)
    with engine.connect() as conn:
        newer = newer_batch(conn, batch_key_for(as_of))
    if newer is not None:
        log.info("send_messages %s: the newer run %s owns the outbox; nothing sent", batch_key_for(as_of), newer)
        with engine.begin() as conn:
            return record_step(conn, as_of, "send_messages", {**_NOTHING_SENT, "superseded_by": newer})
    try:
        with held(engine, "send", settings.send_lock_wait_seconds):
            return _send_locked(settings, as_of, engine, sendgrid)
    except Busy:
        log.warning("send_messages %s: another run is sending e-mail right now and kept the send lock for %.0f s; "
                    "this run sent nothing: its messages stay planned for that run or the next",
                    batch_key_for(as_of), settings.send_lock_wait_seconds)
        with engine.begin() as conn:
            return record_step(conn, as_of, "send_messages", {**_NOTHING_SENT, "busy": True})


_NOTHING_SENT = {"sent": 0, "failed": 0, "ambiguous": 0, "retry_later": 0, "suppressed": 0, "deferred": 0}


def _send_locked(settings: Settings, as_of: datetime, engine: Any, sendgrid: SendGridConfig | None) -> dict[str, Any]:
    brand = load_brand()
    transport = make_transport(settings, brand, sendgrid)
    ob = schema.outbox
    with engine.begin() as conn:
        # Under the send lock, a message still 'sending' belongs to a sender that died mid-request.
        orphaned = conn.execute(update(ob).where(ob.c.state == "sending").values(
            state="ambiguous", state_reason="the sending run stopped before the provider answered; not resent")
        ).rowcount
        synced = _sync_suppressions(conn, transport, as_of)
        suppressed: dict[str, set[str]] = {}
        for email, kind in conn.execute(select(schema.suppressions.c.email, schema.suppressions.c.kind)):
            suppressed.setdefault(email, set()).add(kind)
        pending = [dict(r) for r in conn.execute(
            select(ob, schema.customers.c.tz).join(schema.customers, schema.customers.c.customer_id == ob.c.customer_id)
            .where(ob.c.state == "planned").order_by(ob.c.planned_at, ob.c.message_key)).mappings()]
        sent_before = conn.execute(select(ob.c.order_id, ob.c.sent_at, ob.c.send_at, schema.customers.c.tz).join(
            schema.customers, schema.customers.c.customer_id == ob.c.customer_id).where(
            ob.c.state == "sent", ob.c.order_id.in_({r["order_id"] for r in pending}))).all()
    policy = brand.policy
    today: Counter[str] = Counter(
        order for order, sent_at, send_at, tz in sent_before
        if policy.local_day(utc(send_at or sent_at), tz) == policy.local_day(as_of, tz))  # type: ignore[arg-type]
    outcome: Counter[str] = Counter()
    auth_error: str | None = None
    for row in pending:
        key = ob.c.message_key == row["message_key"]
        still_planned = and_(key, ob.c.state == "planned")
        decision = gate(row["kind"], row["recipient"], row["tz"], suppressed, today[row["order_id"]], as_of, policy)
        if decision.action != "send":
            state = "suppressed" if decision.action == "suppress" else "planned"
            with engine.begin() as conn:
                conn.execute(update(ob).where(still_planned).values(state=state, state_reason=decision.reason))
            outcome[decision.action + "ed" if decision.action == "suppress" else "deferred"] += 1
            continue
        with engine.begin() as conn:
            # The claim: only the sender that moves it out of 'planned' may send it.
            claimed = conn.execute(update(ob).where(still_planned).values(
                state="sending", attempts=row["attempts"] + 1, send_at=decision.send_at)).rowcount
        if claimed != 1:
            outcome["taken"] += 1
            continue
        state, values = "sent", {}
        try:
            ref = transport.send(Outgoing.from_row({**row, "send_at": decision.send_at}))
            values = {"sent_at": as_of, "transport_ref": ref, "state_reason": None}
        except Unauthorized as err:
            state, values, auth_error = "planned", {"state_reason": f"not sent: {err.detail}"}, err.detail
        except Rejected as err:
            state, values = "failed", {"state_reason": err.detail}
        except Ambiguous as err:
            state, values = "ambiguous", {"state_reason": err.detail}
        except (TryLater, OSError) as err:
            state, values = "planned", {"state_reason": f"retry next run: {getattr(err, 'detail', type(err).__name__)}"}
        with engine.begin() as conn:
            conn.execute(update(ob).where(key, ob.c.state == "sending").values(state=state, **values))
            if state == "sent" and row["kind"] == "notice":
                conn.execute(update(schema.cases).where(
                    schema.cases.c.case_id == row["case_id"], schema.cases.c.state == "open").values(state="told"))
        outcome[state] += 1
        if state == "sent":
            today[row["order_id"]] += 1
        else:
            log.warning("message %s to %s: %s (%s)", row["message_key"], mask_email(row["recipient"]), state,
                        values.get("state_reason"))
        if auth_error:
            break
    with engine.begin() as conn:
        everything = [dict(r) for r in conn.execute(select(ob)).mappings()]
        index = write_index(settings.outbox_dir, everything)
        counts = record_step(conn, as_of, "send_messages", {
            "sent": outcome["sent"], "failed": outcome["failed"], "ambiguous": outcome["ambiguous"] + orphaned,
            "retry_later": outcome["planned"], "suppressed": outcome["suppressed"], "deferred": outcome["deferred"],
            "taken_by_another_run": outcome["taken"],
            "suppressions_synced": synced, "outbox_total": len(everything), "index": str(index)})
    if auth_error:
        raise PermissionError(f"e-mail provider refused our credentials ({auth_error}); messages kept for the next run")
    return counts


def _sync_suppressions(conn: Connection, transport: Any, as_of: datetime) -> int:
    """Pull the provider's bounce/block/spam/unsubscribe lists into `suppressions` before sending."""
    if not isinstance(transport, SendGridTransport):
        return 0
    from lastmile.email.sendgrid_client import fetch_suppressions

    rows = [{**r, "synced_at": as_of} for r in fetch_suppressions(transport.sender)]
    upsert(conn, schema.suppressions, rows, update=["reason", "synced_at"])
    return len(rows)
