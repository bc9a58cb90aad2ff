"""Decide which customer e-mails a run owes: one per case per run, each under a deterministic key.

The key (case, kind, detail) is the outbox's primary key, so a rerun or backfill plans the same
keys and the database refuses the second copy. A promise we already broke is never followed by a
new automated date: the case goes to a named person instead (PRINCIPLES 3).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from lastmile.core.brand import Brand
from lastmile.core.calendar import add_business_days, business_days_between, country_for
from lastmile.core.detection import SEVERITY
from lastmile.core.privacy import one_line
from lastmile.email.emails import render

LIVE_STATES = ("planned", "sending", "sent")


@dataclass(frozen=True)
class CaseFacts:
    """Everything about a case that an e-mail may say, gathered by the caller from the history."""

    case: dict[str, Any]
    customer: dict[str, Any]
    order: dict[str, Any]
    shipment: dict[str, Any]
    items: list[dict[str, Any]]
    subscription_next: date | None
    delivered_at: datetime | None
    promised_date: date
    carrier_estimate: date | None
    previous: list[dict[str, Any]]  # this case's outbox rows so far
    last_scan_status: str | None = None  # the current shipment's newest scan by as_of
    last_scan_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    message: dict[str, Any] | None
    escalate: bool = False


def message_key(case_id: str, kind: str, detail: str) -> str:
    return f"{case_id}/{kind}/{detail}"


def decide(facts: CaseFacts, as_of: datetime, batch_key: str, brand: Brand) -> Decision:
    """The message this case owes now (if any), and whether the case must go to a person."""
    case = facts.case
    live = [m for m in facts.previous if m["state"] in LIVE_STATES]
    keys = {m["message_key"] for m in facts.previous}
    case_id = case["case_id"]
    if case["state"] == "resolved":
        if case.get("resolution") not in (None, "delivered"):
            return Decision(None)  # cancelled or refunded: the person who settled it told the customer
        told = [m for m in live if m["kind"] in ("notice", "escalated")]
        key = message_key(case_id, "resolved", "delivered")
        if not told or key in keys:
            return Decision(None)
        return Decision(_message(facts, "resolved", key, as_of, batch_key, brand, case["owner"]))

    today = as_of.astimezone(ZoneInfo(facts.shipment["dest_tz"])).date()
    promised = [m for m in live if m["state"] == "sent" and m.get("window_latest") is not None]
    if promised:
        broken = max(_as_date(m["window_latest"]) for m in promised)
        if broken < today:
            key = message_key(case_id, "escalated", f"window-{broken.isoformat()}")
            if key in keys:
                return Decision(None, escalate=True)
            return Decision(_message(facts, "escalated", key, as_of, batch_key, brand, brand.escalation_owner,
                                     broken_window_latest=broken), escalate=True)
    detail = case["exception_type"]
    if detail == "reshipped":
        detail = f"reshipped-{case['shipments_in_chain']}"
    key = message_key(case_id, "notice", detail)
    told = [m for m in live if m["kind"] != "resolved"]
    # News is a first notice, a reshipment, or something graver than what they were told.
    if key not in keys and (not told or detail.startswith("reshipped")
                            or _gravity(detail) > max(_gravity(_detail(m)) for m in told)):
        return Decision(_message(facts, "notice", key, as_of, batch_key, brand, case["owner"]))
    update = _status_change(facts, told)
    if update is not None and message_key(case_id, "update", update) not in keys:
        return Decision(_message(facts, "update", message_key(case_id, "update", update), as_of, batch_key,
                                 brand, case["owner"], update=update.split("@")[0]))
    due = _check_in_due(live, today)
    if due is not None:
        key = message_key(case_id, "check_in", due.isoformat())
        if key not in keys:
            return Decision(_message(facts, "check_in", key, as_of, batch_key, brand, case["owner"]))
    return Decision(None)


def _check_in_due(live: list[dict[str, Any]], today: date) -> date | None:
    """The date we promised to write again by, when it has come and nothing went out since the
    promise: we keep it whatever happens (the check-in e-mail)."""
    for promise in sorted((m for m in live if m["state"] == "sent" and m.get("check_in_by") is not None),
                          key=lambda m: _aware(m["planned_at"])):
        by = _as_date(promise["check_in_by"])
        since = [m for m in live if m["message_key"] != promise["message_key"]
                 and _aware(m["planned_at"]) > _aware(promise["planned_at"])]
        if by <= today and not since:
            return by
    return None


def _detail(message: dict[str, Any]) -> str:
    return str(message["message_key"]).rsplit("/", 1)[-1]


def _gravity(detail: str) -> int:
    if detail.startswith("reshipped"):
        return SEVERITY["reshipped"] + (1 if detail.endswith(("-3", "-4", "-5")) else 0)
    if detail.startswith(("out_for_delivery", "moving_again")):
        return 0
    return SEVERITY.get(detail.split("-")[0], 0)


def _status_change(facts: CaseFacts, told: list[dict[str, Any]]) -> str | None:
    """A follow-up the customer should hear after being told (PRINCIPLES 6), keyed per shipment."""
    if not told or facts.last_scan_at is None:
        return None
    last_told = max(m["planned_at"] for m in told)
    if facts.last_scan_at <= _aware(last_told):
        return None
    sid = facts.shipment["shipment_id"]
    if facts.last_scan_status == "out_for_delivery":
        return f"out_for_delivery@{sid}"
    was_stuck = any(_detail(m) in ("stalled", "stuck_before_pickup") for m in told)
    if was_stuck and facts.last_scan_status == "in_transit" and facts.case["exception_type"] not in (
            "stalled", "stuck_before_pickup"):
        return f"moving_again@{sid}"
    return None


def _aware(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo("UTC"))


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _message(facts: CaseFacts, kind: str, key: str, as_of: datetime, batch_key: str, brand: Brand,
             owner: str, broken_window_latest: date | None = None, update: str | None = None) -> dict[str, Any]:
    case, customer, shipment = facts.case, facts.customer, facts.shipment
    evidence = json.loads(case["evidence"]).get(case["exception_type"], {})
    chain = int(case["shipments_in_chain"])
    is_standing_order = bool(facts.order.get("subscription_id"))
    window: tuple[Any, Any] = (None, None)
    if kind == "notice":
        window = (case["window_earliest"], case["window_latest"])
    elif kind in ("update", "check_in"):  # repeat the promise we made, never a quietly different one
        promised = [m for m in facts.previous if m["state"] == "sent" and m.get("window_latest") is not None]
        if promised:
            last = max(promised, key=lambda m: str(m["planned_at"]))
            window = (last["window_earliest"], last["window_latest"])
    today = as_of.astimezone(ZoneInfo(shipment["dest_tz"])).date()
    country = country_for(shipment.get("dest_country"), shipment["dest_tz"])
    check_in_by = _check_in_by(_maybe_date(window[0]), _maybe_date(window[1]), today, country, brand)
    context = {
        "customer_name": one_line(customer["name"]),
        "locale": customer["locale"],
        "order_id": case["order_id"],
        "case_id": case["case_id"],
        "items": facts.items,
        "carrier": shipment["carrier"],
        "tracking_code": shipment["tracking_code"],
        "tracking_url": brand.tracking_url.format(tracking_code=shipment["tracking_code"]),
        "owner": owner,
        "brand": brand,
        "exception_type": case["exception_type"],
        "shipments_in_chain": chain,
        "evidence": evidence,
        "promised_date": facts.promised_date,
        "carrier_estimate": facts.carrier_estimate,
        "window_earliest": _maybe_date(window[0]),
        "window_latest": _maybe_date(window[1]),
        "goodwill": _goodwill(kind, chain, is_standing_order, case["exception_type"]),
        "subscription_next": facts.subscription_next if is_standing_order and kind == "notice" else None,
        "delivered_date": (facts.delivered_at.astimezone(ZoneInfo(shipment["dest_tz"])).date()
                           if facts.delivered_at else None),
        "broken_window_latest": broken_window_latest,
        "update": update,
        "check_in_by": check_in_by,
        "last_scan_status": facts.last_scan_status,
        "today": today,  # a follow-up never repeats a window's first day once it has come
    }
    rendered = render(kind, context)
    email = customer.get("email")
    return {
        "message_key": key,
        "case_id": case["case_id"],
        "order_id": case["order_id"],
        "kind": kind,
        "state": "planned" if email else "suppressed",
        "state_reason": None if email else "no valid e-mail address on file (see quarantine)",
        "customer_id": customer["customer_id"],
        "recipient": email,
        "recipient_name": context["customer_name"],
        "subject": rendered.subject,
        "body_text": rendered.text,
        "body_html": rendered.html,
        "window_earliest": context["window_earliest"],
        "window_latest": context["window_latest"],
        "check_in_by": check_in_by,
        "planned_at": as_of,
        "planned_batch": batch_key,
        "sent_at": None,
        "send_at": None,
        "transport_ref": None,
        "attempts": 0,
    }


def _check_in_by(earliest: date | None, latest: date | None, today: date, country: str, brand: Brand) -> date | None:
    """For a window too wide to be a real promise: the date by which we write again, whatever
    happens (while it still comes before the window's last day). None for a narrow window."""
    if earliest is None or latest is None:
        return None
    policy = brand.policy
    if business_days_between(earliest, latest, country) <= policy.wide_window_business_days:
        return None
    by = add_business_days(today, policy.check_in_business_days, country)
    return by if by < latest else None


def _goodwill(kind: str, chain: int, standing_order: bool, exception_type: str) -> str | None:
    """Why a goodwill gesture is owed (PRINCIPLES 7), or None. Offered once, with the notice."""
    if kind != "notice":
        return None
    if chain >= 3:
        return "repeated"
    if standing_order and exception_type == "lost":
        return "standing_order"
    return None


def _maybe_date(value: Any) -> date | None:
    return None if value is None or value != value else _as_date(value)  # NaN-safe
