"""send_messages: the outbox's planned messages → the transport, at most once each."""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, func, select, update

from lastmile.config import Settings
from lastmile.core.brand import load_brand
from lastmile.core.policy import gate
from lastmile.core.privacy import mask_email
from lastmile.email.outgoing import Ambiguous, Outgoing, Rejected, TryLater, Unauthorized
from lastmile.email.transport import (
    HTML_HEAD_CHARS,
    INDEX_LIMIT,
    FileTransport,
    SendGridTransport,
    make_transport,
    write_index,
)
from lastmile.steps.common import record_step, superseded, utc_instant
from lastmile.store import schema, tallies
from lastmile.store.db import Busy, batch_key_for, engine_for, held, upsert, utc, writing
from lastmile.store.queries import chunks

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
    with engine.begin() as conn:
        if (done := superseded(conn, as_of, "send_messages", _NOTHING_SENT)):
            return done
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
    with writing(engine) as conn:
        # Under the send lock, a message still 'sending' belongs to a sender that died mid-request.
        orphaned = conn.execute(update(ob).where(ob.c.state == "sending").values(
            state="ambiguous", state_reason="the sending run stopped before the provider answered; not resent")
        ).rowcount
        synced = _sync_suppressions(conn, transport, as_of)
        suppressed: dict[str, set[str]] = {}
        pending = [dict(r) for r in conn.execute(
            select(ob, schema.customers.c.tz).join(schema.customers, schema.customers.c.customer_id == ob.c.customer_id)
            .where(ob.c.state == "planned").order_by(ob.c.planned_at, ob.c.message_key)).mappings()]
        sup = schema.suppressions.c
        recipients = sorted({r["recipient"].lower() for r in pending if r["recipient"]})
        for start in range(0, len(recipients), 500):  # only this run's recipients, not every suppression
            for email, kind in conn.execute(select(sup.email, sup.kind).where(
                    sup.email.in_(recipients[start:start + 500]))):
                suppressed.setdefault(email, set()).add(kind)
        sent_before = sent_to_orders(conn, {r["order_id"] for r in pending})
    policy = brand.policy
    today: Counter[str] = Counter(
        order for order, sent_at, send_at, tz in sent_before
        if policy.local_day(utc(send_at or sent_at), tz) == policy.local_day(as_of, tz))  # type: ignore[arg-type]
    outcome: Counter[str] = Counter()
    auth_error: str | None = None
    # Claims go in groups of `send_concurrency`, each committed (with the outcomes heard so far)
    # before its requests leave, and at most two groups are in flight: a sender killed
    # mid-request leaves exactly the messages that may have reached the provider in 'sending'
    # (at most twice `send_concurrency`), and a commit serves a group, not a message.
    group_size = max(1, settings.send_concurrency)
    unwritten: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
    in_flight: dict[Future[str], dict[str, Any]] = {}

    def write_outcomes(conn: Connection) -> None:
        """The outcomes heard so far: one statement per outcome state, run for each of its messages."""
        by_state: dict[str, list[dict[str, Any]]] = {}
        for done, state, values in unwritten:
            by_state.setdefault(state, []).append({"key": done["message_key"], **values})
        for state, params in by_state.items():
            names = sorted({n for p in params for n in p} - {"key"})
            # (bound as v_<column>: SQLAlchemy keeps a column's own name for its SET clause)
            conn.execute(update(ob).where(ob.c.message_key == bindparam("key"), ob.c.state == "sending")
                         .values(state=state, **{n: bindparam(f"v_{n}") for n in names}),
                         [{"key": p["key"], **{f"v_{n}": p.get(n) for n in names}} for p in params])
        mark_told(conn, [done["case_id"] for done, state, _ in unwritten if state == "sent" and done["kind"] == "notice"])
        unwritten.clear()

    def settle(wait_for: int) -> None:
        """Collect finished sends until at most `wait_for` remain in flight."""
        nonlocal auth_error
        while len(in_flight) > wait_for:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                row = in_flight.pop(future)
                state, values, refused = _outcome(future, as_of)
                auth_error = auth_error or refused
                unwritten.append((row, state, values))
                outcome[state] += 1
                if state != "sent":
                    today[row["order_id"]] -= 1  # counted when dispatched; it did not go
                    log.warning("message %s to %s: %s (%s)", row["message_key"], mask_email(row["recipient"]),
                                state, values.get("state_reason"))

    queue = iter(pending)
    with ThreadPoolExecutor(max_workers=group_size) as pool:
        while not auth_error:
            settle(group_size)
            if auth_error:
                break
            group: list[tuple[dict[str, Any], datetime | None]] = []
            held_back: list[dict[str, Any]] = []
            for row in queue:
                decision = gate(row["kind"], row["recipient"], row["tz"], suppressed, today[row["order_id"]],
                                as_of, policy)
                if decision.action == "send":
                    today[row["order_id"]] += 1  # the daily cap counts it now, before the next decision
                    group.append((row, decision.send_at))
                    if len(group) == group_size:
                        break
                else:
                    held_back.append({"key": row["message_key"], "v_reason": decision.reason,
                                      "v_state": "suppressed" if decision.action == "suppress" else "planned"})
                    outcome["suppressed" if decision.action == "suppress" else "deferred"] += 1
            if not group and not held_back and not unwritten:
                break
            with engine.begin() as conn:
                write_outcomes(conn)
                if held_back:
                    conn.execute(update(ob).where(ob.c.message_key == bindparam("key"), ob.c.state == "planned")
                                 .values(state=bindparam("v_state"), state_reason=bindparam("v_reason")), held_back)
                claimed = _claim(conn, group, as_of)
            for row, send_at in group:
                if row["message_key"] not in claimed:  # another sender moved it out of 'planned' first
                    outcome["taken"] += 1
                    continue
                message = Outgoing.from_row({**row, "send_at": send_at})
                in_flight[pool.submit(transport.send, message)] = row
            if not group:
                break
        settle(0)
    with engine.begin() as conn:
        write_outcomes(conn)
        by_state = tallies.counts(conn, tallies.OUTBOX_BY_STATE)
        total = sum(by_state.values())
        index = None
        if isinstance(transport, FileTransport):  # the outbox a person reads: the file transport's
            listed = [dict(r) for r in conn.execute(select(
                ob.c.message_key, ob.c.planned_at, ob.c.case_id, ob.c.kind, ob.c.state, ob.c.recipient,
                ob.c.subject, func.substr(ob.c.body_html, 1, HTML_HEAD_CHARS).label("html_head"))
                .order_by(ob.c.planned_at.desc(), ob.c.message_key.desc()).limit(INDEX_LIMIT)).mappings().all()]
            index = write_index(settings.outbox_dir, listed, by_state)
        counts = record_step(conn, as_of, "send_messages", {
            "sent": outcome["sent"], "failed": outcome["failed"], "ambiguous": outcome["ambiguous"] + orphaned,
            "retry_later": outcome["planned"], "suppressed": outcome["suppressed"], "deferred": outcome["deferred"],
            "taken_by_another_run": outcome["taken"],
            "suppressions_synced": synced, "outbox_total": total, "index": str(index) if index else None})
    if auth_error:
        raise PermissionError(f"e-mail provider refused our credentials ({auth_error}); messages kept for the next run")
    return counts


