"""What every local vendor server shares: the request log, the lifecycle, scripted faults, handler plumbing.

A vendor server subclasses `ScriptedServer` (the queue of scripted behaviours and the request log)
and `VendorHandler` (reading a request into a `RecordedRequest`, answering JSON or raw bytes with the
vendor's headers, dropping the connection, and `play` for the scripted faults); it adds only its
routes, its error body and its auth.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit


class RecordList(Sequence):
    """An append-only list shared with the server threads; reads are snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._changed = threading.Condition(self._lock)

    def _append(self, item: Any) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def _clear(self) -> None:
        with self._lock:
            self._items.clear()

    def snapshot(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Block until at least ``count`` items are recorded; raise TimeoutError otherwise."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._items) >= count, timeout=timeout):
                raise TimeoutError(f"expected {count} records, have {len(self._items)} after {timeout}s")
            return list(self._items)

    def __getitem__(self, index):  # type: ignore[override]
        with self._lock:
            return self._items[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.snapshot())

    def __repr__(self) -> str:
        return f"RecordList({self.snapshot()!r})"


# ----------------------------------------------------------------------------------------- script


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:  # clients that hang up are normal
        pass


class LocalServer:
    """Start/stop a ThreadingHTTPServer on 127.0.0.1:0 in a daemon thread; subclasses give the handler."""

    name = "local-server"

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._httpd: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Any:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = QuietHTTPServer(("127.0.0.1", 0), self.handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.name}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in ("hang", s)
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._httpd.server_address[1]


# ---------------------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    raw_body: bytes
    body: Any = None  # parsed JSON, or None
    status: int | None = None  # None while in flight, or when the connection was dropped
    outcome: str = "pending"  # "ok", "error", "unauthorized", "scripted-429", "malformed", "dropped", ...
    received_at: float = field(default_factory=time.time)


# ----------------------------------------------------------------------------------- scripted faults


@dataclass(frozen=True)
class Behaviour:
    kind: Literal["normal", "status", "hang", "malformed", "drop"]
    status: int = 200
    retry_after: float | None = None
    seconds: float = 0.0
    code: str | None = None  # the vendor's error code (SendGrid: the field name)
    message: str | None = None


def parse_behaviour(spec: Any, *, ok: int = 200, drop_names: tuple[str, ...] = ("drop",),
                    malformed: bool = True) -> Behaviour:
    """Normalise one scripted response.

    ``ok`` (normal processing), ``("429", s)`` / ``429`` (429 + ``Retry-After: s``, default 1), any other
    4xx/5xx int (the vendor's error body), ``(status, code, message)`` (that status with this code and
    message), ``("hang", seconds)`` (sleep, then normal processing; abandoned if the server stops first),
    ``"malformed"`` (200, JSON content type, broken body; where the server allows it), any of
    ``drop_names`` (close the connection without an answer).
    """
    if isinstance(spec, Behaviour):
        return spec
    items = tuple(spec) if isinstance(spec, tuple | list) else (spec,)
    if not items:
        raise ValueError("empty scripted response")
    head, rest = items[0], items[1:]
    if head == "hang":
        (seconds,) = rest
        return Behaviour("hang", seconds=float(seconds))
    if head == "malformed" and malformed:
        return Behaviour("malformed")
    if head in drop_names:
        return Behaviour("drop")
    try:
        status = int(head)
    except (TypeError, ValueError):
        raise ValueError(f"unknown scripted response: {spec!r}") from None
    if status == ok:
        return Behaviour("normal")
    if not 400 <= status <= 599:
        raise ValueError(f"scripted status must be {ok} or 4xx/5xx, got {status}")
    if status == 429 and len(rest) == 2:  # (429, code, message): a 429 the server words its own way
        return Behaviour("status", 429, code=str(rest[0]), message=str(rest[1]))
    if status == 429:
        return Behaviour("status", 429, retry_after=float(rest[0]) if rest else 1.0)
    code, message = (list(rest) + [None, None])[:2]
    return Behaviour("status", status, code=None if code is None else str(code), message=message)


class ScriptedServer(LocalServer):
    """A LocalServer with a request log and a queue of scripted behaviours, one per request."""

    handler_class: ClassVar[type[VendorHandler]]

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._script: list[Behaviour] = []
        self.requests = RecordList()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (self.handler_class,), {"vendor": self})

    def behaviour(self, spec: Any) -> Behaviour:
        """How this vendor reads one scripted response (see `parse_behaviour`)."""
        return parse_behaviour(spec)

    def script(self, *responses: Any) -> None:
        """Queue behaviours for the next requests that consume them, one per request, in order."""
        parsed = [self.behaviour(r) for r in responses]
        with self._lock:
            self._script.extend(parsed)

    @property
    def pending(self) -> int:
        """How many scripted behaviours are still queued."""
        with self._lock:
            return len(self._script)

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._script.pop(0) if self._script else Behaviour("normal")

    def _forget(self) -> None:
        """Forget scripts and records (subclasses forget their own data too)."""
        with self._lock:
            self._script.clear()
        self.requests._clear()

    # -- what a vendor's faults look like (handler threads call these)

    def error_payload(self, step: Behaviour) -> Any:
        raise NotImplementedError

    def fault_headers(self, step: Behaviour) -> list[tuple[str, str]]:
        """Headers of a scripted error: Retry-After on a 429."""
        return [("Retry-After", f"{step.retry_after:g}")] if step.status == 429 else []

    malformed_body: ClassVar[bytes] = b'{"data": {"trackings": [{"id": "'  # a 200 cut off mid-body


