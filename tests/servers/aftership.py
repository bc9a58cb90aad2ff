"""A local AfterShip Tracking API (2026-07) for tests: real HTTP, the SDK's shapes, scriptable faults.

Where each part comes from (AfterShip's official Python SDK, aftership-tracking-sdk 10.0.1, whose
README says "API Version: 2026-07"; paths are inside its wheel):

* Base path ``/tracking/2026-07`` -- ``tracking/api/tracking.py`` (``url = "/tracking/2026-07/trackings"``).
* Auth header ``as-api-key`` -- ``tracking/auth.py``; anything else gets 401 (meta.code 401, "The API Key
  is invalid.", type Unauthorized: the SDK README's error list).
* Envelope ``{"meta": {"code", "message", "type"}, "data": ...}`` -- ``tracking/models/meta.py`` and
  ``meta_type.py``; ``tracking/response.py`` reads ``data`` on 2xx and ``meta`` otherwise.
* ``GET /trackings`` -- ``cursor``, ``limit`` (default 100, max 200), ``tracking_numbers`` (comma
  separated, at most 50), ``slug`` (comma separated), ``updated_at_min`` / ``updated_at_max`` (a date and
  time with its offset; trackings whose ``updated_at`` lies within), as documented in ``get_trackings``; ``data`` is
  ``{"pagination": {"total", "next_cursor", "has_next_page"}, "trackings": [...]}``
  (``get_trackings_response_data.py``, ``..._pagination.py``). Newest first. Cursors are opaque; an
  unknown one is 400 meta.code 4008 ("The value of [field_name] is invalid.").
* ``POST /trackings`` -- the flat ``CreateTrackingRequest`` (``create_tracking_request.py``): 201 with the
  new Tracking; a number (and slug) already tracked is 400 meta.code 4003 "Tracking already exists."; no
  ``tracking_number`` is 4007, a body that is not JSON 4001, an unknown slug 4010 (error codes from
  ``tracking/response.py``'s ``_error_meta_code_mapping`` and the README's error list).
* ``GET /trackings/{id}`` -- the Tracking, or 404 meta.code 4004 "Tracking does not exist.".
* 429 carries ``Retry-After`` (unless ``send_retry_after`` is False) and the
  ``X-RateLimit-Limit/Remaining/Reset`` headers the SDK README describes (Reset is a Unix time); every answer carries ``as-api-version: 2026-07`` (AfterShip's 2026-07 migration guide).

Tracking and Checkpoint bodies have exactly the fields of the SDK's ``Tracking`` (``models/tracking.py``)
and ``Checkpoint`` (``models/checkpoint.py``) models, in that order (``TRACKING_FIELDS``,
``CHECKPOINT_FIELDS``); nested objects use the fields of their own models (``tracking_courier_estimated_
delivery_date.py``, ``tracking_aftership_estimated_delivery_date.py``, ``tracking_shipment_weight.py``, ...).
Values are this server's own. Whether a 4003 body's ``data`` names the existing tracking is not
documented: by default it does not (``data: {}``); set ``duplicate_reveals_id`` to send ``{"id": ...}``.

Use::

    with AfterShipServer() as af:
        af.add_tracking("1Z0000000000000001", slug="ups", checkpoints=[
            checkpoint("InTransit", "InTransit_002", "2026-07-01T09:00:00-05:00")])
        af.script(("429", 2), 500, ("hang", 1.0), "malformed", (400, 4010, "The value of slug is invalid."))
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from servers.base import Behaviour, RecordedRequest, ScriptedServer, VendorHandler, parse_behaviour

API_VERSION = "2026-07"
BASE_PATH = f"/tracking/{API_VERSION}"
DEFAULT_LIMIT = 100  # get_trackings: "(Default: 100, Max: 200)"
MAX_LIMIT = 200
MAX_TRACKING_NUMBERS = 50  # get_trackings: "Supports up to 50 tracking numbers."
KNOWN_SLUGS = frozenset({"usps", "ups", "fedex", "dhl", "dhl-germany", "dpd", "royal-mail"})  # this server's own

# Field names, in order, of the SDK's Tracking model (tracking/models/tracking.py).
TRACKING_FIELDS = (
    "id", "legacy_id", "created_at", "updated_at", "tracking_number", "slug", "active", "custom_fields",
    "transit_time", "origin_country_region", "origin_state", "origin_city", "origin_postal_code",
    "origin_raw_location", "destination_country_region", "destination_state", "destination_city",
    "destination_postal_code", "destination_raw_location", "courier_destination_country_region",
    "courier_estimated_delivery_date", "note", "order_id", "order_id_path", "order_date",
    "shipment_package_count", "shipment_pickup_date", "shipment_delivery_date", "shipment_type",
    "shipment_weight", "shipment_dimensions", "signed_by", "source", "tag", "subtag", "subtag_message",
    "title", "tracked_count", "language", "unique_token", "checkpoints", "subscribed_smses",
    "subscribed_emails", "return_to_sender", "order_promised_delivery_date", "delivery_type",
    "pickup_location", "pickup_note", "courier_tracking_link", "first_attempted_at", "courier_redirect_link",
    "tracking_account_number", "tracking_key", "tracking_ship_date", "on_time_status", "on_time_difference",
    "order_tags", "aftership_estimated_delivery_date", "custom_estimated_delivery_date", "order_number",
    "first_estimated_delivery", "latest_estimated_delivery", "shipment_tags", "courier_connection_id",
    "carbon_emissions", "location_id", "shipping_method", "failed_delivery_attempts", "signature_requirement",
    "delivery_location_type", "aftership_tracking_url", "aftership_tracking_order_url", "first_mile",
    "last_mile", "customers", "proof_of_delivery", "multi_piece_info", "shipment_direction",
    "return_shipment", "forward_shipment",
)
# Field names, in order, of the SDK's Checkpoint model (tracking/models/checkpoint.py).
CHECKPOINT_FIELDS = (
    "created_at", "slug", "checkpoint_time", "location", "city", "state", "postal_code", "coordinate",
    "country_region", "country_region_name", "message", "tag", "subtag", "subtag_message", "raw_tag",
    "events", "source", "hash",
)

# Default meta of each error status: the SDK README's "Error List" (code, message) and MetaType.
_META: dict[int, tuple[int, str, str]] = {
    400: (400, "The request was invalid or cannot be otherwise served.", "BadRequest"),
    401: (401, "The API Key is invalid.", "Unauthorized"),
    403: (403, "The request is understood, but it has been refused or access is not allowed.", "Forbidden"),
    404: (404, "The URI requested is invalid or the resource requested does not exist.", "NotFound"),
    429: (429, "You have exceeded the API call rate limit. The default limit is 10 requests per second.",
          "TooManyRequests"),
    500: (500, "Something went wrong on AfterShip's end.", "InternalError"),
    502: (502, "Something went wrong on AfterShip's end.", "InternalError"),
    503: (503, "Something went wrong on AfterShip's end.", "InternalError"),
    504: (504, "Something went wrong on AfterShip's end.", "InternalError"),
}
ALREADY_EXISTS = (4003, "Tracking already exists.")
DOES_NOT_EXIST = (4004, "Tracking does not exist.")
MALFORMED_BODY = b'{"meta": {"code": 200}, "data": {"trackings": [{"id": "'  # a 200 cut off mid-body


def error_body(status: int, code: int | str | None = None, message: str | None = None) -> dict[str, Any]:
    """AfterShip's error envelope for an HTTP status, with an optional meta.code and message."""
    default_code, default_message, kind = _META.get(
        status, (status, "The request failed.", "InternalError" if status >= 500 else "BadRequest"))
    meta_code = int(code) if code is not None and str(code).isdigit() else default_code
    return {"meta": {"code": meta_code, "message": message or default_message, "type": kind}, "data": {}}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


