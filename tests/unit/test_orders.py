"""Order-side validation: typed rows out, every bad record quarantined with its id, field and reason."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from lastmile.core.rejections import Rejection
from lastmile.shop import orders, records
from lastmile.shop.records import Origin, RawOrders
from lastmile.sim import simulator
from lastmile.store import schema

from builders import raw_customer, raw_line, raw_order, raw_shipment

EMAIL_RE = re.compile(r"[^\s@'\"]+@[^\s@'\"]+")


# --------------------------------------------------------------------------- hand-made rows (strings, like CSV)


customer, order, line, shipment = raw_customer, raw_order, raw_line, raw_shipment


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
    from lastmile.shop.orders import _order

    assert _order({"order_id": "O1", "customer_id": "C1", "placed_at": "2026-11-01T10:00:00+00:00",
                   "currency": "usd", "status": "Refunded"})["status"] == "refunded"
    with pytest.raises(ValueError, match="order status 'lost'"):
        _order({"order_id": "O1", "customer_id": "C1", "placed_at": "2026-11-01T10:00:00+00:00",
                "currency": "usd", "status": "lost"})


# --------------------------------------------------------------------------- where a rejection came from


NOW = datetime(2026, 11, 20, 14, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def placed(data: RawOrders, file_of: dict[str, str] | None = None) -> RawOrders:
    """`data` with each row placed in `<entity>.csv`, numbered from 1 (as FileShop does)."""
    data.origins = {e: [Origin((file_of or {}).get(e, f"{e}.csv"), n) for n in range(1, len(getattr(data, e)) + 1)]
                    for e in ("customers", "subscriptions", "orders", "order_lines", "shipments")}
    return data


def test_every_rejection_carries_its_file_and_row_and_the_place_reaches_no_row() -> None:
    data = placed(raw(customers=[customer(), customer(customer_id="C002", email="")],
                      orders_=[order(), order(order_id="NW-2", currency="")]))
    valid = orders.validate(data, as_of=NOW, clock=clock)

    assert {(r.source, r.record_id, r.field, r.file, r.row) for r in valid.rejections} == {
        ("customers", "C002", "email", "customers.csv", 2), ("orders", "NW-2", "currency", "orders.csv", 2)}
    for rejection in valid.rejections:
        assert "csv" not in rejection.payload  # the place is in its own fields, never in the payload
    for rows in (valid.customers, valid.orders, valid.order_lines, valid.shipments):
        for row in rows:
            assert not any(isinstance(v, Origin) for v in row.values())
            assert not any("csv" in str(v) for v in row.values())


def test_simulated_shop_rejections_name_the_file_and_row(sim_dir) -> None:
    from lastmile.sim.shop import SimulatedShop

    raw_orders = SimulatedShop(sim_dir, seed=7).load(NOW)
    valid = orders.validate(raw_orders, as_of=NOW, clock=clock)

    assert valid.rejections
    for rejection in valid.rejections:
        assert rejection.file == f"{rejection.source}.csv" and rejection.row > 0, rejection.message()
    dup = next(r for r in valid.rejections if r.field == "order_id")
    row = simulator.read_table(sim_dir, "orders")[dup.row - 1]
    assert row["order_id"] == dup.record_id and row["currency"] == "GBP"  # the injected copy, by its row


# --------------------------------------------------------------------------- widths and codes the history can hold


@pytest.mark.parametrize(("source", "rows", "field_name"), [
    ("orders", {"orders_": [order(order_id="N" * 65)]}, "order_id"),
    ("customers", {"customers": [customer(customer_id="C" * 65)]}, "customer_id"),
    ("shipments", {"shipments": [shipment(tracking_code="T" * 65)]}, "tracking_code"),
    ("shipments", {"shipments": [shipment(carrier="C" * 33)]}, "carrier"),
    ("order_lines", {"lines": [line(sku="S" * 65)]}, "sku"),
    ("customers", {"customers": [customer(locale="x" * 17)]}, "locale"),
])
def test_a_value_wider_than_its_history_column_is_quarantined_before_any_write(source, rows, field_name) -> None:
    width = schema.metadata.tables[source].c[field_name].type.length  # the one home of the widths
    valid = orders.validate(placed(raw(**rows)), as_of=NOW, clock=clock)

    rejection = next(r for r in valid.rejections if r.source == source)
    assert rejection.field == field_name
    assert f"at most {width}" in rejection.reason
    assert (rejection.file, rejection.row) == (f"{source}.csv", 1)
    assert all(len(str(r[field_name])) <= width for r in getattr(valid, source if source != "lines" else
                                                                 "order_lines"))


def test_widths_come_from_the_schema() -> None:
    assert orders.WIDTHS["orders"]["currency"] == schema.orders.c.currency.type.length == 3
    assert orders.WIDTHS["shipments"]["carrier"] == schema.shipments.c.carrier.type.length
    assert "name" not in orders.WIDTHS["customers"]  # Text: no width


@pytest.mark.parametrize("currency", ["EURO", "EU", "XYZ", "€", "us dollar"])
def test_currency_must_be_an_iso_4217_code(currency: str) -> None:
    valid = orders.validate(raw(orders_=[order(currency=currency), order(order_id="NW-2", currency="eur")],
                                lines=[line(order_id="NW-2")], shipments=[shipment(order_id="NW-2")]),
                            as_of=NOW, clock=clock)

    assert [(o["order_id"], o["currency"]) for o in valid.orders] == [("NW-2", "EUR")]
    rejection = only(valid.rejections, "orders")
    assert (rejection.record_id, rejection.field) == ("NW-10482", "currency")
    assert "ISO 4217" in rejection.reason


def test_a_nul_character_is_quarantined_not_sent_to_the_database() -> None:
    valid = orders.validate(raw(lines=[line(description="Kenya\x00AA")], shipments=[]), as_of=NOW, clock=clock)
    assert valid.order_lines == []
    assert only(valid.rejections, "order_lines").field == "description"


# --------------------------------------------------------------------------- countries


@pytest.mark.parametrize(("given", "code"), [("Germany", "DE"), ("AUT", "AT"), ("at", "AT"), ("DEU", "DE"),
                                             ("GE", "GE"), ("United Kingdom", "GB"), ("  gb ", "GB"),
                                             ("", "GB")])
def test_country_is_looked_up_not_cut_to_two_letters(given: str, code: str) -> None:
    valid = orders.validate(raw(customers=[customer(country=given)]), as_of=NOW, clock=clock)
    assert valid.rejections == []
    assert valid.customers[0]["country"] == code


def test_an_unknown_country_keeps_the_customer_with_the_time_zones_country_and_says_so() -> None:
    valid = orders.validate(placed(raw(customers=[customer(country="Narnia", tz="Europe/Berlin")])),
                            as_of=NOW, clock=clock)

    (kept,) = valid.customers
    assert kept["country"] == "DE"
    assert [o["order_id"] for o in valid.orders] == ["NW-10482"]  # the parcel is still tracked
    rejection = only(valid.rejections, "customers")
    assert (rejection.record_id, rejection.field, rejection.file, rejection.row) == (
        "C001", "country", "customers.csv", 1)
    assert "used DE" in rejection.reason and "Europe/Berlin" in rejection.reason
    assert json.loads(rejection.payload) == {"customer_id": "C001", "country": "Narnia"}


def test_countries_alpha2_reads_codes_and_english_names() -> None:
    from lastmile.core.countries import alpha2

    assert [alpha2(c) for c in ("DEU", "de", "Germany", "USA", "United States", "GE", "AUT")] == [
        "DE", "DE", "DE", "US", "US", "GE", "AT"]
    assert [alpha2(c) for c in ("", None, "XX", "Narnia", "GER")] == [None] * 5


# --------------------------------------------------------------------------- implausible times


def test_a_shipment_created_in_2099_is_quarantined_not_left_waiting() -> None:
    valid = orders.validate(raw(shipments=[shipment(created_at="2099-01-01T00:00:00Z"), shipment(shipment_id="SH-2")]),
                            as_of=NOW, clock=clock)

    assert [s["shipment_id"] for s in valid.shipments] == ["SH-2"]
    rejection = only(valid.rejections, "shipments")
    assert (rejection.record_id, rejection.field) == ("SH-1", "created_at")
    assert "future" in rejection.reason


def test_an_order_placed_in_the_future_is_quarantined_with_its_lines_and_shipments() -> None:
    valid = orders.validate(raw(orders_=[order(placed_at="2027-03-01T10:00:00+01:00")]), as_of=NOW, clock=clock)

    assert (valid.orders, valid.order_lines, valid.shipments) == ([], [], [])
    assert {(r.source, r.field) for r in valid.rejections} == {
        ("orders", "placed_at"), ("order_lines", "order_id"), ("shipments", "order_line_id")}


@pytest.mark.parametrize(("created", "word"), [("2026-11-14T09:00:00Z", "before"),
                                               ("2027-12-20T09:00:00Z", "days after")])
def test_a_shipment_far_from_its_orders_time_is_quarantined(created: str, word: str) -> None:
    # 2027-12-20 is 'in the future' of nothing here: the wall clock is a year later.
    later = datetime(2028, 1, 1, tzinfo=UTC)
    valid = orders.validate(raw(shipments=[shipment(created_at=created)]), as_of=later, clock=lambda: later)

    assert valid.shipments == []
    rejection = only(valid.rejections, "shipments")
    assert rejection.field == "created_at" and word in rejection.reason


def test_a_shipment_created_a_few_hours_before_its_order_is_fine() -> None:
    valid = orders.validate(raw(shipments=[shipment(created_at="2026-11-16T02:00:00Z")]), as_of=NOW, clock=clock)
    assert valid.rejections == []


def test_a_backfill_keeps_shipments_created_after_its_as_of() -> None:
    # Rerunning 2026-11-17 on the 20th: the shipment made on the 18th is simply not due yet, not bad.
    as_of = datetime(2026, 11, 17, 6, tzinfo=UTC)
    valid = orders.validate(raw(shipments=[shipment(created_at="2026-11-18T09:00:00Z")]), as_of=as_of, clock=clock)
    assert valid.rejections == []
    assert [s["shipment_id"] for s in valid.shipments] == ["SH-1"]


def test_the_future_is_measured_from_the_later_of_as_of_and_the_clock() -> None:
    data = raw(shipments=[shipment(created_at="2026-11-21T10:00:00Z")])
    assert orders.validate(data, as_of=NOW, clock=clock).rejections == []  # within a day
    assert only(orders.validate(data, as_of=NOW - timedelta(days=5), clock=lambda: NOW - timedelta(days=3))
                .rejections, "shipments").field == "created_at"


# --------------------------------------------------------------------------- duplicates and empty ids


def test_three_copies_of_an_order_id_leave_two_quarantine_rows_each_with_its_row(tmp_path) -> None:
    data = placed(raw(orders_=[order(), order(currency="eur"), order(currency="usd")]))
    valid = orders.validate(data, as_of=NOW, clock=clock)

    assert [o["currency"] for o in valid.orders] == ["GBP"]  # the first copy is kept
    dups = [r for r in valid.rejections if r.source == "orders"]
    assert [(r.record_id, r.field, r.row) for r in dups] == [("NW-10482", "order_id", 2), ("NW-10482", "order_id", 3)]
    assert "orders.csv row 1" in dups[0].reason
    assert stored(tmp_path, valid.rejections) == 2


def test_rows_with_an_empty_id_each_get_their_own_quarantine_row(tmp_path) -> None:
    data = placed(raw(orders_=[order(order_id=""), order(order_id=" "), order(order_id=""), order()]))
    valid = orders.validate(data, as_of=NOW, clock=clock)

    assert [o["order_id"] for o in valid.orders] == ["NW-10482"]
    empty = [r for r in valid.rejections if r.source == "orders"]
    assert [(r.record_id, r.field, r.row) for r in empty] == [("(empty)", "order_id", n) for n in (1, 2, 3)]
    assert stored(tmp_path, valid.rejections) == 3


def stored(tmp_path, rejections: list[Rejection]) -> int:
    """How many quarantine rows the rejections make in a real history database."""
    from sqlalchemy import create_engine, func, select

    from lastmile.store.quarantine import store_rejections

    engine = create_engine(f"sqlite:///{tmp_path / 'history.db'}")
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        store_rejections(conn, rejections, NOW)
        count = conn.execute(select(func.count()).select_from(schema.quarantine)).scalar_one()
    engine.dispose()
    return count


# --------------------------------------------------------------------------- parents and children


@pytest.mark.parametrize(("rows", "cause"), [
    ({"customers": [customer(tz="Mars/Olympus")]}, ("customers", "tz")),
    ({"customers": [customer(name="")]}, ("customers", "name")),
    ({"customers": []}, None),
])
def test_a_customer_quarantined_or_unknown_takes_its_orders_subscriptions_lines_and_shipments(rows, cause) -> None:
    sub = {"subscription_id": "S1", "customer_id": "C001", "cadence": "weekly", "sku": "ETH-340-WB",
           "next_delivery_date": "2026-11-27", "status": "active"}
    valid = orders.validate(raw(subscriptions=[sub], **rows), as_of=NOW, clock=clock)

    assert (valid.subscriptions, valid.orders, valid.order_lines, valid.shipments) == ([], [], [], [])
    by_source = {r.source: r for r in valid.rejections}
    state = "quarantined" if cause else "unknown"
    assert (by_source["orders"].field, by_source["subscriptions"].field) == ("customer_id", "customer_id")
    assert f"customer C001 is {state}" in by_source["orders"].reason
    assert f"customer C001 is {state}" in by_source["subscriptions"].reason
    assert by_source["order_lines"].reason.startswith("order NW-10482 is quarantined")
    assert by_source["shipments"].reason.startswith("order line NW-10482-1 is quarantined")
    if cause:
        assert (by_source["customers"].source, by_source["customers"].field) == cause


@pytest.mark.parametrize("bad_order", [order(placed_at="2026-11-16T14:03:00"), order(currency=""),
                                       order(status="lost")])
def test_an_order_quarantined_takes_its_lines_and_shipments(bad_order) -> None:
    other = [order(order_id="NW-2")], [line(order_line_id="NW-2-1", order_id="NW-2")]
    valid = orders.validate(raw(orders_=[bad_order, *other[0]], lines=[line(), *other[1]],
                                shipments=[shipment(), shipment(shipment_id="SH-2", order_line_id="NW-2-1",
                                                                order_id="NW-2", tracking_code="EZ2")]),
                            as_of=NOW, clock=clock)

    assert [o["order_id"] for o in valid.orders] == ["NW-2"]
    assert [ln["order_line_id"] for ln in valid.order_lines] == ["NW-2-1"]  # the others go on
    assert [s["shipment_id"] for s in valid.shipments] == ["SH-2"]
    assert {(r.source, r.record_id) for r in valid.rejections} == {
        ("orders", "NW-10482"), ("order_lines", "NW-10482-1"), ("shipments", "SH-1")}


def test_a_line_quarantined_takes_its_shipments() -> None:
    valid = orders.validate(raw(lines=[line(quantity="0")]), as_of=NOW, clock=clock)

    assert valid.shipments == []
    rejection = only(valid.rejections, "shipments")
    assert (rejection.field, rejection.reason) == ("order_line_id", "order line NW-10482-1 is quarantined")
    assert [o["order_id"] for o in valid.orders] == ["NW-10482"]  # parents are not touched


def test_children_of_parents_absent_from_the_read_are_unknown_unless_the_history_holds_them() -> None:
    data = raw(customers=[], orders_=[], lines=[line(), line(order_line_id="NW-9-1", order_id="NW-9")],
               shipments=[shipment(), shipment(shipment_id="SH-3", order_line_id="L-GONE", order_id="NW-10482",
                                               tracking_code="EZ3")])
    nothing = orders.validate(data, as_of=NOW, clock=clock)
    assert nothing.order_lines == [] and nothing.shipments == []
    assert {r.reason for r in nothing.rejections if r.source == "order_lines"} == {
        "order NW-10482 is unknown (neither in this read nor in the history)",
        "order NW-9 is unknown (neither in this read nor in the history)"}

    asked: list[tuple[str, set[str]]] = []

    def known(entity: str, ids) -> set[str]:
        asked.append((entity, set(ids)))
        return {"customers": {"C001"}, "orders": {"NW-10482"}, "order_lines": set()}[entity] & set(ids)

    valid = orders.validate(data, as_of=NOW, clock=clock, known=known)
    # one call per parent entity, with every id referenced and not in this read
    assert sorted(asked) == [("customers", {"C001"}), ("order_lines", {"L-GONE"}),
                             ("orders", {"NW-10482", "NW-9"})]
    assert [ln["order_line_id"] for ln in valid.order_lines] == ["NW-10482-1"]  # its order was loaded last week
    assert [s["shipment_id"] for s in valid.shipments] == ["SH-1"]
    assert {(r.source, r.record_id, r.field) for r in valid.rejections} == {
        ("order_lines", "NW-9-1", "order_id"), ("shipments", "SH-3", "order_line_id")}


def test_a_parent_quarantined_in_this_read_is_not_rescued_by_the_history() -> None:
    valid = orders.validate(raw(orders_=[order(currency="EURO")]), as_of=NOW, clock=clock,
                            known=lambda entity, ids: set(ids))
    assert valid.order_lines == [] and valid.shipments == []


def test_a_shipment_must_agree_with_its_line_and_order() -> None:
    data = raw(customers=[customer(), customer(customer_id="C002", email="ada@example.org")],
               orders_=[order(), order(order_id="NW-2", customer_id="C002")],
               lines=[line(), line(order_line_id="NW-2-1", order_id="NW-2")],
               shipments=[shipment(order_id="NW-2"),  # line NW-10482-1 belongs to order NW-10482
                          shipment(shipment_id="SH-2", customer_id="C002", tracking_code="EZ2"),  # not C001's
                          shipment(shipment_id="SH-3", order_line_id="NW-2-1", order_id="NW-2", customer_id="C002",
                                   tracking_code="EZ3")])
    valid = orders.validate(data, as_of=NOW, clock=clock)

    assert [s["shipment_id"] for s in valid.shipments] == ["SH-3"]
    reasons = {r.record_id: (r.field, r.reason) for r in valid.rejections}
    assert reasons["SH-1"][0] == "order_id" and "NW-10482" in reasons["SH-1"][1]
    assert reasons["SH-2"][0] == "customer_id" and "C001" in reasons["SH-2"][1]


def test_history_lookup_answers_from_the_history_tables(tmp_path) -> None:
    from sqlalchemy import create_engine, insert

    engine = create_engine(f"sqlite:///{tmp_path / 'history.db'}")
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(schema.orders), [{"order_id": f"O{n}", "customer_id": "C1", "placed_at": NOW,
                                              "currency": "EUR"} for n in range(3)])
    with engine.connect() as conn:
        known = orders.history_lookup(conn, chunk=2)
        assert known("orders", ["O0", "O2", "O9", "O1"]) == {"O0", "O1", "O2"}
        assert known("customers", ["C1"]) == set()
    engine.dispose()


def test_required_columns_are_what_the_converters_cannot_do_without() -> None:
    full = {"customers": customer(), "orders": order(status="open"), "order_lines": line(),
            "shipments": shipment(tracking_account="acct"),
            "subscriptions": {"subscription_id": "S1", "customer_id": "C001", "cadence": "weekly", "sku": "X",
                              "next_delivery_date": "2026-11-27", "status": "active"}}
    for entity, row in full.items():
        convert = orders.CONVERTERS[entity]
        convert(row)
        for column in row:
            less = {k: v for k, v in row.items() if k != column}
            try:
                convert(less)
                needed = False
            except ValueError as err:
                needed = getattr(err, "field", None) == column
            assert needed == (column in records.REQUIRED_COLUMNS[entity]) or column == "email", (entity, column)
    assert "email" in records.REQUIRED_COLUMNS["customers"]  # the column, although a row's value may be empty
