"""One retrying JSON-over-HTTP layer for every tracking vendor client (EasyPost, AfterShip).

What is shared, so that each client only says what is particular to its vendor (auth, where the
error message sits in an error body, how a page continues):

- one pooled `requests.Session` with urllib3's own retries off (ours are classified and honour
  Retry-After; urllib3's would hide them),
- `_request`: timeouts, then the shared retry policy (core/retry.py, tenacity): 429 waits what the
  vendor asked (Retry-After, seconds or an HTTP date; else X-RateLimit-Reset), 5xx / timeouts /
  refused connections back off exponentially with full jitter, capped, no wait after the last
  attempt; 4xx other than 429 raised at once with the vendor's own message,
  401/403 as "unauthorized", a 2xx whose body is not JSON as "malformed",
- the error classes, as one family per vendor (`ErrorFamily`) so that callers can catch either the
  vendor's own classes (`EasyPostUnavailable`) or every vendor's (`VendorUnavailable`),
- `TrackingVendorClient.trackers_for`, the TrackingSource loop: list the codes the vendor already
  tracks (in chunks), match them to shipments by code and carrier, register the rest, skip a code the
  vendor refuses, stop on a wrong key.

Every call the clients make is safe to repeat (reads, and creates the vendor de-duplicates), which is
why timeouts and dropped connections are retried like 5xx. Errors name the method and URL path only:
never the query string (tracking codes) and never the key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, ClassVar, Protocol, TypeVar

import requests
from requests.adapters import HTTPAdapter

from lastmile.core.retry import GaveUp, RetryLater, call_with_retries, wait_hint

T = TypeVar("T")

# ------------------------------------------------------------------------------------------- errors


class VendorError(Exception):
    """A classified vendor failure. `message` is the vendor's own message when it sent one.

    `str(err)` says which call failed (method and URL path) and why; it never contains the API key.
    """

    vendor: ClassVar[str] = "vendor"

    def __init__(self, detail: str, *, status: int | None = None, code: str | None = None,
                 message: str | None = None, path: str | None = None,
                 errors: list[Any] | None = None, body: Any = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.message = message if message is not None else detail
        self.path = path
        self.errors = errors or []
        self.body = body  # the decoded error body, when the caller needs more than code and message


class VendorClientError(VendorError):
    """The vendor refused the request (4xx other than 429): sending it again will not help."""


class VendorUnauthorized(VendorClientError):
    """The API key is wrong, inactive or lacks permission: stop, nothing will work until it is fixed."""


class VendorUnavailable(VendorError):
    """Rate limiting, 5xx, timeouts or connection failures outlasted every retry: try again later."""


class VendorMalformedResponse(VendorError):
    """The answer was not the JSON the vendor documents (broken body, wrong shape, paging that loops)."""


@dataclass(frozen=True)
class ErrorFamily:
    """The classes one vendor's client raises; each is a subclass of the shared class of its kind."""

    client: type[VendorClientError]
    unauthorized: type[VendorUnauthorized]
    unavailable: type[VendorUnavailable]
    malformed: type[VendorMalformedResponse]


@dataclass(frozen=True)
class VendorFault:
    """What a vendor's error body says: its code, its message, and field errors if any."""

    code: str | None = None
    message: str | None = None
    errors: list[Any] = field(default_factory=list)
    body: Any = None  # the decoded error body, for callers that need more than code and message


# ------------------------------------------------------------------------------------------ helpers


def json_body(response: requests.Response) -> Any:
    """The decoded body, or None when it is not JSON (5xx pages from a load balancer often are HTML)."""
    try:
        return response.json()
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------- client


class HTTPSettings(Protocol):
    """What the retry loop reads from a vendor's config (EasyPostConfig, AfterShipConfig)."""

    @property
    def base_url(self) -> str: ...
    @property
    def timeout(self) -> float: ...  # seconds, for connecting and for each read
    @property
    def max_attempts(self) -> int: ...
    @property
    def max_wait(self) -> float: ...  # cap on one Retry-After or backoff wait


