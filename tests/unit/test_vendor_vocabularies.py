"""Every code the vendors publish maps to one of our statuses, checked against their own lists.

The lists are copies of the vendors' API documentation, kept in tests/unit/vendor_lists/ with their
sources in each file's header. A code missing from our mapping shows up here, not in production as a
parcel that quietly looks fine.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from lastmile.core import status

LISTS = Path(__file__).parent / "vendor_lists"


def published(name: str) -> list[str]:
    """The codes of one vendor list: one a line, '#' starts a comment."""
    codes = [line.partition("#")[0].strip() for line in (LISTS / name).read_text().splitlines()]
    return [code for code in codes if code]


def published_messages(name: str) -> dict[str, str]:
    """code -> the vendor's message written after '#' on its line."""
    rows = {}
    for line in (LISTS / name).read_text().splitlines():
        code, _, message = line.partition("#")
        if code.strip():
            rows[code.strip()] = message.strip()
    return rows


EASYPOST_STATUSES = published("easypost_status.txt")
EASYPOST_DETAILS = published("easypost_status_detail.txt")
AFTERSHIP_TAGS = published("aftership_tags.txt")
AFTERSHIP_SUBTAGS = published("aftership_subtags.txt")


def test_the_published_lists_are_the_ones_we_read() -> None:
    assert len(EASYPOST_STATUSES) == len(set(EASYPOST_STATUSES)) == 10
    assert len(EASYPOST_DETAILS) == len(set(EASYPOST_DETAILS)) == 28
    assert len(AFTERSHIP_TAGS) == len(set(AFTERSHIP_TAGS)) == 9
    assert len(AFTERSHIP_SUBTAGS) == len(set(AFTERSHIP_SUBTAGS)) == 52


# =========================================================================== EasyPost


@pytest.mark.parametrize(("carrier_status", "detail"),
                         list(itertools.product(EASYPOST_STATUSES, EASYPOST_DETAILS)))
@pytest.mark.parametrize("message", ["", "Arrived at facility", "Delivery attempted - no access"])
def test_every_documented_easypost_status_and_detail_maps_to_one_of_our_statuses(
        carrier_status: str, detail: str, message: str) -> None:
    mapped = status.from_easypost(carrier_status, detail, message)
    assert mapped.status in status.STATUSES and mapped.status != "unmapped", (carrier_status, detail)
    assert mapped.reason is None or mapped.reason in status.REASONS, (carrier_status, detail)
    if carrier_status == "failure" and mapped != ("exception", "failed_attempt"):
        assert mapped.status in ("failed", "returned", "cancelled"), detail  # the carrier has given up


@pytest.mark.parametrize("carrier_status", EASYPOST_STATUSES)
def test_every_documented_easypost_status_maps_without_a_detail(carrier_status: str) -> None:
    for detail in (None, ""):
        mapped = status.from_easypost(carrier_status, detail, "")
        assert mapped.status in status.STATUSES and mapped.status != "unmapped", carrier_status


@pytest.mark.parametrize(("carrier_status", "detail"), [
    ("teleported", "arrived_at_facility"),  # unknown status
    ("in_transit", "sorted_by_robot"),  # known status, unknown detail
    ("failure", "sorted_by_robot"),
    ("", "in_transit"),
])
def test_unknown_easypost_codes_are_unmapped_with_the_raw_code_kept(carrier_status: str, detail: str) -> None:
    # Even with an attempt message: an unknown code is shown, never guessed.
    for message in ("whatever", "Delivery attempted"):
        mapped = status.from_easypost(carrier_status, detail, message)
        assert mapped == status.Status("unmapped", f"easypost:{carrier_status}/{detail}")


@pytest.mark.parametrize(("detail", "message"), [
    ("failure", "Delivery failed"),
    ("failure", ""),
    ("unknown", "Unable to deliver"),
    ("arrived_at_facility", "Arrived at facility"),
    ("out_for_delivery", "Out for delivery"),
])
def test_easypost_failure_is_a_failed_parcel(detail: str, message: str) -> None:
    assert tuple(status.from_easypost("failure", detail, message)) == ("failed", "failure")


@pytest.mark.parametrize(("detail", "expected"), [
    ("lost", ("failed", "lost")),
    ("damaged", ("failed", "damaged")),
    ("weather_delay", ("failed", "delayed")),
    ("refused", ("failed", "refused")),
    ("failed_attempt", ("failed", "failed_attempt")),
    ("return", ("returned", "return_to_sender")),
    ("cancelled", ("cancelled", None)),
    ("held", ("failed", "held")),
])
def test_easypost_failure_keeps_the_reason_its_detail_gives(detail: str, expected: tuple[str, str | None]) -> None:
    assert tuple(status.from_easypost("failure", detail, "Unable to deliver")) == expected


def test_easypost_failure_held_at_customs_stays_an_open_customs_hold() -> None:
    mapped = status.from_easypost("failure", "held", "Held by customs authority")
    assert tuple(mapped) == ("exception", "customs_hold")


ATTEMPT_MESSAGES = [
    "Delivery attempted - no access to delivery location",
    "Attempted delivery",
    "DELIVERY ATTEMPTED - BUSINESS CLOSED",
    "No one available to sign",
    "Business closed",
    "Nobody home - notice left",
    "Customer not available or business closed",
    "Receiver not available at the time of delivery",
    "No access to building",
]


@pytest.mark.parametrize("message", ATTEMPT_MESSAGES)
@pytest.mark.parametrize("carrier_status", ["in_transit", "out_for_delivery", "failure"])
def test_easypost_delivery_exception_saying_an_attempt_was_made_is_a_failed_attempt(
        carrier_status: str, message: str) -> None:
    mapped = status.from_easypost(carrier_status, "delivery_exception", message)
    assert tuple(mapped) == ("exception", "failed_attempt")


