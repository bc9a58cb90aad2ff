"""plan_messages: live cases → the e-mail each owes → the outbox (idempotent by message key)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select, union, update

from lastmile.config import Settings
from lastmile.core.brand import load_brand
from lastmile.core.cases import LIVE_STATES
from lastmile.core.rejections import Rejection
from lastmile.email.locales import customer_locale
from lastmile.email.messages import CaseFacts, decide
from lastmile.steps.common import quarantine, record_step, superseded, utc_instant
from lastmile.steps.record_history import CASE_EVENT_KEY
from lastmile.store import schema, tallies
from lastmile.store.db import batch_key_for, engine_for, upsert, utc, writing
from lastmile.store.queries import chunks

log = logging.getLogger("lastmile")


def plan_messages(settings: Settings, as_of: datetime) -> dict[str, Any]:
    """Plan the e-mails this run owes into the outbox (idempotent by message key)."""
    as_of = utc_instant(as_of)
    batch = batch_key_for(as_of)
    brand = load_brand()
    planned: list[dict[str, Any]] = []
    languages: Counter[str] = Counter()  # the language each planned e-mail is written in
    fallbacks: Counter[str] = Counter()  # "de_AT → de": the customer's locale has no catalog of its own
    escalations: list[str] = []
    with writing(engine_for(settings.db_url)) as conn:
        if (done := superseded(conn, as_of, "plan_messages", {"planned": 0, "by_kind": {}, "escalated": 0})):
            return done
        live_cases = _cases_to_consider(conn, batch, as_of)
        unplannable: list[Rejection] = []
        if live_cases:
            facts, unplannable = _case_facts(conn, [dict(c) for c in live_cases], as_of)
            quarantine(conn, unplannable, as_of)
            for f in facts:
                decision = decide(f, as_of, batch, brand)
                if decision.message is not None:
                    planned.append(decision.message)
                    chosen = customer_locale(f.customer.get("locale"))  # as render chose it
                    languages[chosen.language] += 1
                    if chosen.fallback:
                        fallbacks[chosen.fallback] += 1
                if decision.escalate and f.case["state"] != "escalated":
                    escalations.append(f.case["case_id"])
        inserted = upsert(conn, schema.outbox, planned)
        for part in chunks(escalations):
            conn.execute(update(schema.cases).where(schema.cases.c.case_id.in_(part)).values(
                state="escalated", owner=brand.escalation_owner))
        upsert(conn, schema.case_events, [{"case_id": case_id, "batch_key": batch, "at": as_of, "event": "escalated",
                                           "detail": "window_passed"} for case_id in escalations],
               conflict=CASE_EVENT_KEY)
        kinds = Counter(f"{m['kind']}:{m['state']}" for m in planned)
        # (the count changes of the cases record_history wrote and the messages planned now, one
        # row per key again: after a first run over a large history, tens of thousands)
        tallies.fold(conn)
        return record_step(conn, as_of, "plan_messages", {
            "planned": inserted, "by_kind": dict(sorted(kinds.items())), "escalated": len(escalations),
            "cases_without_records": len(unplannable), "by_language": dict(sorted(languages.items())),
            "language_fallbacks": dict(sorted(fallbacks.items()))})


def _cases_to_consider(conn: Connection, batch: str, as_of: datetime) -> list[dict[str, Any]]:
    """The cases that may owe an e-mail now: changed by this batch, on an order line this batch
    re-detected (a scan may be news: out for delivery, moving again), or holding a promise whose
    day has come (a window we gave that may have passed, a date we said we would write again by).
    Nothing else can owe one."""
    ca, ob, d = schema.cases.c, schema.outbox.c, schema.detections.c
    lines = select(d.order_line_id).where(d.batch_key == batch)
    tomorrow = as_of.date() + timedelta(days=1)
    # (a subquery per live case, through (state, case_id); as EXISTS, Postgres hashes every promise
    # ever sent, since nearly all of them are past)
    promised = select(ob.case_id).where(ob.state == "sent", ob.case_id == ca.case_id,
                                        or_(ob.window_latest < tomorrow, ob.check_in_by <= tomorrow)).limit(1)
    # Three lookups through indexes, not one OR that reads every case ever opened and every promise
    # ever made: by batch; by the lines re-detected (then "not resolved", which no index serves);
    # the live cases (by state) with a sent promise. Then the cases themselves, by key.
    ids = conn.execute(union(select(ca.case_id).where(ca.last_batch == batch),
                             select(ca.case_id).where(ca.order_line_id.in_(lines), ca.state != "resolved"),
                             select(ca.case_id).where(ca.state.in_(LIVE_STATES),
                                                      promised.scalar_subquery().is_not(None)))).scalars()
    return [dict(r) for part in chunks(ids) for r in conn.execute(
        select(schema.cases).where(ca.case_id.in_(part))).mappings()]


def _case_facts(conn: Connection, cases: list[dict[str, Any]],
                as_of: datetime) -> tuple[list[CaseFacts], list[Rejection]]:
    """What each case's message needs; a case whose customer, order, line or shipment the history
    lacks (loaded before validation checked parents) is set aside as a rejection, not a crash."""
    ids = {k: sorted({c[k] for c in cases}) for k in ("customer_id", "order_id", "shipment_id", "case_id",
                                                      "order_line_id")}

    # Every IN list in chunks: a first run over a large history has more ids than a statement may
    # bind (Postgres: 65,535 parameters).
    def by(table: Any, key: str, values: list[str]) -> dict[str, dict[str, Any]]:
        return {r[key]: dict(r) for part in chunks(values)
                for r in conn.execute(select(table).where(table.c[key].in_(part))).mappings()}

    def rows(stmt: Any, column: Any, values: list[str]) -> list[Any]:
        return [r for part in chunks(values) for r in conn.execute(stmt.where(column.in_(part)))]

    customers = by(schema.customers, "customer_id", ids["customer_id"])
    order_rows = by(schema.orders, "order_id", ids["order_id"])
    ships = by(schema.shipments, "shipment_id", ids["shipment_id"])
    lines = by(schema.order_lines, "order_line_id", ids["order_line_id"])
    subs = by(schema.subscriptions, "subscription_id",
              sorted({o["subscription_id"] for o in order_rows.values() if o["subscription_id"]}))
    previous: dict[str, list[dict[str, Any]]] = {}
    for row in rows(select(schema.outbox), schema.outbox.c.case_id, ids["case_id"]):
        previous.setdefault(row.case_id, []).append(dict(row._mapping))
    sc, es = schema.scans.c, schema.estimates.c
    delivered = dict(rows(select(sc.shipment_id, func.min(sc.occurred_at)).where(
        sc.status == "delivered", sc.occurred_at <= as_of).group_by(sc.shipment_id), sc.shipment_id, ids["shipment_id"]))
    estimates = dict(rows(select(es.shipment_id, func.max(es.est_delivery_date)).where(es.observed_at <= as_of)
                          .group_by(es.shipment_id), es.shipment_id, ids["shipment_id"]))
    newest = {}
    # (per shipment in time order: each chunk holds whole shipments, so the last scan wins)
    for sid, status, at in rows(select(sc.shipment_id, sc.status, sc.occurred_at).where(sc.occurred_at <= as_of)
                                .order_by(sc.occurred_at), sc.shipment_id, ids["shipment_id"]):
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
