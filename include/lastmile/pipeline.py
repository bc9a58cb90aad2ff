"""The pipeline's steps, one function per DAG task. Each takes `as_of` and returns small counts.

Data moves between steps through the history database, keyed by the run's batch key (its `as_of`),
so every step can be rerun on its own and a rerun of the same instant changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Connection, and_, delete, func, or_, select, update

from lastmile import detection, orders, schema, thresholds
from lastmile.accounts import TrackingAccount, account_from_env, vendor_of
from lastmile.brand import load_brand
from lastmile.cases import build_cases
from lastmile.config import Settings
from lastmile.db import Busy, batch_key_for, engine_for, held, masked_url, upsert, utc, writing
from lastmile.feeds import read_feed
from lastmile.messages import CaseFacts, decide
from lastmile.policy import gate
from lastmile.privacy import mask_email
from lastmile.quarantine import Rejection, store_rejections
from lastmile.sources import order_source
from lastmile.steps import STEPS
from lastmile.transport import (
    Ambiguous,
    Outgoing,
    Rejected,
    SendGridTransport,
    TryLater,
    Unauthorized,
    make_transport,
    write_index,
)
from lastmile.windows import estimate_errors, estimate_is_fresh, revised_window, transit_history

if TYPE_CHECKING:
    from lastmile.sendgrid_client import SendGridConfig

log = logging.getLogger("lastmile")



def _utc(as_of: datetime) -> datetime:
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of!r} must carry a time zone")
    return as_of.astimezone(UTC)


def _record_step(conn: Connection, as_of: datetime, step: str, counts: dict[str, Any]) -> dict[str, Any]:
    upsert(conn, schema.run_steps, [{"batch_key": batch_key_for(as_of), "step": step, "as_of": as_of,
                                     "counts": json.dumps(counts, sort_keys=True)}], update=["counts"])
    log.info("%s %s: %s", step, batch_key_for(as_of), json.dumps(counts, sort_keys=True))
    return counts


def _quarantine(conn: Connection, rejections: list[Rejection], as_of: datetime) -> int:
    return store_rejections(conn, rejections, as_of)


def _frame(conn: Connection, stmt: Any) -> pd.DataFrame:
    return pd.read_sql(stmt, conn)


# -- steps -----------------------------------------------------------------------------------------

def load_orders(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Read orders, lines, shipments and subscriptions changed by `as_of`; validate; upsert."""
    as_of = _utc(as_of)
    engine = engine_for(settings.db_url)
    wm = schema.source_watermarks
    with engine.connect() as conn:
        marks = {r.entity: utc(r.watermark) for r in conn.execute(select(wm).where(wm.c.source == settings.source))}
        raw = order_source(settings, marks).load(as_of)
        # Parents loaded by earlier runs count: incremental sources send only what changed.
        valid = orders.validate(raw, as_of=as_of, known=orders.history_lookup(conn),
                                codes_in_history=orders.tracking_code_lookup(conn))
    with engine.begin() as conn:
        unnumbered = {s["order_line_id"] for s in valid.shipments if s["sequence"] is None}
        if unnumbered:
            known = [dict(r) for r in conn.execute(select(schema.shipments).where(
                schema.shipments.c.order_line_id.in_(unnumbered))).mappings()]
            orders.number_shipments(valid.shipments, known)
        for table, rows in ((schema.customers, valid.customers), (schema.subscriptions, valid.subscriptions),
                            (schema.orders, valid.orders), (schema.order_lines, valid.order_lines),
                            (schema.shipments, valid.shipments)):
            keys = {c.name for c in table.primary_key.columns}
            upsert(conn, table, rows, update=[c.name for c in table.columns if c.name not in keys])
        upsert(conn, wm, [{"source": settings.source, "entity": e, "watermark": w, "batch_key": batch_key_for(as_of)}
                          for e, w in raw.watermarks.items()], update=["watermark", "batch_key"])
        _quarantine(conn, valid.rejections, as_of)
        return _record_step(conn, as_of, "load_orders", {
            "source": settings.source, "orders": len(valid.orders), "order_lines": len(valid.order_lines),
            "shipments": len(valid.shipments), "customers": len(valid.customers),
            "subscriptions": len(valid.subscriptions), "quarantined": len(valid.rejections)})


