"""Validate raw order-side records into typed rows; every failure becomes a named rejection.

Checks run in two passes, all before anything is written:
1. each record on its own: required fields, types, time zones, currency, widths of the history
   columns (from `schema`), timestamps not in the future, duplicate ids (the first one is kept);
2. the records together: a record whose parent (customer, order, order line) was rejected, or is
   neither in this read nor in the history, is rejected too, so a later step never meets an orphan.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection, String, Table, select

from lastmile.core.calendar import zone_country
from lastmile.core.countries import alpha2
from lastmile.core.rejections import Rejection
from lastmile.core.timestamps import parse_timestamp
from lastmile.shop.records import KEYS, Origin, RawOrders
from lastmile.store import schema

# Plausible times: nothing stamped more than a day after max(as_of, now); a shipment created at
# most a day before its order (clocks, time zones) and at most a year after it.
FUTURE_SLACK = timedelta(days=1)
SHIPPED_BEFORE_PLACED = timedelta(days=1)
SHIPPED_AFTER_PLACED = timedelta(days=365)

# entity name, candidate ids -> the ids the history already holds
Known = Callable[[str, Collection[str]], set[str]]


def nothing_known(entity: str, ids: Collection[str]) -> set[str]:
    """The `known` of a first load: the history holds nothing yet."""
    return set()


def history_lookup(conn: Connection, chunk: int = 5000) -> Known:
    """`known` for validate(): one query per entity (in chunks) on the history tables."""
    def known(entity: str, ids: Collection[str]) -> set[str]:
        column = _table(entity).c[KEYS[entity]]
        wanted, found = list(ids), set()
        for start in range(0, len(wanted), chunk):
            found.update(conn.execute(select(column).where(column.in_(wanted[start:start + chunk]))).scalars())
        return found
    return known


def tracking_code_lookup(conn: Connection, chunk: int = 5000) -> Callable[[Collection[str]], dict[str, str]]:
    """`codes_in_history` for validate(): which shipment already holds each tracking code."""
    def holders(codes: Collection[str]) -> dict[str, str]:
        c, wanted, found = schema.shipments.c, list(codes), {}
        for start in range(0, len(wanted), chunk):
            found.update(conn.execute(select(c.tracking_code, c.shipment_id).where(
                c.tracking_code.in_(wanted[start:start + chunk]))).all())
        return found
    return holders


def _table(entity: str) -> Table:
    return schema.metadata.tables[entity]


# The history columns' widths: a value wider than its column would abort the write on Postgres.
WIDTHS: dict[str, dict[str, int]] = {
    entity: {c.name: c.type.length for c in _table(entity).columns
             if isinstance(c.type, String) and c.type.length}
    for entity in KEYS
}


@dataclass
class ValidOrders:
    customers: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    order_lines: list[dict[str, Any]] = field(default_factory=list)
    shipments: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def by_entity(self) -> dict[str, list[dict[str, Any]]]:
        """The accepted rows of each entity."""
        return {entity: getattr(self, entity) for entity in KEYS}


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


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    import pycountry

    return frozenset(c.alpha_3 for c in pycountry.currencies)


def _currency(row: dict[str, Any]) -> str:
    code = _required(row, "currency").upper()
    if code not in _currencies():
        raise _Invalid("currency", f"currency {code!r} is not an ISO 4217 code (e.g. USD, EUR, GBP)")
    return code


def check_email(address: str) -> str:
    """The normalised address, or _Invalid naming why it cannot receive mail."""
    if not address.strip():
        raise _Invalid("email", "e-mail address is missing")
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as err:
        raise _Invalid("email", f"e-mail address is invalid: {err}") from None


def check_country(given: str, tz: str) -> tuple[str, str | None]:
    """(alpha-2 code, None), or the time zone's country and why the given one was not used."""
    fallback = zone_country(tz) or ""
    if not given.strip():
        return fallback, None
    code = alpha2(given)
    if code:
        return code, None
    used = f"used {fallback} from the time zone {tz}" if fallback else f"left empty (the time zone {tz} names none)"
    return fallback, f"country is not an ISO 3166 code or English country name; {used}"


