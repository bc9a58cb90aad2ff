"""EasyPost Trackers API over one pooled requests.Session: create, retrieve, list, and a TrackingSource.

What the API looks like (checked against EasyPost's documentation and its official client, not guessed):

- Auth is HTTP Basic with the API key as the username and no password (docs.easypost.com/docs/
  authentication; the docs' curl examples use ``-u "$EASYPOST_API_KEY":``).
- ``GET /v2/trackers`` answers ``{"trackers": [...], "has_more": bool}``, newest first. The next page is
  asked for with ``before_id`` = the id of the last tracker of the previous page, until ``has_more`` is
  false; ``page_size`` is at most 100 (docs.easypost.com/docs/pagination). The official Python client
  sends the code filter as repeated ``tracking_codes[]`` parameters (Rails array encoding), so do we.
- ``POST /v2/trackers`` with ``{"tracker": {"tracking_code", "carrier"}}``. EasyPost returns the original
  tracker for a duplicate (same code and carrier), so re-sending a create after a timeout is harmless.
- Errors are ``{"error": {"code", "message", "errors": [...]}}`` where ``errors`` holds field-error
  objects or plain strings (docs.easypost.com/docs/errors).

Failures are classified by what the caller should do:

- `EasyPostClientError` (4xx other than 429): retrying will not help; carries EasyPost's own message.
  `EasyPostUnauthorized` (401/403) is the one that means "fix the key", so a run stops at once.
- `EasyPostUnavailable`: rate limiting, 5xx, timeouts or no connection outlasted the retries: try later.
- `EasyPostMalformedResponse`: EasyPost (or something in between) answered with a body that is not the
  JSON we expect; the error names the method and URL path, never the key.

The session, retry loop, error classification and the TrackingSource loop are `lastmile.carriers.vendor_http`'s,
shared with the AfterShip client; this module says what is EasyPost's own. Nothing here logs more than
tracker ids, tracking codes and EasyPost's error codes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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

DEFAULT_BASE_URL = "https://api.easypost.com/v2"
MAX_PAGE_SIZE = 100  # "We limit the number of records per page to 100" (EasyPost pagination docs)
CODES_PER_REQUEST = 50  # tracking codes per list request: keeps the query string well under URL limits
USER_AGENT = "lastmile-easypost/1"


@dataclass(frozen=True)
class EasyPostConfig:
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0  # seconds, for connecting and for each read
    max_attempts: int = 5
    max_wait: float = 60.0  # cap on one Retry-After or backoff wait

    def __repr__(self) -> str:  # never print the key
        return (f"EasyPostConfig(base_url={self.base_url!r}, timeout={self.timeout:g}, "
                f"max_attempts={self.max_attempts}, max_wait={self.max_wait:g})")


# ------------------------------------------------------------------------------------------- errors


class EasyPostError(VendorError):
    """A classified EasyPost failure. `message` is EasyPost's own message when it sent one."""

    vendor = "easypost"


class EasyPostClientError(EasyPostError, VendorClientError):
    """EasyPost refused the request (4xx other than 429): sending it again will not help."""


class EasyPostUnauthorized(EasyPostClientError, VendorUnauthorized):
    """The API key is wrong, inactive or lacks permission: stop, nothing will work until it is fixed."""


class EasyPostUnavailable(EasyPostError, VendorUnavailable):
    """Rate limiting, 5xx, timeouts or connection failures outlasted every retry: try again later."""


class EasyPostMalformedResponse(EasyPostError, VendorMalformedResponse):
    """The answer was not the JSON EasyPost documents (broken body, wrong shape, paging that loops)."""


def _vendor_error(response: requests.Response) -> VendorFault:
    """Code, message and field errors from EasyPost's error envelope; empty when there is none.

    5xx answers from a load balancer are often HTML, so a body that is not the envelope is normal here.
    """
    payload = json_body(response)
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):  # older answers carried a bare string
        return VendorFault(message=error, body=payload)
    if not isinstance(error, dict):
        return VendorFault(body=payload)
    errors = error.get("errors")
    message = error.get("message")
    code = error.get("code")
    return VendorFault(str(code) if code is not None else None, str(message) if message is not None else None,
                       list(errors) if isinstance(errors, list) else [], payload)


# ------------------------------------------------------------------------------------------- client