class FeedDown(RuntimeError):
    """A carrier account could not be read this run; its parcels are in an unknown state."""

    def __init__(self, account: str, detail: str) -> None:
        super().__init__(f"carrier feed {account!r} is down: {detail}")
        self.account = account
        self.detail = detail


def tracking_accounts(settings: Settings) -> list[str]:
    """The carrier accounts to fetch, one mapped task each."""
    return list(settings.tracking_accounts)


def _routed_to(account: str, settings: Settings) -> Any:
    """Shipments fetched through `account`: those naming it, and unnamed ones for the first account."""
    col = schema.shipments.c.tracking_account
    if account == settings.tracking_accounts[0]:
        return or_(col == account, col.is_(None), col.not_in(settings.tracking_accounts))
    return col == account


def fetch_tracking(settings: Settings, as_of: datetime, account: TrackingAccount | None = None) -> dict[str, Any]:
    """Poll one carrier account for its shipments not finished by `as_of`; store new scans and estimates.

    A feed that fails still keeps what it returned before failing; its health row says it is down,
    and FeedDown is raised so ops see the account's task fail while the other accounts go on.
    """
    as_of = _utc(as_of)
    account = account or TrackingAccount(settings.tracking_accounts[0], vendor_of(settings.tracking_accounts[0]))
    engine = engine_for(settings.db_url)
    with engine.connect() as conn:
        finished = select(schema.scans.c.shipment_id).where(
            schema.scans.c.status.in_(["delivered", "returned", "failed", "cancelled"]),
            schema.scans.c.occurred_at <= as_of)
        active = conn.execute(select(schema.shipments).where(
            schema.shipments.c.created_at <= as_of, schema.shipments.c.shipment_id.not_in(finished),
            _routed_to(account.name, settings))).mappings().all()
    feed = read_feed(settings, account, [dict(r) for r in active], as_of)
    parsed, error = feed.parsed, feed.error
    for scan in parsed.scans:
        scan["first_seen_at"] = as_of
    with engine.begin() as conn:
        new_scans = upsert(conn, schema.scans, parsed.scans)
        upsert(conn, schema.estimates, parsed.estimates, update=["observed_at"], only_if_newer="observed_at")
        _quarantine(conn, parsed.rejections, as_of)
        updated = conn.execute(select(func.count(func.distinct(schema.scans.c.shipment_id))).where(
            schema.scans.c.first_seen_at == as_of, schema.scans.c.shipment_id.in_(
                select(schema.shipments.c.shipment_id).where(_routed_to(account.name, settings))))).scalar_one()
        unmapped = sum(1 for s in parsed.scans if s["status"] == "unmapped")
        upsert(conn, schema.feed_health, [{
            "account": account.name, "batch_key": batch_key_for(as_of), "vendor": account.vendor, "as_of": as_of,
            "ok": error is None, "shipments_asked": len(active), "trackers_received": feed.received,
            "trackers_updated": updated, "scans_new": new_scans, "error": error}],
            update=["vendor", "as_of", "ok", "shipments_asked", "trackers_received", "trackers_updated",
                    "scans_new", "error"])
        counts = _record_step(conn, as_of, f"fetch_tracking[{account.name}]", {
            "account": account.name, "ok": error is None,
            "trackers_polled": len(active), "trackers_parsed": parsed.trackers_ok, "scans_seen": len(parsed.scans),
            "scans_new": new_scans, "trackers_updated": updated, "scans_unmapped": unmapped,
            "quarantined": len(parsed.rejections)})
    if error is not None:
        log.error("ALERT carrier feed %s (%s) is down: %s; its %d active shipments are in an unknown state",
                  account.name, account.vendor, error, len(active))
        raise FeedDown(account.name, error)
    return counts


