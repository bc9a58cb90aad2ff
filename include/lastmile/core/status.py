"""One status vocabulary: every carrier code is normalised to (status, reason) here, and only here.

An unknown code never becomes "in transit": it is `unmapped`, with the raw code kept, so that an
exception the mapping does not know yet stays visible instead of looking like a moving parcel.
"""

from __future__ import annotations

from typing import NamedTuple


class Status(NamedTuple):
    status: str
    reason: str | None = None


# Our statuses. Ordered roughly by the journey; see docs/status-taxonomy.md.
STATUSES = (
    "pre_transit", "in_transit", "out_for_delivery", "available_for_pickup", "delivered",
    "exception", "returned", "failed", "cancelled", "unknown", "unmapped",
)
TERMINAL = frozenset({"delivered", "returned", "failed", "cancelled"})
# Our reasons: why a parcel has its status (None when the status says it all).
REASONS = (
    "failed_attempt", "address_problem", "customs_hold", "delayed", "delivery_exception", "refused", "held",
    "lost", "damaged", "return_to_sender", "failure", "pending", "expired", "carrier_error",
)

# ------------------------------------------------------------------------------------------- EasyPost
#
# EasyPost's published codes: the Tracker object's `status` and `status_detail` lists
# (https://docs.easypost.com/docs/trackers; the same lists in EasyPost/easypost-csharp,
# EasyPost/Models/API/Tracker.cs). Copies are kept in tests/unit/vendor_lists/, and a test maps every
# documented (status, status_detail) pair. `failed_attempt` and `held_for_payment` are not in EasyPost's
# list; they are mapped anyway (our simulator sends `failed_attempt`).

_IN_TRANSIT_DETAILS = frozenset({
    "arrived_at_facility", "departed_facility", "departed_origin_facility", "in_transit",
    "received_at_origin_facility", "received_at_destination_facility",
    "transferred_to_destination_carrier", "arrived_at_destination", "status_update",
})
_EASYPOST_DETAIL: dict[str, Status] = {
    "label_created": Status("pre_transit"),
    "out_for_delivery": Status("out_for_delivery"),
    "arrived_at_pickup_location": Status("available_for_pickup"),
    "delayed": Status("exception", "delayed"),
    "weather_delay": Status("exception", "delayed"),
    "transit_exception": Status("exception", "delayed"),
    "missorted": Status("exception", "delayed"),
    "failed_attempt": Status("exception", "failed_attempt"),
    "address_correction": Status("exception", "address_problem"),
    "delivery_exception": Status("exception", "delivery_exception"),
    "refused": Status("exception", "refused"),
    "held": Status("exception", "held"),
    "held_for_payment": Status("exception", "held"),
    "awaiting_information": Status("exception", "held"),
    "lost": Status("failed", "lost"),
    "damaged": Status("failed", "damaged"),
    "failure": Status("failed", "failure"),
    "return": Status("returned", "return_to_sender"),
    "cancelled": Status("cancelled"),
    "expired": Status("unknown", "expired"),
    "unknown": Status("unknown"),
}
_EASYPOST_STATUS: dict[str, Status] = {
    "pre_transit": Status("pre_transit"),
    "in_transit": Status("in_transit"),
    "out_for_delivery": Status("out_for_delivery"),
    "available_for_pickup": Status("available_for_pickup"),
    "delivered": Status("delivered"),
    "return_to_sender": Status("returned", "return_to_sender"),
    "failure": Status("failed", "failure"),
    "cancelled": Status("cancelled"),
    "error": Status("unknown", "carrier_error"),
    "unknown": Status("unknown"),
}


# A failed delivery attempt. EasyPost has no published `status_detail` for it: "a single failed delivery
# with a retry will still be classified as in_transit. It will also have a message detailing the specific
# failed delivery attempt" (easypost.com/how-do-you-handle-failed-deliveries-second-attempts-final-details),
# and when the carrier stops trying the status becomes `failure`. So the carrier's message decides, but
# only where the codes say nothing more precise: a generic detail (`_ATTEMPT_DETAILS`) under a status
# where a parcel can still be at the door (`_ATTEMPT_STATUSES`). A message containing one of these
# phrases, case-insensitive, says an attempt was made, e.g. "Delivery attempted - no access to delivery
# location", "Attempted delivery", "No one available to sign", "Business closed".
ATTEMPT_PHRASES = ("attempt", "no one available", "nobody home", "no access", "business closed",
                   "customer not available", "receiver not available")
_ATTEMPT_STATUSES = frozenset({"in_transit", "out_for_delivery", "failure"})
_ATTEMPT_DETAILS = frozenset({"delivery_exception", "failure", "status_update", "unknown", ""})


