"""Order-side validation: typed rows out, every bad record quarantined with its id, field and reason."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest

from lastmile import orders
from lastmile.quarantine import Rejection
from lastmile.sources import RawOrders

EMAIL_RE = re.compile(r"[^\s@'\"]+@[^\s@'\"]+")


# --------------------------------------------------------------------------- hand-made rows (strings, like CSV)


def customer(**over: str) -> dict[str, Any]:
    return {"customer_id": "C001", "name": "Zoë O'Brien", "email": "zoe.obrien@example.com",
            "tz": "Europe/London", "country": "", "locale": "en_GB", **over}


def order(**over: str) -> dict[str, Any]:
    return {"order_id": "NW-10482", "customer_id": "C001", "placed_at": "2026-11-16T14:03:00+00:00",
            "subscription_id": "", "currency": "gbp", **over}


def line(**over: str) -> dict[str, Any]:
    return {"order_line_id": "NW-10482-1", "order_id": "NW-10482", "sku": "ETH-340-WB",
            "description": "Ethiopia Yirgacheffe, 340 g whole bean", "quantity": "2", **over}


def shipment(**over: str) -> dict[str, Any]:
    return {"shipment_id": "SH-1", "order_line_id": "NW-10482-1", "order_id": "NW-10482", "customer_id": "C001",
            "carrier": "RoyalMail", "service": "Tracked48", "tracking_code": "EZ1000000001",
            "created_at": "2026-11-17T09:00:00Z", "promised_date": "2026-11-20", "origin": "Bristol",
            "destination": "Leeds", "dest_tz": "Europe/London", "sequence": "1", "replaces_shipment_id": "",
            **over}


def raw(customers: list[dict[str, Any]] | None = None, orders_: list[dict[str, Any]] | None = None,
        lines: list[dict[str, Any]] | None = None, shipments: list[dict[str, Any]] | None = None,
        subscriptions: list[dict[str, Any]] | None = None) -> RawOrders:
    return RawOrders(
        customers=[customer()] if customers is None else customers,
        subscriptions=subscriptions or [],
        orders=[order()] if orders_ is None else orders_,
        order_lines=[line()] if lines is None else lines,
        shipments=[shipment()] if shipments is None else shipments,
    )


def only(rejections: list[Rejection], source: str) -> Rejection:
    found = [r for r in rejections if r.source == source]
    assert len(found) == 1, [r.message() for r in rejections]
    return found[0]


# --------------------------------------------------------------------------- the good path


def test_clean_rows_come_out_typed_with_no_rejections() -> None:
    valid = orders.validate(raw())

    assert valid.rejections == []
    (cust,) = valid.customers
    assert cust["email"] == "zoe.obrien@example.com"
    assert cust["country"] == "GB"  # from the time zone when the row has none
    assert cust["locale"] == "en_GB"
    (o,) = valid.orders
    assert o["placed_at"] == datetime(2026, 11, 16, 14, 3, tzinfo=UTC)
    assert o["currency"] == "GBP"
    assert o["subscription_id"] is None
    (ln,) = valid.order_lines
    assert ln["quantity"] == 2
    (sh,) = valid.shipments
    assert sh["promised_date"] == date(2026, 11, 20)
    assert sh["created_at"] == datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
    assert sh["sequence"] == 1
    assert sh["replaces_shipment_id"] is None


# --------------------------------------------------------------------------- e-mail addresses


@pytest.mark.parametrize(("address", "word"), [
    ("", "missing"),
    ("   ", "missing"),
    ("zoe.obrien@@example.com", "invalid"),
    ("zoe.obrien", "invalid"),
    ("Zoe <zoe.obrien@example.com>", "invalid"),
])
def test_bad_email_keeps_the_customer_without_an_address_and_quarantines_only_the_id(address: str,
                                                                                    word: str) -> None:
    good = customer(customer_id="C002", name="Ada Lovelace", email="ada@example.org")
    valid = orders.validate(raw(customers=[customer(email=address), good]))

    # The parcel is still tracked: the customer stays, just without an address to write to.
    by_id = {c["customer_id"]: c for c in valid.customers}
    assert by_id["C001"]["email"] is None
    assert by_id["C001"]["name"] == "Zoë O'Brien"
    assert by_id["C002"]["email"] == "ada@example.org"
    # The orders of that customer are not thrown away either.
    assert [o["order_id"] for o in valid.orders] == ["NW-10482"]

    rejection = only(valid.rejections, "customers")
    assert (rejection.record_id, rejection.field) == ("C001", "email")
    assert word in rejection.reason
    # Addresses must not spread: the quarantined payload holds the customer id and nothing else.
    assert json.loads(rejection.payload) == {"customer_id": "C001"}
    for text in (rejection.payload, rejection.reason, rejection.message()):
        if address.strip():
            assert address.strip() not in text
        assert "zoe.obrien" not in text
        assert "Zoë" not in text


def test_email_is_normalised() -> None:
    valid = orders.validate(raw(customers=[customer(email="  Zoe.OBrien@Example.COM ")]))
    assert valid.rejections == []
    assert valid.customers[0]["email"] == "Zoe.OBrien@example.com"


# --------------------------------------------------------------------------- duplicates


def test_duplicated_order_id_keeps_the_first_and_rejects_the_second() -> None:
    first = order(placed_at="2026-11-16T14:03:00Z", currency="gbp")
    second = order(placed_at="2026-11-18T08:00:00Z", currency="eur")
    valid = orders.validate(raw(orders_=[first, second]))

    (kept,) = valid.orders
    assert kept["placed_at"] == datetime(2026, 11, 16, 14, 3, tzinfo=UTC)
    assert kept["currency"] == "GBP"
    rejection = only(valid.rejections, "orders")
    assert (rejection.record_id, rejection.field) == ("NW-10482", "order_id")
    assert "duplicate" in rejection.reason
    assert json.loads(rejection.payload)["currency"] == "eur"  # the second one is the one quarantined


def test_duplicated_customer_keeps_the_first_rows_email_too() -> None:
    first = customer(email="zoe.obrien@example.com")
    second = customer(name="Mallory", email="mallory@evil.example")
    valid = orders.validate(raw(customers=[first, second]))

    (kept,) = valid.customers
    assert kept["name"] == "Zoë O'Brien"
    rejection = only(valid.rejections, "customers")
    assert (rejection.field, "duplicate" in rejection.reason) == ("customer_id", True)
    # Zoë's case e-mails must go to Zoë, not to the address on the rejected duplicate.
    assert kept["email"] == "zoe.obrien@example.com"


def test_customer_id_with_surrounding_spaces_is_accepted_like_any_other_field() -> None:
    valid = orders.validate(raw(customers=[customer(customer_id="C001 ")]))

    assert valid.rejections == []
    assert [(c["customer_id"], c["email"]) for c in valid.customers] == [("C001", "zoe.obrien@example.com")]


# --------------------------------------------------------------------------- field checks


def test_naive_placed_at_is_rejected_naming_the_field() -> None:
    good = order(order_id="NW-10483")
    valid = orders.validate(raw(orders_=[order(placed_at="2026-11-16T14:03:00"), good]))

    assert [o["order_id"] for o in valid.orders] == ["NW-10483"]
    rejection = only(valid.rejections, "orders")
    assert (rejection.record_id, rejection.field) == ("NW-10482", "placed_at")
    assert "offset" in rejection.reason


def test_unknown_customer_time_zone_is_rejected_naming_tz() -> None:
    valid = orders.validate(raw(customers=[customer(tz="Mars/Olympus_Mons"),
                                           customer(customer_id="C002", email="ada@example.org")]))

    assert [c["customer_id"] for c in valid.customers] == ["C002"]
    rejection = only(valid.rejections, "customers")
    assert (rejection.record_id, rejection.field) == ("C001", "tz")
    assert "time zone" in rejection.reason
    assert "Mars/Olympus_Mons" in rejection.reason


def test_unknown_destination_time_zone_is_rejected_naming_dest_tz() -> None:
    valid = orders.validate(raw(shipments=[shipment(dest_tz="Europe/Londn"), shipment(shipment_id="SH-2")]))

    assert [s["shipment_id"] for s in valid.shipments] == ["SH-2"]
    rejection = only(valid.rejections, "shipments")
    assert (rejection.record_id, rejection.field) == ("SH-1", "dest_tz")
    assert "time zone" in rejection.reason


@pytest.mark.parametrize("tz", ["America", "Etc"])
def test_time_zone_naming_a_region_folder_is_rejected_not_a_crash(tz: str) -> None:
    valid = orders.validate(raw(customers=[customer(tz=tz), customer(customer_id="C002", email="ada@example.org")]))

    assert [c["customer_id"] for c in valid.customers] == ["C002"]
    rejection = only(valid.rejections, "customers")
    assert (rejection.record_id, rejection.field) == ("C001", "tz")


@pytest.mark.parametrize("quantity", ["0", "-1"])
def test_quantity_below_one_is_rejected_naming_quantity(quantity: str) -> None:
    valid = orders.validate(raw(lines=[line(quantity=quantity), line(order_line_id="NW-10482-2")]))

    assert [ln["order_line_id"] for ln in valid.order_lines] == ["NW-10482-2"]
    rejection = only(valid.rejections, "order_lines")
    assert (rejection.record_id, rejection.field) == ("NW-10482-1", "quantity")
    assert quantity in rejection.reason


def test_quantity_not_a_number_is_rejected_naming_quantity() -> None:
    valid = orders.validate(raw(lines=[line(quantity="two")]))
    rejection = only(valid.rejections, "order_lines")
    assert rejection.field == "quantity"
    assert "whole number" in rejection.reason
    assert valid.order_lines == []


@pytest.mark.parametrize("promised", ["2026-13-01", "20/11/2026", ""])
def test_bad_promised_date_is_rejected_naming_promised_date(promised: str) -> None:
    valid = orders.validate(raw(shipments=[shipment(promised_date=promised)]))

    assert valid.shipments == []
    rejection = only(valid.rejections, "shipments")
    assert (rejection.record_id, rejection.field) == ("SH-1", "promised_date")


def test_missing_required_field_is_named() -> None:
    valid = orders.validate(raw(shipments=[shipment(tracking_code="")]))
    rejection = only(valid.rejections, "shipments")
    assert (rejection.field, rejection.reason) == ("tracking_code", "tracking_code is missing")


# --------------------------------------------------------------------------- log lines


def test_rejection_messages_name_the_record_and_field_but_no_customer_data() -> None:
    names = ["Zoë O'Brien", "Ada Lovelace", "Grace Hopper"]
    data = raw(
        customers=[customer(email="zoe.obrien@@example.com"),
                   customer(customer_id="C002", name=names[1], email="", tz="Nowhere/Special"),
                   customer(customer_id="C003", name=names[2], email="grace@example.org"),
                   customer(customer_id="C003", name=names[2], email="grace@example.org")],
        orders_=[order(placed_at="2026-11-16 14:03")],
        lines=[line(quantity="0")],
        shipments=[shipment(promised_date="soon", dest_tz="Atlantis/Capital")],
    )
    valid = orders.validate(data)

    found = {(r.source, r.record_id, r.field) for r in valid.rejections}
    assert found == {("customers", "C001", "email"), ("customers", "C002", "tz"),
                     ("customers", "C003", "customer_id"), ("orders", "NW-10482", "placed_at"),
                     ("order_lines", "NW-10482-1", "quantity"), ("shipments", "SH-1", "promised_date")}
    for rejection in valid.rejections:
        text = rejection.message()
        assert "\n" not in text
        assert rejection.source in text
        assert rejection.record_id in text
        assert repr(rejection.field) in text
        assert not EMAIL_RE.search(text), text
        for name in names:
            assert name not in text
            assert name.split()[-1] not in text


def test_an_order_status_outside_open_cancelled_refunded_is_quarantined():
    from lastmile.orders import _order

    assert _order({"order_id": "O1", "customer_id": "C1", "placed_at": "2026-11-01T10:00:00+00:00",
                   "currency": "usd", "status": "Refunded"})["status"] == "refunded"
    with pytest.raises(ValueError, match="order status 'lost'"):
        _order({"order_id": "O1", "customer_id": "C1", "placed_at": "2026-11-01T10:00:00+00:00",
                "currency": "usd", "status": "lost"})
