"""AfterShip Tracking API (version 2026-07) over the shared vendor HTTP layer: create, get, list, TrackingSource.

What the API looks like, read from AfterShip's official Python SDK (aftership-tracking-sdk 10.0.1,
"API Version: 2026-07" in its README), not guessed:

- Base URL ``https://api.aftership.com/tracking/2026-07``: ``tracking/configuration.py`` (domain
  ``https://api.aftership.com``) joined with the paths in ``tracking/api/tracking.py``
  (``/tracking/2026-07/trackings``). AfterShip's 2026-07 changelog names the same base URL.
- Auth is the header ``as-api-key: <key>`` (``tracking/auth.py``, ``Authenticator.sign``; the AES/RSA
  signatures there are optional extras we do not use).
- Every answer is the envelope ``{"meta": {"code", "message", "type"}, "data": ...}``
  (``tracking/models/meta.py``, ``meta_type.py``; ``tracking/response.py`` reads ``data`` on 2xx and
  raises from ``meta`` otherwise). ``meta.type`` is one of BadRequest, Unauthorized, Forbidden,
  NotFound, TooManyRequests, InternalError.
- ``GET /trackings`` takes ``cursor``, ``limit`` ("Default: 100, Max: 200"), ``tracking_numbers``
  ("comma to separate multiple values ... up to 50"), ``slug`` (comma-separated) and more; ``data`` is
  ``{"pagination": {"total", "next_cursor", "has_next_page"}, "trackings": [Tracking]}``
  (``get_trackings_response_data.py``, ``get_trackings_response_data_pagination.py``).
- ``POST /trackings`` takes a flat ``CreateTrackingRequest`` (``tracking_number``, ``slug``, ...; the
  SDK sends ``model_dump(exclude_none=True)``, no ``{"tracking": ...}`` wrapper any more) and answers
  the new Tracking in ``data``. ``GET /trackings/{id}`` answers one Tracking.
- Errors (SDK README "Error List", ``tracking/response.py`` ``_error_meta_code_mapping``): meta.code
  4003 "Tracking already exists." (HTTP 400) for a duplicate create, 4004 "Tracking does not exist."
  (404), 4005/4017 invalid tracking number, 4010 invalid slug, 4012 bad courier, 401 invalid key,
  403, 404, 429 (rate limit, "10 requests per second" by default), 500/502/503/504. The SDK retries
  only timeouts and 5xx; we also retry 429, waiting Retry-After or, failing that, until the
  ``X-RateLimit-Reset`` Unix time the SDK README documents on every answer.

A duplicate create is success: the existing tracking is fetched (by the id in the error's ``data`` when
AfterShip sends one, else by listing that number and slug), so a create re-sent after a timeout is
harmless. Failures are classified like EasyPost's (`AfterShipClientError` for 4xx, `AfterShipUnauthorized`
for 401/403, `AfterShipUnavailable` when retries ran out, `AfterShipMalformedResponse` for a body that
is not the envelope). Nothing here logs more than tracking ids, tracking numbers and AfterShip's codes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from lastmile.carriers.vendor_http import (
    ErrorFamily,
    TrackingVendorClient,
    VendorClientError,
    VendorError,
    VendorFault,
    VendorMalformedResponse,
    VendorUnauthorized,
    VendorUnavailable,
    json_body,
)

log = logging.getLogger(__name__)

API_VERSION = "2026-07"
DEFAULT_BASE_URL = f"https://api.aftership.com/tracking/{API_VERSION}"
MAX_PAGE_SIZE = 200  # get_trackings: "limit ... (Default: 100, Max: 200)"
CODES_PER_REQUEST = 50  # get_trackings: tracking_numbers "Supports up to 50 tracking numbers"
ALREADY_EXISTS = "4003"  # meta.code of a create for a number (and slug) AfterShip already tracks
USER_AGENT = "lastmile-aftership/1"

# Our carrier names -> AfterShip courier slugs. The SDK's get_trackings docstring gives "dhl,ups,usps"
# as slug examples; "fedex" is AfterShip's FedEx slug. "DHL" means DHL Express ("dhl"); DHL Paket in
# Germany has a slug of its own and would need its own carrier name here.
CARRIER_SLUGS = {"usps": "usps", "ups": "ups", "fedex": "fedex", "dhl": "dhl"}


def aftership_slug(carrier: Any) -> str | None:
    """The AfterShip slug for one of our carrier names; None lets AfterShip detect the courier.

    A carrier missing from CARRIER_SLUGS is sent lower-cased with spaces as hyphens ("Royal Mail" ->
    "royal-mail"), which is how AfterShip spells its slugs; a wrong one is refused (4010) for that code only.
    """
    name = str(carrier or "").strip()
    if not name:
        return None
    key = name.lower().replace(" ", "")
    return CARRIER_SLUGS.get(key) or "-".join(name.lower().split())


@dataclass(frozen=True)
class AfterShipConfig:
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0  # seconds, for connecting and for each read (the SDK's default too)
    max_attempts: int = 5
    max_wait: float = 60.0  # cap on one Retry-After or backoff wait

    def __post_init__(self) -> None:
        # A Connection's host often comes without the path ("https://api.aftership.com", a local test
        # server): the version path is part of AfterShip's base URL, so add it rather than call /trackings.
        if urlsplit(self.base_url).path.strip("/") == "":
            object.__setattr__(self, "base_url", f"{self.base_url.rstrip('/')}/tracking/{API_VERSION}")

    def __repr__(self) -> str:  # never print the key
        return (f"AfterShipConfig(base_url={self.base_url!r}, timeout={self.timeout:g}, "
                f"max_attempts={self.max_attempts}, max_wait={self.max_wait:g})")


# ------------------------------------------------------------------------------------------- errors


class AfterShipError(VendorError):
    """A classified AfterShip failure. `code` is AfterShip's meta.code ("4003"), `message` its meta.message."""

    vendor = "aftership"


