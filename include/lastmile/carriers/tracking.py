"""Parse vendor tracker payloads (EasyPost Trackers, AfterShip Trackings) into normalised scans and estimates.

One loop (`_parse`) does the work for every vendor: it checks the tracker, reads each scan's time with
its offset (a scan without one is quarantined), maps the vendor's codes through `lastmile.core.status`,
builds the scan row (`_scan`) and reads the vendor's delivery estimate. A `_Shape` says where one
vendor keeps each of those things.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from lastmile.core import status as status_map
from lastmile.core.countries import alpha2
from lastmile.core.rejections import Rejection
from lastmile.core.timestamps import parse_timestamp

REQUIRED_TRACKER_FIELDS = ("tracking_code", "status", "tracking_details")
REQUIRED_AFTERSHIP_FIELDS = ("tracking_number", "tag", "checkpoints")


@dataclass
class ParsedTrackers:
    scans: list[dict[str, Any]] = field(default_factory=list)
    estimates: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    trackers_ok: int = 0


def scan_id(shipment_id: str, occurred_at: datetime, carrier_status: str, detail: str, message: str) -> str:
    """The same scan seen in two polls has the same id, so it is stored once."""
    key = f"{shipment_id}|{occurred_at.isoformat()}|{carrier_status}|{detail}|{message}"
    return hashlib.sha1(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class _Event:
    """One carrier scan in our words, before its time is read."""

    when: Any
    carrier_status: str
    carrier_detail: str
    message: str
    city: str | None
    country: str | None


@dataclass(frozen=True)
class _Shape:
    """Where one vendor keeps what `_parse` needs."""

    required: tuple[str, ...]  # tracker fields that must be present; the last one is the list of scans
    code: Callable[[dict[str, Any]], Any]  # the tracker's code, for quarantine record ids
    event: Callable[[dict[str, Any]], _Event]
    to_status: Callable[[str, str, str], status_map.Status]
    # A stand-in time (with offset) for the newest scan when its own is unreadable, and the note that
    # says so in its message; `time_field` is where a scan keeps its time.
    stand_in_time: Callable[[dict[str, Any], dict[str, Any]], Any]
    stand_in_note: str
    time_field: str
    estimate: Callable[[dict[str, Any]], date | None]


def _scan(shipment_id: str, occurred_at: datetime, offset: int, event: _Event, raw: dict[str, Any],
          to_status: Callable[[str, str, str], status_map.Status]) -> dict[str, Any]:
    """The scan row every vendor's scan becomes (the `scans` table's columns but first_seen_at)."""
    mapped = to_status(event.carrier_status, event.carrier_detail, event.message)
    return {
        "scan_id": scan_id(shipment_id, occurred_at, event.carrier_status, event.carrier_detail, event.message),
        "shipment_id": shipment_id,
        "occurred_at": occurred_at,
        "utc_offset_minutes": offset,
        "status": mapped.status,
        "reason": mapped.reason,
        "carrier_status": event.carrier_status,
        "carrier_status_detail": event.carrier_detail,
        "message": event.message,
        "city": event.city,
        "country": event.country,
        "raw": json.dumps(raw, sort_keys=True),
    }


def _parse(payloads: Iterable[tuple[str, dict[str, Any]]], observed_at: datetime, source: str,
           shape: _Shape) -> ParsedTrackers:
    """Parse (shipment_id, tracker) pairs; bad trackers and bad scans become rejections, not errors.

    Only what a vendor can get wrong is caught (a missing field, a field of the wrong type, a time
    that is no time): an error of our own still fails the task, rather than quarantining every
    tracker as if the carrier had sent nonsense."""
    out = ParsedTrackers()
    for shipment_id, payload in payloads:
        if not isinstance(payload, dict):
            out.rejections.append(Rejection.of(source, shipment_id, "tracker", "the tracker is not a JSON object",
                                               {"type": type(payload).__name__}))
            continue
        one = _parse_one(shipment_id, payload, str(shape.code(payload) or shipment_id), observed_at, source, shape)
        out.trackers_ok += one.trackers_ok
        out.scans += one.scans
        out.estimates += one.estimates
        out.rejections += one.rejections
    return out


def _parse_one(shipment_id: str, payload: dict[str, Any], code: str, observed_at: datetime, source: str,
               shape: _Shape) -> ParsedTrackers:
    """One tracker's scans, estimate and rejections."""
    out = ParsedTrackers()
    events_field = shape.required[-1]
    missing = [f for f in shape.required if payload.get(f) in (None, "")]
    if missing or not isinstance(payload.get(events_field), list):
        field_name = missing[0] if missing else events_field
        out.rejections.append(Rejection.of(
            source, code, field_name, f"tracker payload is missing {', '.join(missing) or field_name}",
            payload))
        return out
    out.trackers_ok += 1
    details = list(payload[events_field])
    for index, detail in enumerate(details):
        if not isinstance(detail, dict):
            out.rejections.append(Rejection.of(source, f"{code}#{index}", events_field, "the scan is not a JSON object",
                                               {"type": type(detail).__name__}))
            continue
        # A history export's row says where it was read, and what was wrong with it then.
        place = tuple(detail.get("_origin") or ("", 0))
        flaw = detail.get("_flaw")
        if flaw:
            out.rejections.append(Rejection.of(source, f"{code}#{index}", flaw[0], flaw[1], detail).at(*place))
            continue
        event = shape.event(detail)
        try:
            occurred_at, offset = parse_timestamp(event.when)
        except ValueError as err:
            out.rejections.append(Rejection.of(source, f"{code}#{index}", shape.time_field, str(err),
                                               detail).at(*place))
            stand_in = shape.stand_in_time(payload, detail)
            if index == len(payload[events_field]) - 1 and stand_in:
                # The newest scan is unreadable but the vendor says where the parcel is (and
                # when): keep that, or a delivered parcel would look lost.
                details.append({**detail, shape.time_field: stand_in,
                                "message": f"{event.message} ({shape.stand_in_note})".strip()})
            continue
        out.scans.append(_scan(shipment_id, occurred_at, offset, event, detail, shape.to_status))
    try:
        estimate = shape.estimate(payload)
    except ValueError as err:
        out.rejections.append(Rejection.of(source, code, "est_delivery_date", str(err), payload))
        estimate = None
    if estimate is not None:
        out.estimates.append({"shipment_id": shipment_id, "est_delivery_date": estimate,
                              "observed_at": observed_at})
    return out