# ------------------------------------------------------------------------------------------- bodies


def checkpoint(tag: str, subtag: str | None, checkpoint_time: str | None, message: str | None = None, *,
               city: str | None = "Memphis", state: str | None = "TN", country_region: str | None = "USA",
               slug: str = "usps", created_at: str | None = None) -> dict[str, Any]:
    """A Checkpoint with every field of the SDK model; ``checkpoint_time`` is passed through as given
    (AfterShip gives the carrier's local time with its offset, or without one when the carrier has none)."""
    body = {
        "created_at": created_at or _iso(datetime.now(UTC).replace(microsecond=0)),
        "slug": slug,
        "checkpoint_time": checkpoint_time,
        "location": ", ".join(p for p in (city, state, country_region) if p) or None,
        "city": city,
        "state": state,
        "postal_code": None,
        "coordinate": {"latitude": None, "longitude": None},  # checkpoint_coordinate.py
        "country_region": country_region,
        "country_region_name": None,
        "message": message if message is not None else f"{tag} {subtag or ''}".strip(),
        "tag": tag,
        "subtag": subtag,
        "subtag_message": subtag,
        "raw_tag": None,
        "events": [],  # checkpoint_events.py: [{"code", "reason": {"code"}}]
        "source": "carrier",  # checkpoint_source.py: carrier | user
        "hash": secrets.token_hex(16),
    }
    assert tuple(body) == CHECKPOINT_FIELDS
    return body