def _customer(row: dict[str, Any]) -> dict[str, Any]:
    tz = _tz(row, "tz")
    # An unknown country keeps the customer with the time zone's; validate() notes it (_contact).
    return {"customer_id": _required(row, "customer_id"), "name": _required(row, "name"),
            "email": str(row.get("email") or ""),
            "tz": tz, "country": check_country(str(row.get("country") or ""), tz)[0],
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
            "currency": _currency(row), "status": status}


def _line(row: dict[str, Any]) -> dict[str, Any]:
    return {"order_line_id": _required(row, "order_line_id"), "order_id": _required(row, "order_id"),
            "sku": _required(row, "sku"), "description": _required(row, "description"),
            "quantity": _int(row, "quantity", minimum=1)}


def _dest_country(row: dict[str, Any]) -> str:
    """The country whose calendar counts the parcel's business days: the shop's `dest_country`, else
    the country its time zone lies in. Never a guess: without either the shipment is quarantined."""
    given = str(row.get("dest_country") or "").strip()
    tz = str(row.get("dest_tz") or "").strip()
    if given:
        code = alpha2(given)
        if not code:
            raise _Invalid("dest_country", f"dest_country {given!r} is not an ISO 3166 code or English country name")
        return code
    code = zone_country(tz)
    if not code:
        raise _Invalid("dest_country", f"no destination country: the time zone {tz!r} names none; give dest_country "
                                       f"(ISO 3166), whose weekend and public holidays count the business days")
    return code


def _shipment(row: dict[str, Any]) -> dict[str, Any]:
    return {"shipment_id": _required(row, "shipment_id"), "order_line_id": _required(row, "order_line_id"),
            "order_id": _required(row, "order_id"), "customer_id": _required(row, "customer_id"),
            "carrier": _required(row, "carrier"), "service": _required(row, "service"),
            "tracking_code": _required(row, "tracking_code"), "created_at": _instant(row, "created_at"),
            "promised_date": _date(row, "promised_date"), "origin": _required(row, "origin"),
            "destination": _required(row, "destination"), "dest_tz": _tz(row, "dest_tz"),
            "dest_country": _dest_country(row),
            # Optional: without them the chain is numbered by creation time (number_shipments).
            "sequence": _int(row, "sequence", minimum=1) if str(row.get("sequence") or "").strip() else None,
            "replaces_shipment_id": row.get("replaces_shipment_id") or None,
            "tracking_account": str(row.get("tracking_account") or "").strip() or None}


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "customers": _customer, "subscriptions": _subscription, "orders": _order, "order_lines": _line,
    "shipments": _shipment,
}


def _fits(entity: str, typed: dict[str, Any]) -> None:
    """_Invalid for a value the history column cannot hold: too wide, or with a NUL character."""
    widths = WIDTHS[entity]
    for name, value in typed.items():
        if not isinstance(value, str):
            continue
        width = widths.get(name)
        if width is not None and len(value) > width:
            raise _Invalid(name, f"{name} is {len(value)} characters long; the column holds at most {width}")
        if "\x00" in value:
            raise _Invalid(name, f"{name} contains a NUL character")


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


def _printable(value: Any) -> Any:
    """Text as it can be stored and logged: bytes that were not UTF-8 shown as \\xNN."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def _kept(row: Mapping[str, Any]) -> dict[str, Any]:
    """The raw record for the quarantine payload, without the customer's name and e-mail."""
    return {str(k): ("(redacted)" if k in PERSONAL and v else _printable(v)) for k, v in row.items()}


@dataclass
class _Entity:
    """One entity's records after the first pass: the kept ones by id, with their raw row and place."""

    name: str
    valid: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    place: dict[str, Origin] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)  # ids with no valid record in this read