def _calendar_date(raw: Any) -> date | None:
    """The date of an estimate: 'YYYY-MM-DD', or a datetime whose date part is the recipient's day."""
    if not raw:
        return None
    try:
        return date.fromisoformat(str(raw)[:10])
    except ValueError:
        raise ValueError(f"estimated delivery date {raw!r} is not a date") from None


# --------------------------------------------------------------------------------------------- EasyPost


def _object(value: Any) -> dict[str, Any]:
    """A nested object of a vendor's payload; {} when it is absent or not an object."""
    return value if isinstance(value, dict) else {}


def _easypost_event(detail: dict[str, Any]) -> _Event:
    location = _object(detail.get("tracking_location"))
    return _Event(detail.get("datetime"), str(detail.get("status") or ""), str(detail.get("status_detail") or ""),
                  str(detail.get("message") or ""), location.get("city"), location.get("country"))


def _estimate(payload: dict[str, Any]) -> date | None:
    local = _object(payload.get("carrier_detail")).get("est_delivery_date_local")
    return _calendar_date(local or payload.get("est_delivery_date"))


_EASYPOST = _Shape(
    required=REQUIRED_TRACKER_FIELDS,
    code=lambda tracker: tracker.get("tracking_code") or tracker.get("id"),
    event=_easypost_event,
    to_status=status_map.from_easypost,
    stand_in_time=lambda tracker, scan: tracker.get("updated_at"),
    stand_in_note="time from tracker",
    time_field="datetime",
    estimate=_estimate,
)


def parse_easypost(
    payloads: Iterable[tuple[str, dict[str, Any]]], observed_at: datetime, source: str = "easypost"
) -> ParsedTrackers:
    """Parse (shipment_id, Tracker) pairs; bad trackers and bad scans become rejections, not errors."""
    return _parse(payloads, observed_at, source, _EASYPOST)


# -------------------------------------------------------------------------------------------- AfterShip


def _aftership_event(checkpoint: dict[str, Any]) -> _Event:
    # country_region is ISO 3166-1 alpha-3 ("USA"); our scans keep alpha-2.
    return _Event(checkpoint.get("checkpoint_time"), str(checkpoint.get("tag") or ""),
                  str(checkpoint.get("subtag") or ""), str(checkpoint.get("message") or ""),
                  checkpoint.get("city") or None, alpha2(checkpoint.get("country_region")))