def _edd(date: str | None = None, low: str | None = None, high: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"estimated_delivery_date": date, **extra, "estimated_delivery_date_min": low,
            "estimated_delivery_date_max": high}


def canonical_tracking(tracking_id: str, tracking_number: str, slug: str, created_at: str) -> dict[str, Any]:
    """A new Tracking (tag Pending, no checkpoints) with every field of the SDK model, in its order."""
    body: dict[str, Any] = {name: None for name in TRACKING_FIELDS}
    body.update({
        "id": tracking_id,
        "legacy_id": tracking_id[:24],
        "created_at": created_at,
        "updated_at": created_at,
        "tracking_number": tracking_number,
        "slug": slug,
        "active": True,
        "origin_country_region": "USA",
        "destination_country_region": "USA",
        "destination_state": "CA",
        "destination_city": "Los Angeles",
        "destination_postal_code": "90001",
        "courier_destination_country_region": "USA",
        # tracking_courier_estimated_delivery_date.py / tracking_aftership_estimated_delivery_date.py
        "courier_estimated_delivery_date": _edd(),
        "shipment_package_count": 1,
        "shipment_weight": {"unit": None, "value": None},  # tracking_shipment_weight.py
        "shipment_dimensions": {"unit": None, "length": None, "width": None, "height": None},
        "source": "api",
        "tag": "Pending",
        "subtag": "Pending_001",
        "subtag_message": "Pending",
        "title": tracking_number,
        "tracked_count": 0,
        "language": "en",
        "unique_token": "deprecated",
        "checkpoints": [],
        "subscribed_smses": [],
        "subscribed_emails": [],
        "return_to_sender": False,
        "order_promised_delivery_date": {"promised_delivery_date": None, "promised_delivery_date_min": None,
                                         "promised_delivery_date_max": None},
        "courier_tracking_link": f"https://www.example.com/track/{tracking_number}",
        "on_time_status": None,
        "order_tags": [],
        "aftership_estimated_delivery_date": _edd(confidence_code=None),
        "custom_estimated_delivery_date": None,
        "first_estimated_delivery": None,
        "latest_estimated_delivery": None,
        "shipment_tags": [],
        "failed_delivery_attempts": 0,
        "aftership_tracking_url": f"https://track.aftership.com/{slug}/{tracking_number}",
        "customers": [],
        "proof_of_delivery": [],
    })
    return body


# ------------------------------------------------------------------------------------------- server