class _Validation:
    def __init__(self, raw: RawOrders, horizon: datetime, horizon_basis: datetime) -> None:
        self.raw = raw
        self.horizon = horizon
        self.basis = horizon_basis
        self.rejections: list[Rejection] = []

    def reject(self, entity: str, record_id: str, field_name: str, reason: str, payload: Any,
               origin: Origin) -> None:
        self.rejections.append(Rejection.of(entity, _printable(record_id) or "(empty)", field_name, reason,
                                            payload, origin.file, origin.row))

    def _not_future(self, typed: dict[str, Any], name: str) -> None:
        if typed[name] > self.horizon:
            raise _Invalid(name, f"{name} {typed[name].isoformat()} is more than a day in the future "
                                 f"(of {self.basis.isoformat()})")

    def first_pass(self, entity: str) -> _Entity:
        """Each record on its own; the first valid copy of an id is kept, later ones are duplicates."""
        key, convert, out = KEYS[entity], CONVERTERS[entity], _Entity(entity)
        rows = getattr(self.raw, entity)
        for row, origin in zip(rows, self.raw.places(entity), strict=True):
            record_id = str(row.get(key) or "").strip()
            if origin.flaws:
                for field_name, reason in origin.flaws:
                    self.reject(entity, record_id, field_name, reason, _kept(row), origin)
                out.rejected.add(record_id)
                continue
            try:
                typed = convert(row)
                _fits(entity, typed)
                if entity == "orders":
                    self._not_future(typed, "placed_at")
                elif entity == "shipments":
                    self._not_future(typed, "created_at")
            except _Invalid as err:
                self.reject(entity, record_id, err.field, str(err), _kept(row), origin)
                out.rejected.add(record_id)
                continue
            record_id = typed[key]
            if record_id in out.valid:
                first = out.place[record_id]
                where = f" ({first.file} row {first.row})" if first.file and first.row else ""
                self.reject(entity, record_id, key, f"duplicate {key}; first one kept{where}", _kept(row), origin)
                continue
            if entity == "customers":
                self._contact(typed, row, origin)
            out.valid[record_id], out.raw[record_id], out.place[record_id] = typed, row, origin
        out.rejected -= out.valid.keys()
        return out

    def _contact(self, customer: dict[str, Any], row: dict[str, Any], origin: Origin) -> None:
        """E-mail and country: a bad one keeps the customer (the parcel is still tracked), noted."""
        cid = customer["customer_id"]
        try:
            customer["email"] = check_email(customer["email"])
        except _Invalid as err:
            customer["email"] = None
            # Ops still see the case; only the e-mail is impossible. The payload holds the id only.
            self.reject("customers", cid, err.field, str(err), {"customer_id": cid}, origin)
        given = str(row.get("country") or "")
        problem = check_country(given, customer["tz"])[1]
        if problem:
            self.reject("customers", cid, "country", problem, {"customer_id": cid, "country": given}, origin)

    def drop(self, entity: _Entity, record_id: str, field_name: str, reason: str) -> None:
        """Reject a record kept by the first pass (second pass: its relations are wrong)."""
        self.reject(entity.name, record_id, field_name, reason, _kept(entity.raw[record_id]),
                    entity.place[record_id])
        del entity.valid[record_id]
        entity.rejected.add(record_id)


def _now() -> datetime:
    return datetime.now(UTC)


