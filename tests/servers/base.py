"""What every local vendor server shares: a thread-safe request log and the server lifecycle."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