def sent_to_orders(conn: Connection, order_ids: set[str]) -> list[tuple[str, Any, Any, str]]:
    """The messages already sent about these orders: (order, sent_at, send_at, the customer's zone)."""
    ob = schema.outbox.c
    # Through the order index, the sent ones kept here: with the state in the query the planner may
    # walk every message ever sent instead (SQLite did, through the (state, kind) index).
    return [(order, sent_at, send_at, tz) for part in chunks(order_ids)
            for order, state, sent_at, send_at, tz in conn.execute(
                select(ob.order_id, ob.state, ob.sent_at, ob.send_at, schema.customers.c.tz).join(
                    schema.customers, schema.customers.c.customer_id == ob.customer_id).where(ob.order_id.in_(part)))
            if state == "sent"]


def _claim(conn: Connection, group: list[tuple[dict[str, Any], datetime | None]], as_of: datetime) -> set[str]:
    """Move the group's messages that are still planned to 'sending', handed over as of this run;
    the keys this sender now owns."""
    ob = schema.outbox
    by_send_at: dict[datetime | None, list[str]] = {}
    for row, send_at in group:
        by_send_at.setdefault(send_at, []).append(row["message_key"])
    claimed: set[str] = set()
    for send_at, keys in by_send_at.items():
        claimed |= set(conn.execute(update(ob).where(ob.c.message_key.in_(sorted(keys)), ob.c.state == "planned")
                                    .values(state="sending", attempts=ob.c.attempts + 1, send_at=send_at,
                                            handed_at=as_of)
                                    .returning(ob.c.message_key)).scalars())
    return claimed


def _outcome(future: Future[str], as_of: datetime) -> tuple[str, dict[str, Any], str | None]:
    """A finished send's state, the outbox columns that record it, and the provider's refusal of our
    credentials (which stops the batch)."""
    try:
        return "sent", {"sent_at": as_of, "transport_ref": future.result(), "state_reason": None}, None
    except Unauthorized as err:
        return "planned", {"state_reason": f"not sent: {err.detail}"}, err.detail
    except Rejected as err:
        return "failed", {"state_reason": err.detail}, None
    except Ambiguous as err:
        return "ambiguous", {"state_reason": err.detail}, None
    except (TryLater, OSError) as err:
        return "planned", {"state_reason": f"retry next run: {getattr(err, 'detail', type(err).__name__)}"}, None


def _sync_suppressions(conn: Connection, transport: Any, as_of: datetime) -> int:
    """Pull the provider's bounce/block/spam/unsubscribe lists into `suppressions` before sending."""
    if not isinstance(transport, SendGridTransport):
        return 0
    from lastmile.email.sendgrid_client import fetch_suppressions

    rows = [{**r, "synced_at": as_of} for r in fetch_suppressions(transport.sender)]
    upsert(conn, schema.suppressions, rows, update=["reason", "synced_at"])
    return len(rows)


def mark_told(conn: Connection, case_ids: list[str]) -> None:
    """An open case whose notice went out (sent, or confirmed sent by a person) is now `told`."""
    for part in chunks(sorted(set(case_ids))):
        conn.execute(update(schema.cases).where(schema.cases.c.case_id.in_(part), schema.cases.c.state == "open")
                     .values(state="told"))
