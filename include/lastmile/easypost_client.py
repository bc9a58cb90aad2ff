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

Nothing here logs more than tracker ids, tracking codes and EasyPost's error codes.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

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


class EasyPostError(Exception):
    """A classified EasyPost failure. `message` is EasyPost's own message when it sent one.

    `str(err)` says which call failed (method and URL path, no query string: that holds tracking codes
    only, but the path is enough to find the call) and why; it never contains the API key.
    """

    def __init__(self, detail: str, *, status: int | None = None, code: str | None = None,
                 message: str | None = None, path: str | None = None,
                 errors: list[Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.message = message if message is not None else detail
        self.path = path
        self.errors = errors or []


class EasyPostClientError(EasyPostError):
    """EasyPost refused the request (4xx other than 429): sending it again will not help."""


class EasyPostUnauthorized(EasyPostClientError):
    """The API key is wrong, inactive or lacks permission: stop, nothing will work until it is fixed."""


class EasyPostUnavailable(EasyPostError):
    """Rate limiting, 5xx, timeouts or connection failures outlasted every retry: try again later."""


class EasyPostMalformedResponse(EasyPostError):
    """The answer was not the JSON EasyPost documents (broken body, wrong shape, paging that loops)."""


def _vendor_error(response: requests.Response) -> tuple[str | None, str | None, list[Any]]:
    """(code, message, errors) from EasyPost's error envelope; (None, None, []) when there is none.

    5xx answers from a load balancer are often HTML, so a body that is not the envelope is normal here.
    """
    try:
        payload = response.json()
    except ValueError:
        return None, None, []
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):  # older answers carried a bare string
        return None, error, []
    if not isinstance(error, dict):
        return None, None, []
    errors = error.get("errors")
    message = error.get("message")
    code = error.get("code")
    return (str(code) if code is not None else None, str(message) if message is not None else None,
            list(errors) if isinstance(errors, list) else [])


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 allows both)."""
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ------------------------------------------------------------------------------------------- client


class EasyPostClient:
    """EasyPost's Trackers API with retries that are safe for every call it makes.

    Every call here is idempotent on EasyPost's side (reads, and creates that EasyPost de-duplicates), so
    timeouts and dropped connections are retried like 5xx. `sleep` is injectable so tests never wait.
    """

    def __init__(self, config: EasyPostConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.sleep = sleep
        self.session = requests.Session()
        # Basic auth, key as username, empty password: what the docs prescribe.
        self.session.auth = (config.api_key, "")
        self.session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        # Retries are ours (classified, with Retry-After); urllib3's own retries would hide them.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"EasyPostClient({self.config!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> EasyPostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # -- TrackingSource

    def trackers_for(self, shipments: list[dict[str, Any]],
                     as_of: datetime | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(shipment_id, Tracker) for each shipment; codes EasyPost does not know yet are registered.

        `as_of` is accepted for the TrackingSource protocol; a live API only knows "now". Shipments are
        dicts with shipment_id, tracking_code and carrier. A tracker is matched on its code and, when
        both sides name one, its carrier: EasyPost warns that carriers recycle codes.
        """
        wanted: dict[str, list[dict[str, Any]]] = {}
        for shipment in shipments:
            code = str(shipment.get("tracking_code") or "").strip()
            if code:
                wanted.setdefault(code, []).append(shipment)
        matched: set[tuple[str, str]] = set()  # (shipment_id, code) already answered
        listed = registered = 0
        for chunk in _chunks(sorted(wanted), CODES_PER_REQUEST):
            for tracker in self.list_trackers(tracking_codes=chunk):
                code = str(tracker.get("tracking_code") or "")
                for shipment in wanted.get(code, []):
                    key = (str(shipment["shipment_id"]), code)
                    # Newest first: the first tracker that fits a shipment is its current one.
                    if key in matched or not _same_carrier(shipment.get("carrier"), tracker.get("carrier")):
                        continue
                    matched.add(key)
                    listed += 1
                    yield key[0], tracker
        for code, group in sorted(wanted.items()):
            for carrier, members in _by_carrier(group, code, matched):
                try:
                    tracker = self.create_tracker(code, carrier)
                except EasyPostUnauthorized:
                    raise
                except EasyPostClientError as err:
                    # One code EasyPost refuses (e.g. not a valid code for that carrier) must not
                    # stop every other shipment; it is polled again next run.
                    log.warning("easypost: could not register tracking code %s: HTTP %s %s",
                                code, err.status, err.code or "")
                    continue
                registered += 1
                log.info("easypost: registered tracking code %s as %s", code, tracker.get("id"))
                for shipment in members:
                    matched.add((str(shipment["shipment_id"]), code))
                    yield str(shipment["shipment_id"]), tracker
        log.info("easypost: %d trackers from the list, %d newly registered, %d shipments asked",
                 listed, registered, len(shipments))

    def trackers(self, shipments: list[dict[str, Any]],
                 as_of: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """lastmile.sources.TrackingSource.trackers: the client can stand in for the simulator."""
        return self.trackers_for(shipments, as_of)

    # -- plumbing

    def _tracker(self, payload: Any, method: str, path: str) -> dict[str, Any]:
        if not isinstance(payload, dict) or not payload.get("id"):
            raise EasyPostMalformedResponse(f"{method} {path}: the answer is not a Tracker", path=path)
        return payload

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None) -> Any:
        """One call with retries; returns the decoded JSON body of a 2xx answer."""
        url = self.config.base_url.rstrip("/") + path
        where = f"{method} {path}"
        last = "no attempt"
        last_status: int | None = None
        last_code: str | None = None
        last_message: str | None = None
        attempts = max(1, self.config.max_attempts)
        for attempt in range(1, attempts + 1):
            wait: float
            try:
                response = self.session.request(method, url, params=params, json=body,
                                                timeout=self.config.timeout)
            except requests.Timeout:
                last, last_status = f"no answer within {self.config.timeout:g} s", None
                wait = self._backoff(attempt)
            except requests.ConnectionError as err:
                # The exception text holds the URL only (never the Authorization header).
                last, last_status = f"connection failed ({type(err).__name__})", None
                wait = self._backoff(attempt)
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._decode(response, where, path)
                code, message, errors = _vendor_error(response)
                last_status, last_code, last_message = status, code, message
                last = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
                if status == 429:
                    retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
                    wait = retry_after if retry_after is not None else self._backoff(attempt)
                elif status >= 500:
                    wait = self._backoff(attempt)
                elif status in (401, 403):
                    raise EasyPostUnauthorized(f"{where}: {last}", status=status, code=code, message=message,
                                               path=path, errors=errors)
                else:
                    raise EasyPostClientError(f"{where}: {last}", status=status, code=code, message=message,
                                              path=path, errors=errors)
            if attempt < attempts:  # no point waiting after the last attempt
                self.sleep(min(max(wait, 0.0), self.config.max_wait))
        raise EasyPostUnavailable(f"{where}: gave up after {attempts} attempts; last: {last}",
                                  status=last_status, code=last_code, message=last_message, path=path)

    @staticmethod
    def _decode(response: requests.Response, where: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise EasyPostMalformedResponse(
                f"{where}: HTTP {response.status_code} with a body that is not valid JSON "
                f"({len(response.content)} bytes, content-type {response.headers.get('Content-Type')!r})",
                status=response.status_code, path=path) from None

    def _backoff(self, attempt: int) -> float:
        """Capped exponential backoff with full jitter: spreads retries of many workers apart."""
        return random.uniform(0, min(self.config.max_wait, 0.5 * 2 ** (attempt - 1)))


def _same_carrier(wanted: Any, actual: Any) -> bool:
    """Carrier names compare loosely ("USPS" / "usps"); a missing name on either side matches."""
    if not wanted or not actual:
        return True
    return str(wanted).replace(" ", "").lower() == str(actual).replace(" ", "").lower()


def _by_carrier(group: Iterable[dict[str, Any]], code: str,
                matched: set[tuple[str, str]]) -> Iterator[tuple[str | None, list[dict[str, Any]]]]:
    """Unmatched shipments of one code, grouped by carrier, so each (code, carrier) is created once."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for shipment in group:
        if (str(shipment["shipment_id"]), code) in matched:
            continue
        carrier = shipment.get("carrier") or None
        groups.setdefault(str(carrier) if carrier else None, []).append(shipment)
    yield from groups.items()
