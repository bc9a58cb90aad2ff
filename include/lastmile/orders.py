"""Validate raw order-side records into typed rows; every failure becomes a named rejection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email

from lastmile.calendar import TZ_COUNTRY
from lastmile.quarantine import Rejection
from lastmile.sources import RawOrders
from lastmile.tracking import parse_timestamp


@dataclass
class ValidOrders:
    customers: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    order_lines: list[dict[str, Any]] = field(default_factory=list)
    shipments: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class _Invalid(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name


def _required(row: dict[str, Any], name: str) -> str:
    value = str(row.get(name) or "").strip()
    if not value:
        raise _Invalid(name, f"{name} is missing")
    return value


def _tz(row: dict[str, Any], name: str) -> str:
    value = _required(row, name)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as 'America'
        raise _Invalid(name, f"unknown time zone {value!r}") from None
    return value


def _instant(row: dict[str, Any], name: str) -> Any:
    try:
        return parse_timestamp(_required(row, name))[0]
    except ValueError as err:
        raise _Invalid(name, str(err)) from None


def _date(row: dict[str, Any], name: str) -> date:
    try:
        return date.fromisoformat(_required(row, name))
    except ValueError:
        raise _Invalid(name, f"{row.get(name)!r} is not a date (YYYY-MM-DD)") from None


def _int(row: dict[str, Any], name: str, minimum: int = 0) -> int:
    try:
        value = int(_required(row, name))
    except ValueError:
        raise _Invalid(name, f"{row.get(name)!r} is not a whole number") from None
    if value < minimum:
        raise _Invalid(name, f"{value} is below {minimum}")
    return value


def check_email(address: str) -> str:
    """The normalised address, or _Invalid naming why it cannot receive mail."""
    if not address.strip():
        raise _Invalid("email", "e-mail address is missing")
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as err:
        raise _Invalid("email", f"e-mail address is invalid: {err}") from None


def _customer(row: dict[str, Any]) -> dict[str, Any]:
    tz = _tz(row, "tz")
    return {"customer_id": _required(row, "customer_id"), "name": _required(row, "name"),
            "email": str(row.get("email") or ""),
            "tz": tz, "country": (row.get("country") or TZ_COUNTRY.get(tz, "")).upper()[:2],
            "locale": row.get("locale") or "en_US"}


def _subscription(row: dict[str, Any]) -> dict[str, Any]:
    cadence = _required(row, "cadence")
    if cadence not in ("weekly", "monthly"):
        raise _Invalid("cadence", f"cadence {cadence!r} is not weekly or monthly")
    return {"subscription_id": _required(row, "subscription_id"), "customer_id": _required(row, "customer_id"),
            "cadence": cadence, "sku": _required(row, "sku"),
            "next_delivery_date": _date(row, "next_delivery_date"), "status": row.get("status") or "active"}


ORDER_STATUSES = ("open", "cancelled", "refunded")


def _order(row: dict[str, Any]) -> dict[str, Any]:
    status = str(row.get("status") or "open").strip().lower()
    if status not in ORDER_STATUSES:
        raise _Invalid("status", f"order status {status!r} is not one of {', '.join(ORDER_STATUSES)}")
    return {"order_id": _required(row, "order_id"), "customer_id": _required(row, "customer_id"),
            "placed_at": _instant(row, "placed_at"), "subscription_id": row.get("subscription_id") or None,
            "currency": _required(row, "currency").upper(), "status": status}


def _line(row: dict[str, Any]) -> dict[str, Any]:
    return {"order_line_id": _required(row, "order_line_id"), "order_id": _required(row, "order_id"),
            "sku": _required(row, "sku"), "description": _required(row, "description"),
            "quantity": _int(row, "quantity", minimum=1)}


def _shipment(row: dict[str, Any]) -> dict[str, Any]:
    return {"shipment_id": _required(row, "shipment_id"), "order_line_id": _required(row, "order_line_id"),
            "order_id": _required(row, "order_id"), "customer_id": _required(row, "customer_id"),
            "carrier": _required(row, "carrier"), "service": _required(row, "service"),
            "tracking_code": _required(row, "tracking_code"), "created_at": _instant(row, "created_at"),
            "promised_date": _date(row, "promised_date"), "origin": _required(row, "origin"),
            "destination": _required(row, "destination"), "dest_tz": _tz(row, "dest_tz"),
            # Optional: without them the chain is numbered by creation time (number_shipments).
            "sequence": _int(row, "sequence", minimum=1) if str(row.get("sequence") or "").strip() else None,
            "replaces_shipment_id": row.get("replaces_shipment_id") or None,
            "tracking_account": str(row.get("tracking_account") or "").strip() or None}


def number_shipments(new: list[dict[str, Any]], known: list[dict[str, Any]]) -> None:
    """Give shipments without a `sequence` their place in their order line's chain, in place.

    A shop that only records "another shipment for this line" gets the same chain as one that
    numbers reshipments itself: ordered by creation time (then id), each replacing the one before.
    """
    lines = {s["order_line_id"] for s in new if s["sequence"] is None}
    if not lines:
        return
    chains: dict[str, dict[str, dict[str, Any]]] = {}
    for s in [*known, *new]:  # new rows win over what the history already holds
        if s["order_line_id"] in lines:
            chains.setdefault(s["order_line_id"], {})[s["shipment_id"]] = s
    numbered = {}
    for chain in chains.values():
        ordered = sorted(chain.values(), key=lambda s: (s["created_at"], s["shipment_id"]))
        for n, s in enumerate(ordered, start=1):
            numbered[s["shipment_id"]] = (n, ordered[n - 2]["shipment_id"] if n > 1 else None)
    for s in new:
        if s["sequence"] is None:
            s["sequence"], replaces = numbered[s["shipment_id"]]
            s["replaces_shipment_id"] = s["replaces_shipment_id"] or replaces


# Customer fields that identify a person stay out of the quarantine table (PRINCIPLES 9).
PERSONAL = ("name", "email")


def _validate(
    rows: list[dict[str, Any]], source: str, key: str, convert: Callable[[dict[str, Any]], dict[str, Any]],
    out: list[dict[str, Any]], rejections: list[Rejection],
) -> None:
    seen: set[str] = set()
    for row in rows:
        record_id = str(row.get(key) or "?").strip()
        kept = {k: ("(redacted)" if k in PERSONAL and v else v) for k, v in row.items()}
        try:
            valid = convert(row)
        except _Invalid as err:
            rejections.append(Rejection.of(source, record_id, err.field, str(err), kept))
            continue
        if valid[key] in seen:
            rejections.append(Rejection.of(source, record_id, key, f"duplicate {key}; first one kept", kept))
            continue
        seen.add(valid[key])
        out.append(valid)


def validate(raw: RawOrders) -> ValidOrders:
    """Typed, de-duplicated rows; rejected records carry their id, field and reason."""
    out = ValidOrders()
    _validate(raw.customers, "customers", "customer_id", _customer, out.customers, out.rejections)
    for customer in out.customers:
        try:
            customer["email"] = check_email(customer["email"])
        except _Invalid as err:
            customer["email"] = None
            # The parcel is still tracked and ops still see the case; only the e-mail is impossible.
            out.rejections.append(Rejection.of("customers", customer["customer_id"], err.field, str(err),
                                               {"customer_id": customer["customer_id"]}))
    _validate(raw.subscriptions, "subscriptions", "subscription_id", _subscription, out.subscriptions,
              out.rejections)
    _validate(raw.orders, "orders", "order_id", _order, out.orders, out.rejections)
    _validate(raw.order_lines, "order_lines", "order_line_id", _line, out.order_lines, out.rejections)
    _validate(raw.shipments, "shipments", "shipment_id", _shipment, out.shipments, out.rejections)
    return out