class VendorHandler(BaseHTTPRequestHandler):
    """Request plumbing shared by the vendor servers; `vendor` is the ScriptedServer being served."""

    vendor: ClassVar[Any]
    protocol_version = "HTTP/1.1"
    content_type: ClassVar[str] = "application/json"
    keep_blank_values: ClassVar[bool] = True
    parse_json_body: ClassVar[bool] = True  # SendGrid parses after un-gzipping, so it says False

    def version_string(self) -> str:
        return "nginx"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def extra_headers(self) -> list[tuple[str, str]]:
        """Headers the vendor puts on every answer."""
        return []

    def _read(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = RecordedRequest(self.command, parts.path.rstrip("/") or "/",
                                 parse_qs(parts.query, keep_blank_values=self.keep_blank_values), headers, raw)
        if raw and self.parse_json_body:
            try:
                record.body = json.loads(raw)
            except ValueError:
                record.body = None
        self.vendor.requests._append(record)
        return record

    def _send_bytes(self, record: RecordedRequest, status: int, body: bytes,
                    headers: Iterable[tuple[str, str]] = (), outcome: str | None = None,
                    content_type: str | None = None) -> None:
        record.status = status
        record.outcome = outcome or ("ok" if status < 400 else "error")
        try:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in [*self.extra_headers(), *headers]:
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(body)
        except OSError:  # the client gave up (e.g. its timeout fired during a hang)
            record.outcome = "client-gone"
            self.close_connection = True

    def _send(self, record: RecordedRequest, status: int, payload: Any,
              headers: Iterable[tuple[str, str]] = (), outcome: str | None = None) -> None:
        """JSON ``payload``; ``None`` is an empty body without a content type (SendGrid's 202)."""
        if payload is None:
            return self._send_bytes(record, status, b"", headers, outcome)
        self._send_bytes(record, status, json.dumps(payload).encode(), headers, outcome, self.content_type)

    def _drop(self, record: RecordedRequest) -> None:
        record.status = None
        record.outcome = "dropped"
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def play(self, record: RecordedRequest, step: Behaviour, *, drop_now: bool = True) -> bool:
        """Answer a scripted fault; True when the request is finished, False to go on normally.

        Forced statuses and ``malformed`` answer without looking at auth or body. ``hang`` sleeps and
        then lets the request go on (or abandons it when the server stops). ``drop`` closes the
        connection here unless ``drop_now`` is False (SendGrid drops after accepting the message).
        """
        if step.kind == "status":
            self._send(record, step.status, self.vendor.error_payload(step), self.vendor.fault_headers(step),
                       outcome=f"scripted-{step.status}")
            return True
        if step.kind == "malformed":
            self._send_bytes(record, 200, self.vendor.malformed_body, outcome="malformed",
                             content_type=self.content_type)
            return True
        if step.kind == "drop" and drop_now:
            self._drop(record)
            return True
        if step.kind == "hang" and self.vendor._stopping.wait(step.seconds):
            self._drop(record)  # server stopping: abandon quietly
            return True
        return False