class VendorHTTPClient:
    """The shared session and retry loop. Subclasses set `errors` and `user_agent` and read faults.

    `sleep` is injectable so tests never wait.
    """

    errors: ClassVar[ErrorFamily]
    user_agent: ClassVar[str] = "lastmile/1"

    def __init__(self, config: HTTPSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.sleep = sleep
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": self.user_agent})
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- vendor hooks

    def _fault(self, response: requests.Response) -> VendorFault:
        """The vendor's error code and message from a non-2xx answer; empty when there are none."""
        return VendorFault()


    # -- the loop

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                 body: dict[str, Any] | None = None) -> Any:
        """One call under the shared retry policy (core/retry.py); returns the decoded JSON of a 2xx."""
        url = self.config.base_url.rstrip("/") + path
        where = f"{method} {path}"
        faults: list[VendorFault] = []

        def attempt() -> Any:
            try:
                response = self.session.request(method, url, params=params, json=body, timeout=self.config.timeout)
            except requests.Timeout:
                raise RetryLater(f"no answer within {self.config.timeout:g} s") from None
            except requests.ConnectionError as err:
                # The exception text holds the URL only (never the auth header).
                raise RetryLater(f"connection failed ({type(err).__name__})") from None
            status = response.status_code
            if 200 <= status < 300:
                return self._decode(response, where, path)
            fault = self._fault(response)
            faults.append(fault)
            last = (f"HTTP {status}" + (f" {fault.code}" if fault.code else "")
                    + (f": {fault.message}" if fault.message else ""))
            if status == 429:
                raise RetryLater(last, wait_hint(response.headers), status)
            if status >= 500:
                raise RetryLater(last, None, status)
            kind = self.errors.unauthorized if status in (401, 403) else self.errors.client
            raise kind(f"{where}: {last}", status=status, code=fault.code, message=fault.message,
                       path=path, errors=fault.errors, body=fault.body)

        try:
            return call_with_retries(attempt, max_attempts=self.config.max_attempts, max_wait=self.config.max_wait,
                                     sleep=self.sleep)
        except GaveUp as gave_up:
            fault = faults[-1] if faults and gave_up.last.status is not None else VendorFault()
            raise self.errors.unavailable(f"{where}: {gave_up}", status=gave_up.last.status, code=fault.code,
                                          message=fault.message, path=path) from None

    def _decode(self, response: requests.Response, where: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self.errors.malformed(
                f"{where}: HTTP {response.status_code} with a body that is not valid JSON "
                f"({len(response.content)} bytes, content-type {response.headers.get('Content-Type')!r})",
                status=response.status_code, path=path) from None



# ----------------------------------------------------------------------------------- TrackingSource


def _by_code(shipments: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Shipments by their tracking code (those without one left out)."""
    wanted: dict[str, list[dict[str, Any]]] = {}
    for shipment in shipments:
        code = str(shipment.get("tracking_code") or "").strip()
        if code:
            wanted.setdefault(code, []).append(shipment)
    return wanted


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


class TrackingVendorClient(VendorHTTPClient):
    """A vendor client that can stand in for the simulator as a `lastmile.carriers.tracking.TrackingSource`.

    Subclasses say how to list trackers for some codes, how to read a tracker's code, whether a tracker
    fits a shipment's carrier, how a shipment's carrier is named to the vendor, and how to register one.
    """

    vendor: ClassVar[str]
    log: ClassVar[logging.Logger]

    def _codes_per_request(self) -> int:
        raise NotImplementedError

    def _list_for_codes(self, codes: list[str]) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def _code_of(self, tracker: dict[str, Any]) -> str:
        raise NotImplementedError

    def _fits(self, shipment: dict[str, Any], tracker: dict[str, Any]) -> bool:
        raise NotImplementedError

    def _carrier_key(self, carrier: Any) -> str | None:
        """The shipment's carrier as the vendor's create call wants it; None lets the vendor detect it."""
        return str(carrier) if carrier else None

    def _register(self, code: str, carrier: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def trackers_for(self, shipments: list[dict[str, Any]],
                     as_of: datetime | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(shipment_id, tracker) for each shipment; codes the vendor does not know yet are registered.

        `as_of` is accepted for the TrackingSource protocol; a live API only knows "now". Shipments are
        dicts with shipment_id, tracking_code and carrier. A tracker is matched on its code and, when
        both sides name one, its carrier: carriers recycle codes.
        """
        wanted = _by_code(shipments)
        matched: set[tuple[str, str]] = set()  # (shipment_id, code) already answered
        registered = 0
        for chunk in chunks(sorted(wanted), self._codes_per_request()):
            yield from self._matches(self._list_for_codes(chunk), wanted, matched)
        listed = len(matched)
        for code, group in sorted(wanted.items()):
            for carrier, members in self._unmatched_by_carrier(group, code, matched):
                try:
                    tracker = self._register(code, carrier)
                except VendorUnauthorized:
                    raise
                except VendorClientError as err:
                    # One code the vendor refuses (e.g. not a valid code for that carrier) must not
                    # stop every other shipment; the next fetch that asks about every parcel asks again.
                    self.log.warning("%s: could not register tracking code %s: HTTP %s %s",
                                     self.vendor, code, err.status, err.code or "")
                    continue
                registered += 1
                self.log.info("%s: registered tracking code %s as %s", self.vendor, code, tracker.get("id"))
                for shipment in members:
                    matched.add((str(shipment["shipment_id"]), code))
                    yield str(shipment["shipment_id"]), tracker
        self.log.info("%s: %d trackers from the list, %d newly registered, %d shipments asked",
                      self.vendor, listed, registered, len(shipments))

    def trackers(self, shipments: list[dict[str, Any]],
                 as_of: datetime) -> Iterator[tuple[str, dict[str, Any]]]:
        """lastmile.carriers.tracking.TrackingSource.trackers: the client can stand in for the simulator."""
        return self.trackers_for(shipments, as_of)

    def _updated_since(self, since: datetime) -> Iterable[dict[str, Any]]:
        """Every tracker the vendor updated at or after `since`, newest first (vendors that list
        changes: carriers.accounts.LISTS_CHANGES)."""
        raise NotImplementedError

    def changed_trackers(self, since: datetime, shipments_with: Callable[[list[str]], list[dict[str, Any]]],
                         skip: set[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """lastmile.carriers.tracking.ChangeListing.changed_trackers: (shipment_id, tracker) for the
        trackers updated since `since`, matched like `trackers_for` to the shipments `shipments_with`
        returns for their codes (those we still ask about); shipments in `skip` are already answered."""
        answered = skip or set()
        matched: set[tuple[str, str]] = set()
        for page in chunks(self._updated_since(since), 500):  # trackers matched per lookup
            found = shipments_with(sorted({self._code_of(t) for t in page} - {""}))
            yield from self._matches(page, _by_code(s for s in found if str(s["shipment_id"]) not in answered),
                                     matched)
        self.log.info("%s: %d trackers updated since the last fetch matched a parcel in flight",
                      self.vendor, len(matched))

    def _matches(self, trackers: Iterable[dict[str, Any]], wanted: dict[str, list[dict[str, Any]]],
                 matched: set[tuple[str, str]]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(shipment_id, tracker) for each wanted shipment a tracker answers, matched on its code and,
        when both sides name one, its carrier (carriers recycle codes); `matched` keeps the
        (shipment_id, code) pairs answered."""
        for tracker in trackers:
            code = self._code_of(tracker)
            for shipment in wanted.get(code, []):
                key = (str(shipment["shipment_id"]), code)
                # Lists come newest first: the first tracker that fits a shipment is its current one.
                if key in matched or not self._fits(shipment, tracker):
                    continue
                matched.add(key)
                yield key[0], tracker

    def _unmatched_by_carrier(self, group: Iterable[dict[str, Any]], code: str, matched: set[tuple[str, str]]
                              ) -> Iterator[tuple[str | None, list[dict[str, Any]]]]:
        """Unmatched shipments of one code, grouped by carrier, so each (code, carrier) is created once."""
        groups: dict[str | None, list[dict[str, Any]]] = {}
        for shipment in group:
            if (str(shipment["shipment_id"]), code) in matched:
                continue
            groups.setdefault(self._carrier_key(shipment.get("carrier")), []).append(shipment)
        yield from groups.items()
