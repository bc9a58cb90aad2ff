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


def from_easypost(status: str | None, status_detail: str | None, message: str | None = None) -> Status:
    """Map an EasyPost (status, status_detail) pair, and the message where the codes are too coarse."""
    status = (status or "").strip().lower()
    detail = (status_detail or "").strip().lower()
    if status not in _EASYPOST_STATUS:
        return Status("unmapped", f"easypost:{status}/{detail}")
    if status in ("delivered", "return_to_sender", "cancelled"):
        return _EASYPOST_STATUS[status]
    if detail == "unknown":  # no detail given: the status itself says where the parcel is
        return _EASYPOST_STATUS[status]
    if detail in _EASYPOST_DETAIL:
        mapped = _EASYPOST_DETAIL[detail]
        if mapped.reason == "held" and "custom" in (message or "").lower():
            return Status("exception", "customs_hold")
        if status == "failure" and mapped.status != "failed":
            return Status("failed", mapped.reason or detail)
        return mapped
    if detail in _IN_TRANSIT_DETAILS or not detail:
        return _EASYPOST_STATUS[status]
    return Status("unmapped", f"easypost:{status}/{detail}")