def says_attempted(message: str | None) -> bool:
    """True when a carrier's message says a delivery was attempted (see ATTEMPT_PHRASES)."""
    text = (message or "").lower()
    return any(phrase in text for phrase in ATTEMPT_PHRASES)


def from_easypost(status: str | None, status_detail: str | None, message: str | None = None) -> Status:
    """Map an EasyPost (status, status_detail) pair, and the message where the codes are too coarse."""
    status = (status or "").strip().lower()
    detail = (status_detail or "").strip().lower()
    if status not in _EASYPOST_STATUS:
        return Status("unmapped", f"easypost:{status}/{detail}")
    if status in ("delivered", "return_to_sender", "cancelled"):
        return _EASYPOST_STATUS[status]
    if status in _ATTEMPT_STATUSES and detail in _ATTEMPT_DETAILS and says_attempted(message):
        return Status("exception", "failed_attempt")
    if detail == "unknown":  # no detail given: the status itself says where the parcel is
        return _EASYPOST_STATUS[status]
    if detail in _EASYPOST_DETAIL:
        mapped = _EASYPOST_DETAIL[detail]
        if mapped.reason == "held" and "custom" in (message or "").lower():
            return Status("exception", "customs_hold")
        if status == "failure" and mapped.status not in ("failed", "returned", "cancelled"):
            # The carrier has given up; the detail may still say why (delayed, refused, held ...).
            return Status("failed", mapped.reason or "failure")
        return mapped
    if detail in _IN_TRANSIT_DETAILS or not detail:
        return _EASYPOST_STATUS[status]
    return Status("unmapped", f"easypost:{status}/{detail}")


# ------------------------------------------------------------------------------------------ AfterShip
#
# AfterShip tags: tracking.models.tag.Tag in the official SDK (aftership-tracking-sdk 10.0.1, API
# 2026-07), which has no subtag list. Subtags: AfterShip's "Delivery Sub-statuses" table
# (aftership.com/docs/tracking/2026-07/enum/delivery-sub-statuses) for Delivered_001 to
# Exception_013 and AttemptFail_001; its help centre ("Learn About Delivery Sub-Status") and the 2026-07
# migration guide for Delivered_005 and Exception_016 to _021; for AttemptFail_002 to Expired_001 the
# stored copy of that page was cut short, so their messages come from public copies of the same table,
# which agree with each other. The subtag's own message is kept beside each code so the choice can be
# checked.
AFTERSHIP_TAGS = ("Pending", "InfoReceived", "InTransit", "OutForDelivery", "AttemptFail", "Delivered",
                  "AvailableForPickup", "Exception", "Expired")

_AFTERSHIP_TAG: dict[str, Status] = {  # a checkpoint that carries a tag but no subtag
    "Pending": Status("pre_transit", "pending"),  # "pending to track, or without tracking information yet"
    "InfoReceived": Status("pre_transit"),  # "carrier has received request ... about to pick up"
    "InTransit": Status("in_transit"),
    "OutForDelivery": Status("out_for_delivery"),
    "AttemptFail": Status("exception", "failed_attempt"),
    "Delivered": Status("delivered"),
    "AvailableForPickup": Status("available_for_pickup"),
    "Exception": Status("exception", "delivery_exception"),  # "custom hold, undelivered, returned ..."
    "Expired": Status("unknown", "expired"),  # "no tracking information for 30 days since added"
}

