"""A local EasyPost Trackers API for tests: real HTTP, EasyPost's recorded shapes, scriptable faults.

The canonical Tracker is a response body recorded from EasyPost itself (the VCR cassettes in
``../shared/fixtures/easypost``, from EasyPost/easypost-python); every tracker this server makes is a
copy of it with a new id, code, carrier and status. Endpoints, as EasyPost documents them:

* ``POST /v2/trackers`` -- body ``{"tracker": {"tracking_code", "carrier"?}}``; 201 with the new
  Tracker (and ``Location``), or 200 with the original for a duplicate code+carrier ("duplicate requests
  by the same User will return the original Tracker"); 422 ``PARAMETER.REQUIRED`` without a code.
* ``GET /v2/trackers/{id}`` -- the Tracker, or 404.
* ``GET /v2/trackers`` -- ``{"trackers": [...], "has_more": bool}``, newest first; ``page_size``
  (default 20, at most 100), ``before_id``/``after_id`` cursors, ``tracking_codes[]`` (the official
  Python client's encoding; ``tracking_codes`` repeated or comma-separated and ``tracking_code`` work
  too), ``carrier``, ``start_datetime``/``end_datetime`` on ``created_at``.
* ``POST /v2/trackers/batch`` -- ``{"tracking_codes": [...]}`` -> ``{"trackers": [...], "has_more":
  false}``, as recorded in ``test_tracker_retrieve_batch.yaml``.

EasyPost's side of its webhook too: ``add_scan(code, ...)`` moves a parcel and ``push(url, secret, code)``
POSTs the ``tracker.updated`` Event EasyPost would send (the recorded ``webhook_event_body.json``
with the tracker as its result), signed ``X-Hmac-Signature: hmac-sha256-hex=...``.

Auth is HTTP Basic with the API key as username and an empty password (EasyPost's documented scheme);
``Bearer <key>`` is accepted too because EasyPost's official Python client sends that. Anything else
gets 401 with EasyPost's error envelope ``{"error": {"code", "message", "errors"}}``.

Use::

    with EasyPostServer() as ep:
        ep.add_tracker("EZ4000000004", status="delivered", status_detail="arrived_at_destination")
        ep.script(("429", 2), 500, ("hang", 1.0), "malformed", 422)   # the next five requests
        ...
        assert ep.requests[0].query["page_size"] == ["100"]

Only the envelope of error bodies is documented; the 422 body is the one EasyPost recorded for a
missing parameter, the ``code`` values of 401/404/429/5xx bodies are this server's own.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import yaml

from servers.base import Behaviour, RecordedRequest, ScriptedServer, VendorHandler, parse_behaviour

FIXTURE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "easypost"
CANONICAL_CASSETTE = "test_tracker_retrieve_batch.yaml"  # the newest recording: has fees, delivery_evidence

DEFAULT_PAGE_SIZE = 20  # "most endpoints default to 20" (EasyPost pagination docs)
MAX_PAGE_SIZE = 100  # "We limit the number of records per page to 100"

# The body EasyPost answered for a missing parameter (easypost-python tests/cassettes/test_error.yaml).
PARAMETER_REQUIRED = {"error": {"code": "PARAMETER.REQUIRED", "message": "Missing required parameter.",
                                "errors": [{"field": "tracker.tracking_code", "message": "cannot be blank"}]}}
_MESSAGES = {
    401: ("APIKEY.REQUIRED", "Authentication is required and has failed."),
    403: ("FORBIDDEN", "You do not have permission to perform this action."),
    404: ("NOT_FOUND", "The requested resource could not be found."),
    405: ("METHOD.NOT_ALLOWED", "Method not allowed."),
    429: ("RATE_LIMITED", "Too many requests, please slow down."),
    500: ("INTERNAL_SERVER_ERROR", "An unexpected error occurred."),
    502: ("BAD_GATEWAY", "Bad gateway."),
    503: ("SERVICE_UNAVAILABLE", "Service unavailable, please try again."),
    504: ("GATEWAY_TIMEOUT", "Gateway timeout."),
}
MALFORMED_BODY = b'{"trackers": [{"id": "trk_'  # a 200 cut off mid-body


# -------------------------------------------------------------------------------------- cassettes


@dataclass(frozen=True)
class RecordedExchange:
    cassette: str
    index: int
    method: str
    uri: str
    status: int
    body: Any  # the parsed JSON response body


def recorded_exchanges(fixture_dir: Path = FIXTURE_DIR) -> list[RecordedExchange]:
    """Every request/response pair in the EasyPost cassettes, response bodies parsed."""
    if not fixture_dir.exists():
        raise FileNotFoundError(f"EasyPost cassettes not found in {fixture_dir} (clone the project beside ../shared)")
    found: list[RecordedExchange] = []
    for cassette in sorted(fixture_dir.glob("*.yaml")):
        for index, interaction in enumerate(yaml.safe_load(cassette.read_text())["interactions"]):
            response = interaction["response"]
            found.append(RecordedExchange(cassette.name, index, interaction["request"]["method"],
                                          interaction["request"]["uri"], int(response["status"]["code"]),
                                          json.loads(response["body"]["string"])))
    return found


def recorded_trackers(fixture_dir: Path = FIXTURE_DIR) -> list[tuple[str, dict[str, Any]]]:
    """(where, Tracker) for every Tracker in a recorded response body, single or in a list."""
    out: list[tuple[str, dict[str, Any]]] = []
    for ex in recorded_exchanges(fixture_dir):
        for tracker in ex.body["trackers"] if "trackers" in ex.body else [ex.body]:
            out.append((f"{ex.cassette}#{ex.index}", tracker))
    return out


def canonical_tracker(fixture_dir: Path = FIXTURE_DIR) -> dict[str, Any]:
    """The Tracker EasyPost returned for ``POST /v2/trackers`` in the newest recording."""
    for ex in recorded_exchanges(fixture_dir):
        if ex.cassette == CANONICAL_CASSETTE and ex.method == "POST" and ex.uri.endswith("/v2/trackers"):
            return copy.deepcopy(ex.body)
    raise LookupError(f"no POST /v2/trackers exchange in {CANONICAL_CASSETTE}")


def behaviour(spec: Any) -> Behaviour:
    """One scripted response, as `servers.base.parse_behaviour` reads it; plain ``422`` answers EasyPost's
    recorded PARAMETER.REQUIRED body, ``(422, code, message)`` a 422 with that code and message."""
    return parse_behaviour(spec)


def error_body(status: int, code: str | None = None, message: str | None = None,
               errors: list[Any] | None = None) -> dict[str, Any]:
    """EasyPost's error envelope. A bare 422 is the recorded PARAMETER.REQUIRED answer."""
    if status == 422 and code is None and message is None and errors is None:
        return copy.deepcopy(PARAMETER_REQUIRED)
    default_code, default_message = _MESSAGES.get(status, ("ERROR", "The request failed."))
    return {"error": {"code": code or default_code, "message": message or default_message,
                      "errors": list(errors or [])}}