def validate(raw: RawOrders, *, as_of: datetime | None = None, known: Known = nothing_known,
             clock: Callable[[], datetime] = _now,
             codes_in_history: Callable[[Collection[str]], dict[str, str]] = lambda codes: {}) -> ValidOrders:
    """Typed, de-duplicated rows whose parents exist; rejected records carry id, place, field and reason.

    `as_of` is the run's instant and `clock` the wall clock: a timestamp more than a day after the
    later of the two is rejected (a backfill still takes rows stamped after its `as_of`).
    `known(entity, ids)` returns which of `ids` the history already holds (see history_lookup):
    it is asked once per parent entity, for the ids referenced but not in this read.
    `codes_in_history(codes)` maps the tracking codes the history already holds to their shipment.
    """
    now = clock()
    basis = max(as_of, now) if as_of is not None else now
    run = _Validation(raw, basis + FUTURE_SLACK, basis)
    customers, subscriptions, orders, lines, shipments = (run.first_pass(e) for e in KEYS)

    def held(parent: _Entity, refs: Collection[str]) -> set[str]:
        """The referenced ids of `parent` that are neither in this read nor rejected in it: asked of the history."""
        asked = {r for r in refs if r not in parent.valid and r not in parent.rejected}
        return known(parent.name, asked) if asked else set()

    history = {
        "customers": held(customers, {r["customer_id"] for e in (subscriptions, orders, shipments)
                                      for r in e.valid.values()}),
        "orders": held(orders, {r["order_id"] for e in (lines, shipments) for r in e.valid.values()}),
        "order_lines": held(lines, {r["order_line_id"] for r in shipments.valid.values()}),
    }

    def problem(parent: _Entity, parent_id: str) -> str | None:
        singular = parent.name.rstrip("s").replace("_", " ")
        if parent_id in parent.valid:
            return None
        if parent_id in parent.rejected:
            return f"{singular} {parent_id} is quarantined"
        if parent_id in history[parent.name]:
            return None
        return f"{singular} {parent_id} is unknown (neither in this read nor in the history)"

    for child, parent, fk in ((subscriptions, customers, "customer_id"), (orders, customers, "customer_id"),
                              (lines, orders, "order_id")):
        for record_id, row in list(child.valid.items()):
            if reason := problem(parent, row[fk]):
                run.drop(child, record_id, fk, reason)

    for sid, s in list(shipments.valid.items()):
        found = _shipment_problem(s, customers, orders, lines, problem)
        if found:
            run.drop(shipments, sid, *found)

    # A tracking code names one parcel: a second shipment claiming it would break the history's
    # unique key (and mix two parcels' scans), whether the first is in this read or in the history.
    owner: dict[str, str] = {}
    for sid, s in list(shipments.valid.items()):
        first = owner.setdefault(s["tracking_code"], sid)
        if first != sid:
            run.drop(shipments, sid, "tracking_code", f"tracking code already belongs to shipment {first}")
    held_codes = codes_in_history(list(owner)) if owner else {}
    for code, holder in held_codes.items():
        sid = owner.get(code)
        if sid is not None and holder != sid and sid in shipments.valid:
            run.drop(shipments, sid, "tracking_code", f"tracking code already belongs to shipment {holder}")

    return ValidOrders(customers=list(customers.valid.values()), subscriptions=list(subscriptions.valid.values()),
                       orders=list(orders.valid.values()), order_lines=list(lines.valid.values()),
                       shipments=list(shipments.valid.values()), rejections=run.rejections)


def _shipment_problem(s: dict[str, Any], customers: _Entity, orders: _Entity, lines: _Entity,
                      problem: Callable[[_Entity, str], str | None]) -> tuple[str, str] | None:
    """(field, reason) when a shipment's line, order or customer is missing or does not agree."""
    for parent, fk in ((lines, "order_line_id"), (orders, "order_id"), (customers, "customer_id")):
        if reason := problem(parent, s[fk]):
            return fk, reason
    line = lines.valid.get(s["order_line_id"])
    if line is not None and line["order_id"] != s["order_id"]:
        return "order_id", f"order_id {s['order_id']} is not the order of line {s['order_line_id']} ({line['order_id']})"
    order = orders.valid.get(s["order_id"])
    if order is None:  # in the history only: its placed_at and customer are not at hand
        return None
    if order["customer_id"] != s["customer_id"]:
        return "customer_id", (f"customer_id {s['customer_id']} is not the customer of order {s['order_id']} "
                               f"({order['customer_id']})")
    created, placed = s["created_at"], order["placed_at"]
    if created < placed - SHIPPED_BEFORE_PLACED:
        return "created_at", (f"created_at {created.isoformat()} is before its order's placed_at "
                              f"{placed.isoformat()}")
    if created > placed + SHIPPED_AFTER_PLACED:
        return "created_at", (f"created_at {created.isoformat()} is more than {SHIPPED_AFTER_PLACED.days} days "
                              f"after its order's placed_at {placed.isoformat()}")
    return None