# subtag -> (AfterShip's subtag message, our status)
AFTERSHIP_SUBTAGS: dict[str, tuple[str, Status]] = {
    "Delivered_001": ("Delivered", Status("delivered")),
    "Delivered_002": ("Picked up by the customer", Status("delivered")),
    "Delivered_003": ("Sign by customer", Status("delivered")),
    "Delivered_004": ("Delivered and received cash on delivery", Status("delivered")),
    "Delivered_005": ("Delivered to neighbor", Status("delivered")),
    "AvailableForPickup_001": ("Available for pickup", Status("available_for_pickup")),
    "Exception_001": ("Exception", Status("exception", "delivery_exception")),
    "Exception_002": ("Customer moved", Status("exception", "address_problem")),
    "Exception_003": ("Customer refused delivery", Status("exception", "refused")),
    "Exception_004": ("Delayed (Customs clearance)", Status("exception", "customs_hold")),
    "Exception_005": ("Delayed (External factors)", Status("exception", "delayed")),
    "Exception_006": ("Held for payment", Status("exception", "held")),
    "Exception_007": ("Incorrect Address", Status("exception", "address_problem")),
    # Waiting, uncollected, at a pickup point: held there until collected or sent back.
    "Exception_008": ("Pick up missed", Status("exception", "held")),
    # Refused by the carrier for not meeting its rules: it will not be delivered as it is.
    "Exception_009": ("Rejected by carrier", Status("exception", "delivery_exception")),
    "Exception_010": ("Returning to sender", Status("returned", "return_to_sender")),
    "Exception_011": ("Returned to sender", Status("returned", "return_to_sender")),
    "Exception_012": ("Shipment damage", Status("failed", "damaged")),
    "Exception_013": ("Shipment lost", Status("failed", "lost")),
    "Exception_016": ("Delayed (Processing issue)", Status("exception", "delayed")),
    "Exception_017": ("Delayed (Extreme weather)", Status("exception", "delayed")),
    # "On hold due to inaccurate or missing documents required by regulatory agencies": a customs hold.
    "Exception_018": ("Incorrect / missing documents", Status("exception", "customs_hold")),
    "Exception_019": ("Delayed (Late flight)", Status("exception", "delayed")),
    "Exception_020": ("Shipment cancelled", Status("cancelled")),
    # "Destroyed or discarded (prohibited, damaged, or unable to be delivered)": it will never arrive.
    "Exception_021": ("Shipment disposed", Status("failed", "damaged")),
    "AttemptFail_001": ("Failed Attempt", Status("exception", "failed_attempt")),
    "AttemptFail_002": ("Addressee not available", Status("exception", "failed_attempt")),
    "AttemptFail_003": ("Business Closed", Status("exception", "failed_attempt")),
    "InTransit_001": ("In Transit", Status("in_transit")),
    "InTransit_002": ("Acceptance scan", Status("in_transit")),
    "InTransit_003": ("Arrival scan", Status("in_transit")),
    "InTransit_004": ("Arrived at destination country", Status("in_transit")),
    "InTransit_005": ("Customs clearance completed", Status("in_transit")),
    "InTransit_006": ("Customs clearance started", Status("in_transit")),  # routine, not a hold
    "InTransit_007": ("Departure Scan", Status("in_transit")),
    "InTransit_008": ("Problem resolved", Status("in_transit")),
    "InTransit_009": ("Forwarded to a different delivery address", Status("in_transit")),
    "InfoReceived_001": ("Info Received", Status("pre_transit")),
    "OutForDelivery_001": ("Out for Delivery", Status("out_for_delivery")),
    "OutForDelivery_003": ("Customer contacted", Status("out_for_delivery")),
    "OutForDelivery_004": ("Delivery appointment scheduled", Status("out_for_delivery")),
    "Pending_001": ("Pending", Status("pre_transit", "pending")),
    "Expired_001": ("Expired", Status("unknown", "expired")),
}

# Documented codes whose table row we could not read (the 2026-07 changelog names InTransit_011-013;
# InTransit_010 and Pending_002-006 sit in the same table). Their tag leaves no doubt about where the
# parcel is, so they map by tag. Exception_014/015 are NOT here: an exception's meaning is in its
# subtag, and guessing "delayed" for what may be "lost" would hide it; they stay `unmapped`, visible.
AFTERSHIP_SUBTAGS_BY_TAG = frozenset({
    "InTransit_010", "InTransit_011", "InTransit_012", "InTransit_013",
    "Pending_002", "Pending_003", "Pending_004", "Pending_005", "Pending_006",
})


def from_aftership(tag: str | None, subtag: str | None, message: str | None = None) -> Status:
    """Map an AfterShip checkpoint's (tag, subtag), and the message where the codes are too coarse."""
    tag = (tag or "").strip()
    subtag = (subtag or "").strip()
    unmapped = Status("unmapped", f"aftership:{tag}/{subtag}")
    if tag not in _AFTERSHIP_TAG:
        return unmapped
    if not subtag:
        return _AFTERSHIP_TAG[tag]
    if subtag.partition("_")[0] != tag:  # e.g. tag InTransit with subtag Delivered_001: which one is true?
        return unmapped
    if subtag in AFTERSHIP_SUBTAGS:
        if subtag == "Exception_006" and "custom" in (message or "").lower():
            return Status("exception", "customs_hold")  # duties and taxes held for payment at customs
        return AFTERSHIP_SUBTAGS[subtag][1]
    if subtag in AFTERSHIP_SUBTAGS_BY_TAG:
        return _AFTERSHIP_TAG[tag]
    return unmapped


# ------------------------------------------------------------------------------------- history exports
#
# A history export (docs/backtest.md) already speaks our vocabulary: its scans carry our status
# and reason. Anything else is shown as unmapped, like any vendor's unknown code.


def from_export(status: str | None, reason: str | None, message: str | None = None) -> Status:
    """A history export's scan: our own (status, reason), checked against our vocabulary."""
    status = (status or "").strip().lower()
    reason = (reason or "").strip().lower() or None
    if status not in STATUSES or status == "unmapped":
        return Status("unmapped", f"export:{status}/{reason or ''}")
    return Status(status, reason)