def feed_states(conn: Connection, settings: Settings, as_of: datetime) -> dict[str, dict[str, Any]]:
    """Per configured account: ok, down (the latest fetch failed), stale (no success for too long), never."""
    fh = schema.feed_health
    out: dict[str, dict[str, Any]] = {}
    for account in settings.tracking_accounts:
        rows = conn.execute(select(fh.c.as_of, fh.c.ok, fh.c.error).where(fh.c.account == account,
                                                                          fh.c.as_of <= as_of)
                            .order_by(fh.c.as_of.desc()).limit(1)).all()
        last_ok = conn.execute(select(func.max(fh.c.as_of)).where(fh.c.account == account, fh.c.ok.is_(True),
                                                                  fh.c.as_of <= as_of)).scalar()
        last_ok = utc(last_ok)
        if not rows:
            state = "never"
        elif not rows[0].ok:
            state = "down"
        elif last_ok is None or (as_of - last_ok).total_seconds() > settings.feed_stale_hours * 3600:
            state = "stale"
        else:
            state = "ok"
        out[account] = {"state": state, "last_success": last_ok.isoformat() if last_ok else None,
                        "error": rows[0].error if rows else None}
    return out


def _scans_until(conn: Connection, as_of: datetime) -> pd.DataFrame:
    cols = [c for c in schema.scans.c if c.name != "raw"]
    frame = _frame(conn, select(*cols).where(schema.scans.c.occurred_at <= as_of))
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame


def _estimates_until(conn: Connection, as_of: datetime) -> pd.DataFrame:
    return _frame(conn, select(schema.estimates).where(schema.estimates.c.observed_at <= as_of))