class AfterShipClientError(AfterShipError, VendorClientError):
    """AfterShip refused the request (4xx other than 429): sending it again will not help."""


class AfterShipUnauthorized(AfterShipClientError, VendorUnauthorized):
    """The API key is wrong, inactive or lacks permission: stop, nothing will work until it is fixed."""


class AfterShipUnavailable(AfterShipError, VendorUnavailable):
    """Rate limiting, 5xx, timeouts or connection failures outlasted every retry: try again later."""


class AfterShipMalformedResponse(AfterShipError, VendorMalformedResponse):
    """The answer was not AfterShip's envelope (broken body, no data, paging that loops)."""


def _meta_fault(response: requests.Response) -> VendorFault:
    """meta.code and meta.message of an error envelope; empty for a body that is not one (an HTML 502)."""
    payload = json_body(response)
    meta = payload.get("meta") if isinstance(payload, dict) else None
    if not isinstance(meta, dict):
        return VendorFault(body=payload)
    code, message = meta.get("code"), meta.get("message")
    return VendorFault(str(code) if code is not None else None, str(message) if message is not None else None,
                       body=payload)


# ------------------------------------------------------------------------------------------- client


class AfterShipClient(TrackingVendorClient):
    """AfterShip's Tracking API with retries that are safe for every call it makes.

    Reads are idempotent and a repeated create is answered 4003 and resolved to the existing tracking,
    so timeouts and dropped connections are retried like 5xx. `sleep` is injectable so tests never wait.
    """

    config: AfterShipConfig
    errors = ErrorFamily(AfterShipClientError, AfterShipUnauthorized, AfterShipUnavailable,
                         AfterShipMalformedResponse)
    user_agent = USER_AGENT
    vendor = "aftership"
    log = log

    def __init__(self, config: AfterShipConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(config, sleep)
        self.session.headers["as-api-key"] = config.api_key

    def __enter__(self) -> AfterShipClient:
        return self

    def _fault(self, response: requests.Response) -> VendorFault:
        return _meta_fault(response)


    # -- endpoints

    def create_tracking(self, tracking_number: str, slug: str | None = None) -> dict[str, Any]:
        """POST /trackings; a number AfterShip already tracks (4003) returns the existing tracking.

        Without a slug AfterShip detects the courier from the number.
        """
        body: dict[str, str] = {"tracking_number": tracking_number}
        if slug:
            body["slug"] = slug
        try:
            created = self._request("POST", "/trackings", body=body)
        except AfterShipClientError as err:
            if err.code != ALREADY_EXISTS:
                raise
            return self._existing(tracking_number, slug, err)
        return self._tracking(created, "POST", "/trackings")

    def get_tracking(self, tracking_id: str) -> dict[str, Any]:
        """GET /trackings/{id}."""
        path = f"/trackings/{tracking_id}"
        return self._tracking(self._request("GET", path), "GET", path)

    def list_trackings(self, tracking_numbers: list[str] | None = None, slug: str | None = None,
                       limit: int = MAX_PAGE_SIZE, **filters: str) -> Iterator[dict[str, Any]]:
        """Every tracking matching the filters, following pagination.next_cursor while has_next_page.

        `filters` are passed as they are (``updated_at_min``, ``tag``, ... as the API names them).
        """
        params: dict[str, Any] = {"limit": max(1, min(int(limit), MAX_PAGE_SIZE)), **filters}
        if tracking_numbers:
            params["tracking_numbers"] = ",".join(tracking_numbers)
        if slug:
            params["slug"] = slug
        where = "GET /trackings"
        seen: set[str] = set()
        while True:
            data = _data(self._request("GET", "/trackings", params=params), where, "/trackings")
            trackings = data.get("trackings")
            pagination = data.get("pagination") or {}
            if (not isinstance(trackings, list) or not all(isinstance(t, dict) for t in trackings)
                    or not isinstance(pagination, dict)):
                raise AfterShipMalformedResponse(f"{where}: the answer has no list of trackings", path="/trackings")
            yield from trackings
            if not pagination.get("has_next_page"):
                return
            cursor = pagination.get("next_cursor")
            if not isinstance(cursor, str) or not cursor or cursor in seen:
                # Without a fresh cursor the next request would return the same page forever.
                why = "a cursor already followed" if cursor in seen else "no cursor"
                raise AfterShipMalformedResponse(f"{where}: has_next_page is true but the page gives {why}",
                                                 path="/trackings")
            seen.add(cursor)
            params["cursor"] = cursor

    # -- TrackingSource hooks (the loop is TrackingVendorClient.trackers_for)

    def _codes_per_request(self) -> int:
        return CODES_PER_REQUEST

    def _list_for_codes(self, codes: list[str]) -> Iterable[dict[str, Any]]:
        return self.list_trackings(tracking_numbers=codes)

    def _code_of(self, tracker: dict[str, Any]) -> str:
        return str(tracker.get("tracking_number") or "")

    def _updated_since(self, since: datetime) -> Iterable[dict[str, Any]]:
        # get_trackings' updated_at_min: "Start date and time of trackings updated".
        return self.list_trackings(updated_at_min=since.astimezone(UTC).isoformat(timespec="seconds"))

    def _fits(self, shipment: dict[str, Any], tracker: dict[str, Any]) -> bool:
        wanted = aftership_slug(shipment.get("carrier"))
        return not wanted or not tracker.get("slug") or wanted == str(tracker["slug"]).lower()

    def _carrier_key(self, carrier: Any) -> str | None:
        return aftership_slug(carrier)

    def _register(self, code: str, carrier: str | None) -> dict[str, Any]:
        return self.create_tracking(code, carrier)

    # -- plumbing

    def _existing(self, tracking_number: str, slug: str | None, err: AfterShipClientError) -> dict[str, Any]:
        """The tracking a 4003 refers to: by the id AfterShip put in the error's data, else by listing."""
        data = err.body.get("data") if isinstance(err.body, dict) else None
        tracking_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(tracking_id, str) and tracking_id:
            return self.get_tracking(tracking_id)
        for tracking in self.list_trackings(tracking_numbers=[tracking_number], slug=slug):
            if tracking.get("tracking_number") == tracking_number and tracking.get("id"):
                return tracking
        raise err  # AfterShip says it exists but cannot show it: leave it for the next run

    def _tracking(self, payload: Any, method: str, path: str) -> dict[str, Any]:
        tracking = _data(payload, f"{method} {path}", path)
        if not tracking.get("id"):
            raise AfterShipMalformedResponse(f"{method} {path}: the answer is not a Tracking", path=path)
        return tracking


def _data(payload: Any, where: str, path: str) -> dict[str, Any]:
    """The ``data`` object of AfterShip's envelope."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise AfterShipMalformedResponse(f"{where}: the answer has no data object", path=path)
    return data
