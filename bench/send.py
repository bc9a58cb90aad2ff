"""Send throughput through SendGrid against the local spec-validating server.

    python -m bench.send --messages 2000

The local server runs in its own process, as the provider would: the sender's threads then share
their interpreter with nothing but the sender (in one process the server's schema checks compete
for the same GIL and make every concurrent sender look slow).

Reports messages/second for (a) the whole send step (outbox claim + policy + HTTP + outcome
recorded, one commit per message; SQLite, or the database given with --db-url), (b) the SendGrid transport alone, and (c) bare `requests` POSTs of
the same bodies to the same server — the reference for what the server itself can take — and the
ratios a/c and b/c. Goals: >= 200 messages/s for (a) (issue 5); a/c >= 0.7 (issue 11).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the local SendGrid server is test infrastructure

from servers.sendgrid import SendGridServer  # noqa: E402

from lastmile.config import Settings  # noqa: E402
from lastmile.core.brand import load_brand  # noqa: E402
from lastmile.email.outgoing import Outgoing  # noqa: E402
from lastmile.email.sendgrid_client import SendGridConfig, SendGridSender  # noqa: E402
from lastmile.email.transport import SendGridTransport  # noqa: E402
from lastmile.steps import pipeline  # noqa: E402
from lastmile.store import schema  # noqa: E402
from lastmile.store.db import prepare, upsert  # noqa: E402

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)  # 09:00 in New York: no quiet hours


def rows(n: int) -> tuple[list[dict], list[dict]]:
    customers = [{"customer_id": f"C{i}", "name": f"Customer {i}", "email": f"c{i}@example.com",
                  "tz": "America/New_York", "country": "US", "locale": "en_US"} for i in range(n)]
    body = "<p>We're sorry. " + "Your parcel is late. " * 40 + "</p>"
    outbox = [{"message_key": f"CASE-{i}/notice/late", "case_id": f"CASE-{i}", "order_id": f"O{i}", "kind": "notice",
               "state": "planned", "state_reason": None, "customer_id": f"C{i}", "recipient": f"c{i}@example.com",
               "recipient_name": f"Customer {i}", "subject": "Your order is running late", "body_text": body,
               "body_html": body, "window_earliest": None, "window_latest": None, "planned_at": AS_OF,
               "planned_batch": "bench", "sent_at": None, "send_at": None, "transport_ref": None, "attempts": 0}
              for i in range(n)]
    return customers, outbox


def _serve(pipe: Any) -> None:
    """The local SendGrid server in a child process; answers "count" with how many it accepted."""
    with SendGridServer() as server:
        pipe.send((server.url, server.api_key))
        while pipe.recv() == "count":
            pipe.send(len(server.accepted))


class _Provider:
    def __enter__(self) -> _Provider:
        self.pipe, child = multiprocessing.get_context("fork").Pipe()
        self.process = multiprocessing.get_context("fork").Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        self.url, self.api_key = self.pipe.recv()
        return self

    def accepted(self) -> int:
        self.pipe.send("count")
        return int(self.pipe.recv())

    def __exit__(self, *exc: object) -> None:
        self.pipe.send("stop")
        self.process.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--db-url", help="the history database (default: a fresh SQLite file); a Postgres URL "
                                         "should name an empty schema, e.g. ...?options=-csearch_path%%3Dbench")
    args = parser.parse_args()
    n = args.messages
    customers, outbox = rows(n)
    with _Provider() as server, tempfile.TemporaryDirectory() as tmp:
        cfg = SendGridConfig(api_key=server.api_key, host=server.url)
        settings = Settings(db_url=args.db_url or f"sqlite:///{tmp}/bench.db", source="simulated", email_transport="sendgrid",
                            out_dir=Path(tmp), sim_dir=Path(tmp) / "sim", sim_seed=7)
        with prepare(settings.db_url).begin() as conn:
            upsert(conn, schema.customers, customers)
            upsert(conn, schema.outbox, outbox)
        start = time.perf_counter()
        counts = pipeline.send_messages(settings, AS_OF, sendgrid=cfg)
        step = n / (time.perf_counter() - start)
        assert counts["sent"] == n and server.accepted() == n, counts

        transport = SendGridTransport(SendGridSender(cfg), load_brand())
        bodies = [transport.body(Outgoing.from_row(r)) for r in outbox]
        start = time.perf_counter()
        for r in outbox:
            transport.send(Outgoing.from_row(r))
        alone = n / (time.perf_counter() - start)

        session = requests.Session()
        headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json"}
        start = time.perf_counter()
        for body in bodies:
            session.post(f"{server.url}/v3/mail/send", json=body, headers=headers, timeout=10).raise_for_status()
        bare = n / (time.perf_counter() - start)
    print(f"messages                         {n}   history {settings.db_url.split(':')[0]}")
    print(f"(a) send step, end to end        {step:8.0f} msg/s   a/c = {step / bare:.2f}")
    print(f"(b) SendGrid transport alone     {alone:8.0f} msg/s   b/c = {alone / bare:.2f}")
    print(f"(c) bare requests, same server   {bare:8.0f} msg/s   (reference)")
    print(f"goal (a) >= 200 msg/s: {'met' if step >= 200 else 'NOT met'}; "
          f"goal a/c >= 0.7: {'met' if step / bare >= 0.7 else 'NOT met'}")


if __name__ == "__main__":
    main()