def detect_exceptions(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Run the detection rules as of `as_of`; the batch's detections replace any earlier attempt."""
    as_of = _utc(as_of)
    batch = batch_key_for(as_of)
    with engine_for(settings.db_url).begin() as conn:
        shipments = _frame(conn, select(schema.shipments).where(schema.shipments.c.created_at <= as_of))
        feeds = feed_states(conn, settings, as_of)
        shipments["tracking_account"] = shipments["tracking_account"].where(
            shipments["tracking_account"].isin(settings.tracking_accounts), settings.tracking_accounts[0])
        # Missing scans from a feed we could not read say nothing about the parcel (no false "lost").
        shipments["feed_unknown"] = shipments["tracking_account"].isin(
            {a for a, f in feeds.items() if f["state"] != "ok"})
        found = detection.detect(shipments, _scans_until(conn, as_of), _estimates_until(conn, as_of), as_of,
                                 thresholds.load())
        conn.execute(delete(schema.detections).where(schema.detections.c.batch_key == batch))
        rows = found.assign(batch_key=batch, window_earliest=None, window_latest=None, window_basis=None)
        rows["first_evidence_at"] = [t.to_pydatetime() for t in pd.to_datetime(rows["first_evidence_at"], utc=True)]
        upsert(conn, schema.detections, rows.to_dict("records"))
        open_rows = found[found["open"].astype(bool)]
        return _record_step(conn, as_of, "detect_exceptions", {
            "shipments_checked": len(shipments), "detections": len(found),
            "feeds": {a: f["state"] for a, f in feeds.items()},
            "unknown_state_shipments": int(shipments["feed_unknown"].sum()),
            "open_by_type": dict(sorted(Counter(open_rows["exception_type"]).items())),
            "all_by_type": dict(sorted(Counter(found["exception_type"]).items()))})


def compute_windows(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Give every open detection a revised window where the parcel is still coming."""
    as_of = _utc(as_of)
    batch = batch_key_for(as_of)
    with engine_for(settings.db_url).begin() as conn:
        dets = _frame(conn, select(schema.detections).where(schema.detections.c.batch_key == batch,
                                                            schema.detections.c.open.is_(True)))
        shipments = _frame(conn, select(schema.shipments).where(schema.shipments.c.created_at <= as_of))
        scans = _scans_until(conn, as_of)
        estimates = _estimates_until(conn, as_of)
        history = transit_history(shipments, scans, as_of)
        accepted = scans[scans["status"] != "pre_transit"].groupby("shipment_id")["occurred_at"].min()
        errors = estimate_errors(shipments, scans, estimates, as_of)
        current = (estimates.assign(observed_at=pd.to_datetime(estimates["observed_at"], utc=True))
                   .sort_values(["observed_at", "est_delivery_date"]).groupby("shipment_id")
                   .agg(est=("est_delivery_date", "last"), at=("observed_at", "last"), n=("observed_at", "size"))
                   if not estimates.empty else pd.DataFrame(columns=["est", "at", "n"]))
        by_id = shipments.set_index("shipment_id")
        given = 0
        for det in dets.itertuples():
            shipment = by_id.loc[det.shipment_id]
            acc = accepted.get(det.shipment_id)
            est = current.loc[det.shipment_id] if det.shipment_id in current.index else None
            window = revised_window(
                shipment, det.exception_type, acc.to_pydatetime() if acc is not None else None,
                est["est"] if est is not None else None, history, as_of, errors,
                estimate_after_evidence=est is not None and estimate_is_fresh(est["at"], det.first_evidence_at, acc),
                estimate_is_revision=est is not None and est["n"] > 1)
            if window is None:
                continue
            given += 1
            conn.execute(update(schema.detections).where(
                schema.detections.c.batch_key == batch, schema.detections.c.shipment_id == det.shipment_id,
                schema.detections.c.exception_type == det.exception_type,
            ).values(window_earliest=window.earliest, window_latest=window.latest, window_basis=window.basis))
        return _record_step(conn, as_of, "compute_windows", {
            "open_detections": len(dets), "windows_given": given, "no_honest_date": len(dets) - given,
            "delivered_history": len(history)})


CASE_EVENT_KEY = ("case_id", "batch_key", "event", "detail")


def newer_batch(conn: Connection, batch: str) -> str | None:
    """The newest run that recorded case history, when it is newer than `batch`; else None.

    The newest run owns current case state and the outbox. An older run (a backfill, a cleared
    task of an earlier date) keeps its own detections for the record and changes neither: a
    case never moves backwards and nothing the newer state no longer owes is sent.
    """
    newest = conn.execute(select(func.max(schema.run_steps.c.batch_key)).where(
        schema.run_steps.c.step == "record_history")).scalar()
    return newest if newest is not None and newest > batch else None


def record_history(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Open, update and resolve cases from this batch's detections; log every change as an event."""
    as_of = _utc(as_of)
    batch = batch_key_for(as_of)
    brand = load_brand()
    with writing(engine_for(settings.db_url)) as conn:
        newer = newer_batch(conn, batch)
        if newer is not None:
            log.info("record_history %s: the newer run %s owns the cases; this run's detections stay for the record",
                     batch, newer)
            return _record_step(conn, as_of, "record_history", {
                "cases_changed": 0, "case_events": 0, "by_state": {}, "superseded_by": newer})
        dets = _frame(conn, select(schema.detections).where(schema.detections.c.batch_key == batch))
        shipments = _frame(conn, select(schema.shipments).where(schema.shipments.c.created_at <= as_of))
        delivered = dict(conn.execute(select(schema.scans.c.shipment_id, func.min(schema.scans.c.occurred_at))
                                      .where(schema.scans.c.status == "delivered",
                                             schema.scans.c.occurred_at <= as_of)
                                      .group_by(schema.scans.c.shipment_id)).all())
        delivered = {k: utc(v) for k, v in delivered.items()}
        existing = {r["case_id"]: dict(r) for r in conn.execute(select(schema.cases)).mappings()}
        order_status = {k: v for k, v in conn.execute(select(schema.orders.c.order_id, schema.orders.c.status).where(
            schema.orders.c.status.in_(["cancelled", "refunded"])))}
        updates = build_cases(dets, shipments, delivered, existing, as_of, batch, brand.owner_team,
                              brand.escalation_owner, order_status)
        upsert(conn, schema.cases, [u.case for u in updates],
               update=[c.name for c in schema.cases.columns if c.name not in ("case_id", "opened_at")])
        events = [{"case_id": u.case["case_id"], "batch_key": batch, "at": as_of, "event": e, "detail": d}
                  for u in updates for e, d in u.events]
        upsert(conn, schema.case_events, events, conflict=CASE_EVENT_KEY)
        states = Counter(u.case["state"] for u in updates)
        return _record_step(conn, as_of, "record_history", {
            "cases_changed": len(updates), "case_events": len(events), "by_state": dict(sorted(states.items()))})


def plan_messages(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Plan the e-mails this run owes into the outbox (idempotent by message key)."""
    as_of = _utc(as_of)
    batch = batch_key_for(as_of)
    brand = load_brand()
    planned: list[dict[str, Any]] = []
    escalations: list[str] = []
    with writing(engine_for(settings.db_url)) as conn:
        newer = newer_batch(conn, batch)
        if newer is not None:
            log.info("plan_messages %s: the newer run %s owns the outbox; nothing planned", batch, newer)
            return _record_step(conn, as_of, "plan_messages", {
                "planned": 0, "by_kind": {}, "escalated": 0, "superseded_by": newer})
        live_cases = conn.execute(select(schema.cases).where(
            or_(schema.cases.c.state != "resolved", schema.cases.c.last_batch == batch))).mappings().all()
        unplannable: list[Rejection] = []
        if live_cases:
            facts, unplannable = _case_facts(conn, [dict(c) for c in live_cases], as_of)
            _quarantine(conn, unplannable, as_of)
            for f in facts:
                decision = decide(f, as_of, batch, brand)
                if decision.message is not None:
                    planned.append(decision.message)
                if decision.escalate and f.case["state"] != "escalated":
                    escalations.append(f.case["case_id"])
        inserted = upsert(conn, schema.outbox, planned)
        for case_id in escalations:
            conn.execute(update(schema.cases).where(schema.cases.c.case_id == case_id).values(
                state="escalated", owner=brand.escalation_owner))
            upsert(conn, schema.case_events, [{"case_id": case_id, "batch_key": batch, "at": as_of,
                                               "event": "escalated", "detail": "window_passed"}],
                   conflict=CASE_EVENT_KEY)
        kinds = Counter(f"{m['kind']}:{m['state']}" for m in planned)
        return _record_step(conn, as_of, "plan_messages", {
            "planned": inserted, "by_kind": dict(sorted(kinds.items())), "escalated": len(escalations),
            "cases_without_records": len(unplannable)})


def _case_facts(conn: Connection, cases: list[dict[str, Any]],
                as_of: datetime) -> tuple[list[CaseFacts], list[Rejection]]:
    """What each case's message needs; a case whose customer, order, line or shipment the history
    lacks (loaded before validation checked parents) is set aside as a rejection, not a crash."""
    ids = {k: sorted({c[k] for c in cases}) for k in ("customer_id", "order_id", "shipment_id", "case_id",
                                                      "order_line_id")}

    def by(table: Any, key: str, values: list[str]) -> dict[str, dict[str, Any]]:
        rows = conn.execute(select(table).where(table.c[key].in_(values))).mappings()
        return {r[key]: dict(r) for r in rows}

    customers = by(schema.customers, "customer_id", ids["customer_id"])
    order_rows = by(schema.orders, "order_id", ids["order_id"])
    ships = by(schema.shipments, "shipment_id", ids["shipment_id"])
    lines = by(schema.order_lines, "order_line_id", ids["order_line_id"])
    subs = {r["subscription_id"]: r for r in conn.execute(select(schema.subscriptions)).mappings()}
    previous: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(select(schema.outbox).where(schema.outbox.c.case_id.in_(ids["case_id"]))).mappings():
        previous.setdefault(row["case_id"], []).append(dict(row))
    delivered = dict(conn.execute(select(schema.scans.c.shipment_id, func.min(schema.scans.c.occurred_at)).where(
        schema.scans.c.shipment_id.in_(ids["shipment_id"]), schema.scans.c.status == "delivered",
        schema.scans.c.occurred_at <= as_of).group_by(schema.scans.c.shipment_id)).all())
    estimates = dict(conn.execute(select(schema.estimates.c.shipment_id, func.max(schema.estimates.c.est_delivery_date))
                                  .where(schema.estimates.c.shipment_id.in_(ids["shipment_id"]),
                                         schema.estimates.c.observed_at <= as_of)
                                  .group_by(schema.estimates.c.shipment_id)).all())
    newest = {}
    for sid, status, at in conn.execute(select(schema.scans.c.shipment_id, schema.scans.c.status,
                                               schema.scans.c.occurred_at).where(
            schema.scans.c.shipment_id.in_(ids["shipment_id"]), schema.scans.c.occurred_at <= as_of)
            .order_by(schema.scans.c.occurred_at)):
        newest[sid] = (status, utc(at))
    facts: list[CaseFacts] = []
    missing: list[Rejection] = []
    for case in cases:
        lacking = next(((key, table) for key, table in (("customer_id", customers), ("order_id", order_rows),
                                                       ("shipment_id", ships), ("order_line_id", lines))
                        if case[key] not in table), None)
        if lacking is not None:
            missing.append(Rejection.of("cases", case["case_id"], lacking[0],
                                        f"{lacking[0]} {case[lacking[0]]} is not in the history: no e-mail possible",
                                        {"case_id": case["case_id"], lacking[0]: case[lacking[0]]}))
            continue
        order = order_rows[case["order_id"]]
        sub = subs.get(order["subscription_id"] or "")
        shipment = ships[case["shipment_id"]]
        facts.append(CaseFacts(
            case=case, customer=customers[case["customer_id"]], order=order, shipment=shipment,
            items=[lines[case["order_line_id"]]], subscription_next=sub["next_delivery_date"] if sub else None,
            delivered_at=utc(delivered.get(case["shipment_id"])), promised_date=shipment["promised_date"],
            carrier_estimate=estimates.get(case["shipment_id"]), previous=previous.get(case["case_id"], []),
            last_scan_status=newest.get(case["shipment_id"], (None, None))[0],
            last_scan_at=newest.get(case["shipment_id"], (None, None))[1]))
    return facts, missing


def send_messages(settings: Settings, as_of: datetime, sendgrid: SendGridConfig | None = None) -> dict[str, Any]:
    """Send every planned message at most once, within the attention policy.

    One sender at a time: the step holds the history's send lock (a second run waits for it, then
    finds nothing left to send), and each message is claimed `planned → sending` only while it is
    still planned. A message found still 'sending' was handed to the provider by a run that died
    before hearing back: it becomes 'ambiguous' for ops to reconcile and is never resent blindly.
    """
    as_of = _utc(as_of)
    engine = engine_for(settings.db_url)
    with engine.connect() as conn:
        newer = newer_batch(conn, batch_key_for(as_of))
    if newer is not None:
        log.info("send_messages %s: the newer run %s owns the outbox; nothing sent", batch_key_for(as_of), newer)
        with engine.begin() as conn:
            return _record_step(conn, as_of, "send_messages", {**_NOTHING_SENT, "superseded_by": newer})
    try:
        with held(engine, "send", settings.send_lock_wait_seconds):
            return _send_locked(settings, as_of, engine, sendgrid)
    except Busy:
        log.warning("send_messages %s: another run is sending e-mail right now and kept the send lock for %.0f s; "
                    "this run sent nothing: its messages stay planned for that run or the next",
                    batch_key_for(as_of), settings.send_lock_wait_seconds)
        with engine.begin() as conn:
            return _record_step(conn, as_of, "send_messages", {**_NOTHING_SENT, "busy": True})


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
        counts = _record_step(conn, as_of, "send_messages", {
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
    from lastmile.sendgrid_client import fetch_suppressions

    rows = [{**r, "synced_at": as_of} for r in fetch_suppressions(transport.sender)]
    upsert(conn, schema.suppressions, rows, update=["reason", "synced_at"])
    return len(rows)


def summarise(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """What this run found, who was told and what failed: for the task log and the demo."""
    as_of = _utc(as_of)
    batch = batch_key_for(as_of)
    with engine_for(settings.db_url).connect() as conn:
        steps = {r.step: json.loads(r.counts) for r in conn.execute(
            select(schema.run_steps).where(schema.run_steps.c.batch_key == batch))}
        outbox = dict(conn.execute(select(schema.outbox.c.state, func.count()).group_by(schema.outbox.c.state)).all())
        kinds = dict(conn.execute(select(schema.outbox.c.kind, func.count()).where(
            schema.outbox.c.state == "sent").group_by(schema.outbox.c.kind)).all())
        quarantined = dict(conn.execute(select(schema.quarantine.c.source, func.count())
                                        .group_by(schema.quarantine.c.source)).all())
        cases = dict(conn.execute(select(schema.cases.c.state, func.count()).group_by(schema.cases.c.state)).all())
        open_by_type = dict(conn.execute(select(schema.cases.c.exception_type, func.count()).where(
            schema.cases.c.state != "resolved").group_by(schema.cases.c.exception_type)).all())
        this_run = dict(conn.execute(select(schema.outbox.c.state, func.count()).where(
            and_(schema.outbox.c.planned_batch == batch)).group_by(schema.outbox.c.state)).all())
        feeds = feed_states(conn, settings, as_of)
    return {
        "batch": batch,
        "orders": steps.get("load_orders", {}).get("orders", 0),
        "shipments": steps.get("load_orders", {}).get("shipments", 0),
        "scans_new": sum(c.get("scans_new", 0) for step, c in steps.items() if step.startswith("fetch_tracking")),
        "feeds": feeds,
        "unknown_state_shipments": steps.get("detect_exceptions", {}).get("unknown_state_shipments", 0),
        "exceptions_open_by_type": steps.get("detect_exceptions", {}).get("open_by_type", {}),
        "exceptions_all_by_type": steps.get("detect_exceptions", {}).get("all_by_type", {}),
        "cases_by_state": dict(sorted(cases.items())),
        "open_cases_by_type": dict(sorted(open_by_type.items())),
        "emails_sent_this_run": steps.get("send_messages", {}).get("sent", 0),
        "emails_failed_this_run": steps.get("send_messages", {}).get("failed", 0),
        "messages_planned_this_run": dict(sorted(this_run.items())),
        "outbox_by_state": dict(sorted(outbox.items())),
        "sent_by_kind": dict(sorted(kinds.items())),
        "quarantined_by_source": dict(sorted(quarantined.items())),
        "outbox_index": str(settings.outbox_dir / "index.html"),
        "history_db": masked_url(settings.db_url),
    }


def run_all(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Every step in DAG order, in-process: for the backtest and tests; the DAG calls them one by one."""
    result: dict[str, Any] = {}
    for step in STEPS:
        if step != "fetch_tracking":
            result = globals()[step](settings, as_of)
            continue
        for name in tracking_accounts(settings):
            try:
                fetch_tracking(settings, as_of, account_from_env(name))
            except FeedDown:
                pass  # logged and recorded in feed_health; the other accounts go on, as in the DAG
    return result


def reconcile(settings: Settings, mark_sent: str | None = None, resend: str | None = None) -> list[dict[str, Any]]:
    """Settle an ambiguous or failed message by hand; returns those still needing a person."""
    ob = schema.outbox
    with engine_for(settings.db_url).begin() as conn:
        needs_person = ob.c.state.in_(["ambiguous", "failed"])
        for key, values in ((mark_sent, {"state": "sent", "state_reason": "confirmed by ops"}),
                            (resend, {"state": "planned", "state_reason": "released by ops for resending"})):
            if key and conn.execute(update(ob).where(ob.c.message_key == key, needs_person).values(**values)
                                    ).rowcount != 1:
                raise ValueError(f"{key!r} is not an ambiguous or failed message")
        return [dict(r) for r in conn.execute(select(ob.c.message_key, ob.c.state, ob.c.state_reason)
                                               .where(needs_person).order_by(ob.c.message_key)).mappings()]


def detections_and_truth(settings: Settings, as_of: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulator's ground truth and the detections of the run at `as_of`, for scoring."""
    truth = pd.read_csv(settings.sim_dir / "ground_truth.csv", dtype=str, keep_default_na=False)
    with engine_for(settings.db_url).connect() as conn:
        dets = _frame(conn, select(schema.detections).where(
            schema.detections.c.batch_key == batch_key_for(_utc(as_of))))
    return truth, dets