# The courier's own estimate first (what the carrier commits to), then AfterShip's prediction. The
# custom and order-promised dates are ours, not an observation, and first_/latest_estimated_delivery
# repeat one of these two, so they are not read. A range counts as its last day: the date by which
# the carrier says it will have delivered.
AFTERSHIP_ESTIMATES = ("courier_estimated_delivery_date", "aftership_estimated_delivery_date")


def _aftership_estimate(tracking: dict[str, Any]) -> date | None:
    for name in AFTERSHIP_ESTIMATES:
        edd = _object(tracking.get(name))
        found = _calendar_date(edd.get("estimated_delivery_date") or edd.get("estimated_delivery_date_max"))
        if found is not None:
            return found
    return None


_AFTERSHIP = _Shape(
    required=REQUIRED_AFTERSHIP_FIELDS,
    code=lambda tracking: tracking.get("tracking_number") or tracking.get("id"),
    event=_aftership_event,
    to_status=status_map.from_aftership,
    # created_at is when AfterShip recorded the checkpoint, always in UTC ("YYYY-MM-DDTHH:mm:ssZ").
    stand_in_time=lambda tracking, checkpoint: checkpoint.get("created_at") or tracking.get("updated_at"),
    stand_in_note="time from AfterShip",
    time_field="checkpoint_time",
    estimate=_aftership_estimate,
)


def parse_aftership(
    payloads: Iterable[tuple[str, dict[str, Any]]], observed_at: datetime, source: str = "aftership"
) -> ParsedTrackers:
    """Parse (shipment_id, AfterShip Tracking) pairs; AfterShip lists checkpoints oldest first."""
    return _parse(payloads, observed_at, source, _AFTERSHIP)


# ------------------------------------------------------------------------------------- history exports


def _export_event(scan: dict[str, Any]) -> _Event:
    return _Event(scan.get("occurred_at"), str(scan.get("status") or ""), str(scan.get("reason") or ""),
                  str(scan.get("message") or ""), scan.get("location") or None, None)


_EXPORT = _Shape(
    required=("tracking_code", "status", "scans"),
    code=lambda tracker: tracker.get("tracking_code"),
    event=_export_event,
    to_status=status_map.from_export,
    stand_in_time=lambda tracker, scan: None,  # an export row without a readable time is only quarantined
    stand_in_note="",
    time_field="occurred_at",
    estimate=lambda tracker: _calendar_date(tracker.get("est_delivery_date")),
)


def parse_export(
    payloads: Iterable[tuple[str, dict[str, Any]]], observed_at: datetime, source: str = "export"
) -> ParsedTrackers:
    """Parse (shipment_id, tracker) pairs built from a history export's scans.csv (oldest first)."""
    return _parse(payloads, observed_at, source, _EXPORT)


PARSERS: dict[str, Callable[..., ParsedTrackers]] = {"easypost": parse_easypost, "aftership": parse_aftership,
                                                     "export": parse_export}


def parse(vendor: str, payloads: Iterable[tuple[str, dict[str, Any]]], observed_at: datetime) -> ParsedTrackers:
    """Parse one vendor's (shipment_id, payload) pairs with that vendor's parser."""
    return PARSERS[vendor](payloads, observed_at, source=vendor)


# What a feed is told of each shipment it is asked about: a vendor needs the code and carrier; the
# simulator also answers with the service and the lane, as a vendor's carrier detail would.
TRACKING_QUERY_COLUMNS = ("shipment_id", "tracking_code", "carrier", "service", "origin", "destination")


class TrackingSource(Protocol):
    def trackers(self, shipments: list[dict[str, Any]], as_of: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """(shipment_id, EasyPost-shaped Tracker) for each shipment the carrier knows at `as_of`;
        each shipment is a dict of TRACKING_QUERY_COLUMNS."""
        ...


class ChangeListing(Protocol):
    """A feed that can also say which of its trackers changed (carriers.accounts.LISTS_CHANGES)."""

    def changed_trackers(self, since: datetime, shipments_with: Callable[[list[str]], list[dict[str, Any]]],
                         skip: set[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(shipment_id, tracker) for each tracker updated since `since` whose code belongs to one
        of the shipments `shipments_with(codes)` returns (dicts of TRACKING_QUERY_COLUMNS): the
        parcels still asked about. Shipments in `skip` were answered already."""
        ...