@pytest.mark.parametrize(("carrier_status", "detail"), [
    ("failure", "failure"),  # the carrier gave up after an attempt: the attempt is the story
    ("failure", "unknown"),
    ("in_transit", "status_update"),  # "a single failed delivery with a retry will still be in_transit"
    ("in_transit", "unknown"),
    ("out_for_delivery", ""),
])
def test_easypost_generic_detail_with_an_attempt_message_is_a_failed_attempt(carrier_status: str,
                                                                              detail: str) -> None:
    mapped = status.from_easypost(carrier_status, detail, "Delivery attempted - no access")
    assert tuple(mapped) == ("exception", "failed_attempt")


@pytest.mark.parametrize(("carrier_status", "expected"), [
    ("in_transit", ("exception", "delivery_exception")),
    ("out_for_delivery", ("exception", "delivery_exception")),
    ("failure", ("failed", "delivery_exception")),
])
@pytest.mark.parametrize("message", ["Delivery exception", "Package delayed in transit", "", None])
def test_easypost_delivery_exception_without_an_attempt_stays_a_delivery_exception(
        carrier_status: str, expected: tuple[str, str], message: str | None) -> None:
    assert tuple(status.from_easypost(carrier_status, "delivery_exception", message)) == expected


@pytest.mark.parametrize(("carrier_status", "detail", "message", "expected"), [
    # The codes say more than the message: they win.
    ("in_transit", "failed_attempt", "Notice left", ("exception", "failed_attempt")),
    ("out_for_delivery", "failed_attempt", "", ("exception", "failed_attempt")),
    ("in_transit", "refused", "Delivery attempted - refused by recipient", ("exception", "refused")),
    ("in_transit", "address_correction", "Delivery attempted - incorrect address",
     ("exception", "address_problem")),
    ("return_to_sender", "return", "Delivery attempted - returning to sender", ("returned", "return_to_sender")),
    ("delivered", "arrived_at_destination", "Delivered after second attempt", ("delivered", None)),
    ("available_for_pickup", "arrived_at_pickup_location", "Delivery attempted - available for pickup",
     ("available_for_pickup", None)),
    ("in_transit", "arrived_at_facility", "Arrived at facility", ("in_transit", None)),
])
def test_easypost_specific_codes_win_over_the_attempt_message(carrier_status: str, detail: str, message: str,
                                                               expected: tuple[str, str | None]) -> None:
    assert tuple(status.from_easypost(carrier_status, detail, message)) == expected


def test_the_attempt_phrases_are_one_small_lowercase_constant() -> None:
    assert all(phrase == phrase.lower() for phrase in status.ATTEMPT_PHRASES)
    assert status.says_attempted("ATTEMPTED DELIVERY")
    assert not status.says_attempted("Out for delivery")
    assert not status.says_attempted(None)


# =========================================================================== AfterShip


@pytest.mark.parametrize("tag", AFTERSHIP_TAGS)
def test_every_documented_aftership_tag_maps_to_one_of_our_statuses(tag: str) -> None:
    assert tag in status.AFTERSHIP_TAGS
    mapped = status.from_aftership(tag, None)
    assert mapped.status in status.STATUSES and mapped.status != "unmapped", tag
    assert mapped.reason is None or mapped.reason in status.REASONS, tag


@pytest.mark.parametrize("subtag", AFTERSHIP_SUBTAGS)
def test_every_documented_aftership_subtag_maps_to_one_of_our_statuses(subtag: str) -> None:
    tag = subtag.partition("_")[0]
    assert tag in AFTERSHIP_TAGS, subtag
    mapped = status.from_aftership(tag, subtag, "whatever the carrier said")
    assert mapped.status in status.STATUSES and mapped.status != "unmapped", subtag
    assert mapped.reason is None or mapped.reason in status.REASONS, subtag
    if tag in ("InTransit", "InfoReceived", "Pending", "OutForDelivery", "Delivered"):
        assert mapped.status != "exception", subtag  # routine codes never raise an alarm
    if tag == "AttemptFail":
        assert tuple(mapped) == ("exception", "failed_attempt")


def test_our_aftership_tables_are_exactly_the_published_list() -> None:
    ours = set(status.AFTERSHIP_SUBTAGS) | status.AFTERSHIP_SUBTAGS_BY_TAG
    assert ours == set(AFTERSHIP_SUBTAGS)
    assert set(status.AFTERSHIP_TAGS) == set(AFTERSHIP_TAGS)
    # Each subtag we map from its meaning carries the vendor's own message, so the choice can be checked.
    messages = published_messages("aftership_subtags.txt")
    for subtag, (message, _) in status.AFTERSHIP_SUBTAGS.items():
        assert messages[subtag] == message, subtag
    for subtag in status.AFTERSHIP_SUBTAGS_BY_TAG:
        assert messages[subtag] == "row not read", subtag


@pytest.mark.parametrize(("tag", "subtag"), [
    ("Exception", "Exception_014"),  # in the numbering, but no source we could read names it
    ("Exception", "Exception_015"),
    ("Exception", "Exception_099"),
    ("OutForDelivery", "OutForDelivery_002"),
    ("Teleported", "Teleported_001"),
    ("InTransit", "Delivered_001"),  # the tag and the subtag contradict each other
])
def test_unknown_aftership_codes_are_unmapped_with_the_raw_code_kept(tag: str, subtag: str) -> None:
    assert status.from_aftership(tag, subtag, "whatever") == status.Status("unmapped", f"aftership:{tag}/{subtag}")