class AfterShipServer(ScriptedServer):
    """An AfterShip Tracking API look-alike on 127.0.0.1:<random port>, served from a daemon thread."""

    name = "aftership-server"
    malformed_body = MALFORMED_BODY

    def __init__(self, api_key: str | None = None, clock_start: datetime | None = None,
                 detect_slug: str = "usps", duplicate_reveals_id: bool = False) -> None:
        super().__init__()
        self.api_key = api_key or f"asat_{secrets.token_hex(16)}"
        self.detect_slug = detect_slug  # what "courier detection" picks for a create without a slug
        self.duplicate_reveals_id = duplicate_reveals_id
        self.send_retry_after = True  # False: a 429 says when to come back only in X-RateLimit-Reset
        self._trackings: list[dict[str, Any]] = []  # creation order; listing reverses it
        self._cursor_salt = secrets.token_hex(4)
        # created_at advances one second per tracking so that "newest first" is a strict order.
        self._clock = clock_start or datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)

    @property
    def url(self) -> str:
        """The API base, as the client's ``base_url`` expects it (``.../tracking/2026-07``)."""
        return f"http://127.0.0.1:{self.port}{BASE_PATH}"

    # -- scripting

    def script(self, *responses: Any) -> None:
        """Queue behaviours for the next requests (any endpoint), one per request, in order.

        Forced statuses and ``malformed`` answer without looking at auth or body; ``200`` and ``hang``
        run the normal auth and request checks. ``(400, 4010, "msg")`` sets meta.code and meta.message.
        """
        super().script(*responses)

    def behaviour(self, spec: Any) -> Behaviour:
        return parse_behaviour(spec)

    def error_payload(self, step: Behaviour) -> Any:
        return error_body(step.status, step.code, step.message)

    def fault_headers(self, step: Behaviour) -> list[tuple[str, str]]:
        if step.status != 429:
            return []
        seconds = step.retry_after or 0.0
        limits = [("X-RateLimit-Limit", "10"), ("X-RateLimit-Remaining", "0"),
                  ("X-RateLimit-Reset", str(int(time.time() + seconds)))]
        return [("Retry-After", f"{seconds:g}"), *limits] if self.send_retry_after else limits

    # -- trackings

    def add_tracking(self, tracking_number: str | None = None, slug: str = "usps",
                     checkpoints: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
        """Store a tracking; its tag/subtag follow the last checkpoint unless given in ``fields``.

        ``fields`` overwrite Tracking fields (e.g. ``courier_estimated_delivery_date={...}``); names that
        are not in the SDK model are refused so tests cannot drift from AfterShip's shape. Returns a copy.
        """
        stray = set(fields) - set(TRACKING_FIELDS)
        if stray:
            raise ValueError(f"not Tracking fields in the SDK model: {sorted(stray)}")
        with self._lock:
            tracking = self._new_tracking_locked(tracking_number, slug)
            points = [dict(cp, slug=slug) for cp in (checkpoints or [])]
            tracking["checkpoints"] = points
            if points:
                tracking.update({"tag": points[-1]["tag"], "subtag": points[-1]["subtag"],
                                 "subtag_message": points[-1]["subtag_message"]})
            tracking.update(copy.deepcopy(fields))
            return copy.deepcopy(tracking)

    def add_checkpoints(self, tracking_number: str, checkpoints: list[dict[str, Any]],
                        updated_at: datetime | None = None) -> dict[str, Any]:
        """Append checkpoints to the newest tracking of that number, as a carrier update does: its
        tag follows the last one and ``updated_at`` moves (to ``updated_at``, else the server's clock).
        Returns a copy."""
        with self._lock:
            tracking = next(t for t in reversed(self._trackings) if t["tracking_number"] == tracking_number)
            points = [dict(cp, slug=tracking["slug"]) for cp in checkpoints]
            tracking["checkpoints"] = [*tracking["checkpoints"], *points]
            if points:
                tracking.update({"tag": points[-1]["tag"], "subtag": points[-1]["subtag"],
                                 "subtag_message": points[-1]["subtag_message"]})
            if updated_at is None:
                self._clock += timedelta(seconds=1)
            tracking["updated_at"] = _iso(updated_at or self._clock)
            return copy.deepcopy(tracking)

    def add_trackings(self, count: int, prefix: str = "AS9", **kwargs: Any) -> list[dict[str, Any]]:
        """``count`` trackings with numbers ``<prefix>000000001``... (oldest first)."""
        return [self.add_tracking(f"{prefix}{n:09d}", **kwargs) for n in range(1, count + 1)]

    def trackings(self) -> list[dict[str, Any]]:
        """Every stored tracking, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._trackings)

    def reset(self) -> None:
        """Forget scripts, records and trackings (the API key and port stay)."""
        self._forget()
        with self._lock:
            self._trackings.clear()

    def _new_tracking_locked(self, tracking_number: str | None, slug: str) -> dict[str, Any]:
        self._clock += timedelta(seconds=1)
        tracking = canonical_tracking(uuid.uuid4().hex, tracking_number or f"AS{secrets.randbelow(10 ** 10):010d}",
                                      slug, _iso(self._clock))
        self._trackings.append(tracking)
        return tracking

    # -- request handling (called from handler threads)

    def _authorized(self, headers: dict[str, str]) -> bool:
        return secrets.compare_digest(headers.get("as-api-key", "").strip(), self.api_key)

    def _create(self, record: RecordedRequest) -> tuple[int, Any]:
        body = record.body
        if not isinstance(body, dict):
            return 400, error_body(400, 4001, "Invalid JSON data.")
        number = body.get("tracking_number")
        if not isinstance(number, str) or not number.strip():
            return 400, error_body(400, 4007, "tracking_number is required.")
        slug = body.get("slug")
        if slug is not None and (not isinstance(slug, str) or slug not in KNOWN_SLUGS):
            return 400, error_body(400, 4010, "The value of slug is invalid.")
        with self._lock:
            for existing in self._trackings:
                if existing["tracking_number"] == number and (slug is None or existing["slug"] == slug):
                    duplicate = error_body(400, *ALREADY_EXISTS)
                    if self.duplicate_reveals_id:
                        duplicate["data"] = {"id": existing["id"], "tracking_number": number,
                                             "slug": existing["slug"]}
                    return 400, duplicate
            tracking = self._new_tracking_locked(number, slug or self.detect_slug)
            return 201, {"meta": {"code": 201}, "data": copy.deepcopy(tracking)}

    def _get(self, tracking_id: str) -> tuple[int, Any]:
        with self._lock:
            for tracking in self._trackings:
                if tracking["id"] == tracking_id:
                    return 200, {"meta": {"code": 200}, "data": copy.deepcopy(tracking)}
        return 404, error_body(404, *DOES_NOT_EXIST)

    def _list(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            limit = int(query.get("limit", [str(DEFAULT_LIMIT)])[-1])
        except ValueError:
            return 400, error_body(400, 4008, "The value of limit is invalid.")
        if not 1 <= limit <= MAX_LIMIT:
            return 400, error_body(400, 4008, "The value of limit is invalid.")
        numbers = _csv(query.get("tracking_numbers"))
        if numbers is not None and len(numbers) > MAX_TRACKING_NUMBERS:
            return 400, error_body(400, 4008, "The value of tracking_numbers is invalid.")
        slugs = _csv(query.get("slug"))
        window = []
        for name in ("updated_at_min", "updated_at_max"):
            try:
                window.append(datetime.fromisoformat(query[name][-1]) if name in query else None)
            except ValueError:
                return 400, error_body(400, 4008, f"The value of {name} is invalid.")
            if window[-1] is not None and window[-1].tzinfo is None:
                return 400, error_body(400, 4008, f"The value of {name} is invalid.")
        with self._lock:
            items = list(reversed(self._trackings))  # newest first
        if numbers is not None:
            items = [t for t in items if t["tracking_number"] in numbers]
        low, high = window
        if low is not None or high is not None:
            items = [t for t in items if (low is None or datetime.fromisoformat(t["updated_at"]) >= low)
                     and (high is None or datetime.fromisoformat(t["updated_at"]) <= high)]
        if slugs is not None:
            items = [t for t in items if t["slug"] in slugs]
        offset = 0
        if "cursor" in query:
            offset = self._offset(query["cursor"][-1])
            if offset is None:
                return 400, error_body(400, 4008, "The value of cursor is invalid.")
        page = items[offset:offset + limit]
        more = offset + len(page) < len(items)
        pagination = {"total": len(items), "next_cursor": self._cursor(offset + len(page)) if more else None,
                      "has_next_page": more}
        return 200, {"meta": {"code": 200}, "data": {"pagination": pagination, "trackings": copy.deepcopy(page)}}

    def _cursor(self, offset: int) -> str:
        return base64.urlsafe_b64encode(f"{self._cursor_salt}:{offset}".encode()).decode()

    def _offset(self, cursor: str) -> int | None:
        try:
            salt, _, offset = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
            return int(offset) if salt == self._cursor_salt else None
        except (ValueError, UnicodeDecodeError):
            return None


def _csv(values: list[str] | None) -> set[str] | None:
    if not values:
        return None
    return {item.strip() for value in values for item in value.split(",") if item.strip()}


_TRACKING_PATH = re.compile(rf"^{re.escape(BASE_PATH)}/trackings/(?P<id>[^/]+)$")


class _Handler(VendorHandler):
    vendor: ClassVar[AfterShipServer]

    def extra_headers(self) -> list[tuple[str, str]]:
        return [("as-api-version", API_VERSION)]

    def _handle(self) -> None:
        record = self._read()
        if self.play(record, self.vendor._next_behaviour()):
            return
        if not self.vendor._authorized(record.headers):
            return self._send(record, 401, error_body(401), outcome="unauthorized")
        self._route(record)

    def _route(self, record: RecordedRequest) -> None:
        server, path, method = self.vendor, record.path, self.command
        if path == f"{BASE_PATH}/trackings":
            if method == "POST":
                return self._send(record, *server._create(record))
            if method == "GET":
                return self._send(record, *server._list(record.query))
            return self._send(record, 404, error_body(404))
        match = _TRACKING_PATH.match(path)
        if match and method == "GET":
            return self._send(record, *server._get(match["id"]))
        return self._send(record, 404, error_body(404))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


AfterShipServer.handler_class = _Handler


# ---------------------------------------------------------------------------------------- fixture


@pytest.fixture()
def aftership_server() -> Iterator[AfterShipServer]:
    """A started AfterShip look-alike on 127.0.0.1 (fresh per test), stopped afterwards."""
    with AfterShipServer() as server:
        yield server