# ----------------------------------------------------------------------------------------- server



def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(raw: str) -> datetime:
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class EasyPostServer(ScriptedServer):
    """An EasyPost Trackers API look-alike on 127.0.0.1:<random port>, served from a daemon thread."""

    name = "easypost-server"
    malformed_body = MALFORMED_BODY

    def __init__(self, api_key: str | None = None, fixture_dir: Path | str = FIXTURE_DIR,
                 clock_start: datetime | None = None) -> None:
        super().__init__()
        self.api_key = api_key or f"EZTK{secrets.token_hex(16)}"
        self.fixture_dir = Path(fixture_dir)
        self._template = canonical_tracker(self.fixture_dir)  # fail fast when the cassettes are missing
        self._trackers: list[dict[str, Any]] = []  # creation order; listing reverses it
        # created_at advances one second per tracker so that "newest first" is a strict order.
        self._clock = clock_start or datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)

    @property
    def url(self) -> str:
        """The API base, as the client's ``base_url`` expects it (``.../v2``)."""
        return f"http://127.0.0.1:{self.port}/v2"

    # -- scripting

    def script(self, *responses: Any) -> None:
        """Queue behaviours for the next requests (any endpoint), one per request, in order.

        Forced statuses and ``malformed`` answer without looking at auth or body; ``200`` and ``hang``
        run the normal auth and request checks.
        """
        super().script(*responses)

    def error_payload(self, step: Behaviour) -> Any:
        return error_body(step.status, step.code, step.message)

    # -- trackers

    def add_tracker(self, tracking_code: str | None = None, status: str = "in_transit",
                    status_detail: str = "arrived_at_facility", carrier: str = "USPS",
                    message: str | None = None, scanned_at: datetime | None = None,
                    est_delivery_date: str | None = None) -> dict[str, Any]:
        """Add a tracker shaped like the recorded one whose latest scan has this status/status_detail.

        Any status string is accepted, including codes EasyPost has not documented, so tests can see
        what the pipeline does with an unknown one. Returns a copy of the stored tracker.
        """
        with self._lock:
            tracker = self._new_tracker_locked(tracking_code, carrier)
            details = tracker["tracking_details"]
            last = _parse_time(details[-1]["datetime"]) if details else _parse_time(tracker["created_at"])
            when = scanned_at or last + timedelta(hours=6)
            scan = copy.deepcopy(details[-1]) if details else {"object": "TrackingDetail"}
            scan.update({"message": message or f"{status} / {status_detail}", "status": status,
                         "status_detail": status_detail, "datetime": _iso(when), "source": carrier,
                         "description": ""})
            details.append(scan)
            tracker.update({"status": status, "status_detail": status_detail, "updated_at": _iso(when)})
            if est_delivery_date is not None:
                tracker["est_delivery_date"] = est_delivery_date
            return copy.deepcopy(tracker)

    def add_scan(self, tracking_code: str, status: str = "in_transit", status_detail: str = "arrived_at_facility",
                 scanned_at: datetime | None = None, message: str | None = None,
                 est_delivery_date: str | None = None) -> dict[str, Any]:
        """A new scan on the newest tracker with this code (the carrier moved the parcel); returns a copy."""
        with self._lock:
            tracker = next(t for t in reversed(self._trackers) if t["tracking_code"] == tracking_code)
            details = tracker["tracking_details"]
            when = scanned_at or _parse_time(details[-1]["datetime"]) + timedelta(hours=6)
            scan = copy.deepcopy(details[-1]) if details else {"object": "TrackingDetail"}
            scan.update({"message": message or f"{status} / {status_detail}", "status": status,
                         "status_detail": status_detail, "datetime": _iso(when), "description": ""})
            details.append(scan)
            tracker.update({"status": status, "status_detail": status_detail, "updated_at": _iso(when)})
            if est_delivery_date is not None:
                tracker["est_delivery_date"] = est_delivery_date
            return copy.deepcopy(tracker)

    def push(self, url: str, webhook_secret: str, tracking_code: str, description: str = "tracker.updated",
             signature: str | None = None) -> requests.Response:
        """Deliver the webhook EasyPost sends when this code's tracker changes: an Event shaped like the
        recorded one (``webhook_event_body.json``) with the tracker as its result, POSTed to `url`
        over HTTP with ``X-Hmac-Signature`` (HMAC-SHA256 of the body under the NFKD-normalised secret,
        hex, prefixed ``hmac-sha256-hex=``); `signature` overrides the header."""
        with self._lock:
            tracker = copy.deepcopy(next(t for t in reversed(self._trackers) if t["tracking_code"] == tracking_code))
        event = json.loads((self.fixture_dir / "webhook_event_body.json").read_text())
        event.update({"id": f"evt_{uuid.uuid4().hex}", "description": description, "result": tracker,
                      "created_at": tracker["updated_at"], "updated_at": tracker["updated_at"]})
        body = json.dumps(event).encode()
        key = unicodedata.normalize("NFKD", webhook_secret).encode()
        header = signature or "hmac-sha256-hex=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        return requests.post(url, data=body, headers={"Content-Type": "application/json", "X-Hmac-Signature": header},
                             timeout=10)

    def put_tracker(self, tracker: dict[str, Any]) -> None:
        """Serve a whole Tracker body as given (e.g. one the simulator rendered for a shipment)."""
        with self._lock:
            self._trackers.append(copy.deepcopy(tracker))

    def add_trackers(self, count: int, prefix: str = "EZ9", **kwargs: Any) -> list[dict[str, Any]]:
        """``count`` trackers with codes ``<prefix>000000001``... (oldest first)."""
        return [self.add_tracker(f"{prefix}{n:09d}", **kwargs) for n in range(1, count + 1)]

    def trackers(self) -> list[dict[str, Any]]:
        """Every stored tracker, oldest first (copies)."""
        with self._lock:
            return copy.deepcopy(self._trackers)

    def reset(self) -> None:
        """Forget scripts, records and trackers (the API key and port stay)."""
        self._forget()
        with self._lock:
            self._trackers.clear()

    def _new_tracker_locked(self, tracking_code: str | None, carrier: str | None) -> dict[str, Any]:
        self._clock += timedelta(seconds=1)
        tracker_id = f"trk_{uuid.uuid4().hex}"
        tracker = copy.deepcopy(self._template)
        tracker.update({
            "id": tracker_id,
            "tracking_code": tracking_code or f"EZ{secrets.randbelow(10 ** 10):010d}",
            "carrier": carrier or tracker["carrier"],
            "created_at": _iso(self._clock),
            "updated_at": _iso(self._clock),
            "public_url": "https://track.easypost.com/"
                          + base64.urlsafe_b64encode(f"v1:{tracker_id}".encode()).decode().rstrip("="),
        })
        self._trackers.append(tracker)
        return tracker

    # -- request handling (called from handler threads)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, _password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return secrets.compare_digest(user, self.api_key)
        if scheme.lower() == "bearer":
            return secrets.compare_digest(token.strip(), self.api_key)
        return False

    def _create(self, body: Any) -> tuple[int, Any]:
        tracker = body.get("tracker") if isinstance(body, dict) else None
        code = tracker.get("tracking_code") if isinstance(tracker, dict) else None
        if not isinstance(code, str) or not code.strip():
            return 422, error_body(422)
        carrier = tracker.get("carrier") if isinstance(tracker.get("carrier"), str) else None
        with self._lock:
            for existing in reversed(self._trackers):
                if existing["tracking_code"] == code and (
                        carrier is None or existing["carrier"].lower() == carrier.lower()):
                    return 200, copy.deepcopy(existing)  # EasyPost returns the original for a duplicate
            return 201, copy.deepcopy(self._new_tracker_locked(code, carrier))

    def _retrieve(self, tracker_id: str) -> tuple[int, Any]:
        with self._lock:
            for tracker in self._trackers:
                if tracker["id"] == tracker_id:
                    return 200, copy.deepcopy(tracker)
        return 404, error_body(404)

    def _list(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        try:
            page_size = int(query.get("page_size", [str(DEFAULT_PAGE_SIZE)])[-1])
        except ValueError:
            return 422, error_body(422, "PARAMETER.INVALID", "page_size must be an integer",
                                   [{"field": "page_size", "message": "must be an integer"}])
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        codes = _codes(query)
        carrier = query.get("carrier", [None])[-1]
        with self._lock:
            items = list(reversed(self._trackers))  # newest first, as EasyPost lists
        if codes is not None:
            items = [t for t in items if t["tracking_code"] in codes]
        if carrier:
            items = [t for t in items if t["carrier"].lower() == carrier.lower()]
        for name, keep in (("start_datetime", lambda c, b: c >= b), ("end_datetime", lambda c, b: c <= b)):
            if name in query:
                try:
                    bound = _parse_time(query[name][-1])
                except ValueError:
                    return 422, error_body(422, "PARAMETER.INVALID", f"{name} is not a datetime",
                                           [{"field": name, "message": "is not a datetime"}])
                items = [t for t in items if keep(_parse_time(t["created_at"]), bound)]
        # A cursor names a tracker; the page continues strictly after (before_id: older) or before
        # (after_id: newer) it. What EasyPost does with an unknown id is undocumented: 404 keeps a
        # client bug loud.
        for name in ("before_id", "after_id"):
            if name not in query:
                continue
            cursor = query[name][-1]
            with self._lock:
                order = [t["id"] for t in reversed(self._trackers)]
            if cursor not in order:
                return 404, error_body(404, message=f"{name} {cursor} not found")
            position = order.index(cursor)
            keep = set(order[position + 1:]) if name == "before_id" else set(order[:position])
            items = [t for t in items if t["id"] in keep]
        if "after_id" in query and "before_id" not in query:
            # The records next to the cursor are the oldest of the newer ones: page upwards from the
            # cursor, still answered newest first.
            page = items[-page_size:]
        else:
            page = items[:page_size]
        return 200, {"trackers": copy.deepcopy(page), "has_more": len(items) > len(page)}

    def _batch(self, body: Any) -> tuple[int, Any]:
        codes = body.get("tracking_codes") if isinstance(body, dict) else None
        if not isinstance(codes, list) or not codes:
            return 422, error_body(422, "PARAMETER.REQUIRED", "Missing required parameter.",
                                   [{"field": "tracking_codes", "message": "cannot be blank"}])
        with self._lock:
            found = [copy.deepcopy(t) for t in reversed(self._trackers) if t["tracking_code"] in set(codes)]
        return 200, {"trackers": found, "has_more": False}


def _codes(query: dict[str, list[str]]) -> set[str] | None:
    """The code filter from ``tracking_codes[]``, ``tracking_codes`` (repeated or a,b,c) or ``tracking_code``."""
    raw = query.get("tracking_codes[]", []) + query.get("tracking_codes", []) + query.get("tracking_code", [])
    if not raw:
        return None
    return {code.strip() for value in raw for code in value.split(",") if code.strip()}


_TRACKER_PATH = re.compile(r"^/v2/trackers/(?P<id>[^/]+)$")


class _Handler(VendorHandler):
    vendor: ClassVar[EasyPostServer]
    content_type = "application/json; charset=utf-8"

    def extra_headers(self) -> list[tuple[str, str]]:
        return [("Cache-Control", "private, no-cache, no-store"), ("X-Ep-Request-Uuid", uuid.uuid4().hex)]

    def _handle(self) -> None:
        record = self._read()
        if self.play(record, self.vendor._next_behaviour()):
            return
        if not self.vendor._authorized(record.headers):
            return self._send(record, 401, error_body(401), outcome="unauthorized")
        self._route(record)

    def _route(self, record: RecordedRequest) -> None:
        server, path, method = self.vendor, record.path, self.command
        if path == "/v2/trackers":
            if method == "POST":
                status, payload = server._create(record.body)
                headers = [("Location", f"/api/v2/trackers/{payload['id']}")] if status == 201 else []
                return self._send(record, status, payload, headers)
            if method == "GET":
                return self._send(record, *server._list(record.query))
            return self._send(record, 405, error_body(405))
        if path == "/v2/trackers/batch":
            if method != "POST":
                return self._send(record, 405, error_body(405))
            return self._send(record, *server._batch(record.body))
        match = _TRACKER_PATH.match(path)
        if match:
            if method != "GET":
                return self._send(record, 405, error_body(405))
            return self._send(record, *server._retrieve(match["id"]))
        return self._send(record, 404, error_body(404))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


EasyPostServer.handler_class = _Handler


# ---------------------------------------------------------------------------------------- fixture


@pytest.fixture()
def easypost_server() -> Iterator[EasyPostServer]:
    """A started EasyPost look-alike on 127.0.0.1 (fresh per test), stopped afterwards."""
    with EasyPostServer() as server:
        yield server