class EasyPostClient(TrackingVendorClient):
    """EasyPost's Trackers API with retries that are safe for every call it makes.

    Every call here is idempotent on EasyPost's side (reads, and creates that EasyPost de-duplicates), so
    timeouts and dropped connections are retried like 5xx. `sleep` is injectable so tests never wait.
    """

    config: EasyPostConfig
    errors = ErrorFamily(EasyPostClientError, EasyPostUnauthorized, EasyPostUnavailable, EasyPostMalformedResponse)
    user_agent = USER_AGENT
    vendor = "easypost"
    log = log

    def __init__(self, config: EasyPostConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(config, sleep)
        # Basic auth, key as username, empty password: what the docs prescribe.
        self.session.auth = (config.api_key, "")

    def __enter__(self) -> EasyPostClient:
        return self

    def _fault(self, response: requests.Response) -> VendorFault:
        return _vendor_error(response)

    # -- endpoints

    def create_tracker(self, tracking_code: str, carrier: str | None = None) -> dict[str, Any]:
        """POST /trackers. Without a carrier EasyPost detects it from the code."""
        tracker: dict[str, str] = {"tracking_code": tracking_code}
        if carrier:
            tracker["carrier"] = carrier
        return self._tracker(self._request("POST", "/trackers", body={"tracker": tracker}), "POST", "/trackers")

    def retrieve(self, tracker_id: str) -> dict[str, Any]:
        """GET /trackers/{id}."""
        path = f"/trackers/{tracker_id}"
        return self._tracker(self._request("GET", path), "GET", path)

    def list_trackers(self, tracking_codes: list[str] | None = None, carrier: str | None = None,
                      page_size: int = MAX_PAGE_SIZE, start_datetime: datetime | str | None = None,
                      end_datetime: datetime | str | None = None) -> Iterator[dict[str, Any]]:
        """Every tracker matching the filters, newest first, following before_id while has_more."""
        params: dict[str, Any] = {"page_size": max(1, min(int(page_size), MAX_PAGE_SIZE))}
        if tracking_codes:
            params["tracking_codes[]"] = list(tracking_codes)
        if carrier:
            params["carrier"] = carrier
        for name, value in (("start_datetime", start_datetime), ("end_datetime", end_datetime)):
            if value is not None:
                params[name] = value.isoformat() if isinstance(value, datetime) else value
        seen_before: set[str] = set()
        while True:
            page = self._request("GET", "/trackers", params=params)
            trackers = page.get("trackers") if isinstance(page, dict) else None
            if not isinstance(trackers, list) or not all(isinstance(t, dict) for t in trackers):
                raise EasyPostMalformedResponse("GET /trackers: the answer has no list of trackers",
                                                path="/trackers")
            yield from trackers
            if not page.get("has_more") or not trackers:
                return
            last_id = trackers[-1].get("id")
            if not isinstance(last_id, str) or not last_id or last_id in seen_before:
                # Without a fresh cursor the next request would return the same page forever.
                raise EasyPostMalformedResponse(
                    f"GET /trackers: has_more is true but the page ends with an unusable id {last_id!r}",
                    path="/trackers")
            seen_before.add(last_id)
            params["before_id"] = last_id

    # -- TrackingSource hooks (the loop is TrackingVendorClient.trackers_for)

    def _codes_per_request(self) -> int:
        return CODES_PER_REQUEST

    def _list_for_codes(self, codes: list[str]) -> Iterable[dict[str, Any]]:
        return self.list_trackers(tracking_codes=codes)

    def _code_of(self, tracker: dict[str, Any]) -> str:
        return str(tracker.get("tracking_code") or "")

    def _fits(self, shipment: dict[str, Any], tracker: dict[str, Any]) -> bool:
        return _same_carrier(shipment.get("carrier"), tracker.get("carrier"))

    def _register(self, code: str, carrier: str | None) -> dict[str, Any]:
        return self.create_tracker(code, carrier)

    # -- plumbing

    def _tracker(self, payload: Any, method: str, path: str) -> dict[str, Any]:
        if not isinstance(payload, dict) or not payload.get("id"):
            raise EasyPostMalformedResponse(f"{method} {path}: the answer is not a Tracker", path=path)
        return payload


def _same_carrier(wanted: Any, actual: Any) -> bool:
    """Carrier names compare loosely ("USPS" / "usps"); a missing name on either side matches."""
    if not wanted or not actual:
        return True
    return str(wanted).replace(" ", "").lower() == str(actual).replace(" ", "").lower()
