"""The tallies (store/tallies) against the rows they count, counted again the slow way; rows of the
counted tables to write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select

from lastmile.store import schema, tallies
from lastmile.store.db import engine_for

NOW = datetime(2026, 11, 20, 14, tzinfo=UTC)


def recounted(conn: Connection) -> dict[str, dict[str, int]]:
    """Every tally as a GROUP BY over its table gives it."""
    ob, ca, q, cd = schema.outbox.c, schema.cases.c, schema.quarantine.c, schema.current_detections.c

    def count(key, *where) -> dict[str, int]:
        return dict(sorted(conn.execute(select(key, func.count()).where(*where).group_by(key)).all()))

    return {tallies.OUTBOX_BY_STATE: count(ob.state), tallies.SENT_BY_KIND: count(ob.kind, ob.state == "sent"),
            tallies.CASES_BY_STATE: count(ca.state), tallies.QUARANTINED_BY_SOURCE: count(q.source),
            tallies.DETECTIONS_BY_TYPE: count(cd.exception_type),
            tallies.OPEN_DETECTIONS_BY_TYPE: count(cd.exception_type, cd.open.is_(True))}


def kept(conn: Connection) -> dict[str, dict[str, int]]:
    return {name: tallies.counts(conn, name) for name in recounted(conn)}


def assert_tallies_hold(url: str) -> None:
    with engine_for(url).connect() as conn:
        assert kept(conn) == recounted(conn)


def message(n: int, state: str = "planned", kind: str = "notice") -> dict:
    return {"message_key": f"CASE-O{n}-1/{kind}/late", "case_id": f"CASE-O{n}-1", "order_id": f"O{n}", "kind": kind,
            "state": state, "customer_id": "C1", "recipient": "c1@example.com", "recipient_name": "A customer",
            "subject": "s", "body_text": "t", "body_html": "<html></html>", "planned_at": NOW,
            "planned_batch": "b1", "attempts": 0}


def case(n: int, state: str = "open", kind: str = "late") -> dict:
    return {"case_id": f"CASE-O{n}-1", "order_line_id": f"O{n}-1", "order_id": f"O{n}", "customer_id": "C1",
            "shipment_id": f"S{n}", "exception_type": kind, "severity": 2, "state": state, "shipments_in_chain": 1,
            "opened_at": NOW, "first_evidence_at": NOW, "evidence": "{}", "owner": "care", "last_batch": "b1"}


def detection(n: int, kind: str = "late", is_open: bool = True) -> dict:
    return {"shipment_id": f"S{n}", "exception_type": kind, "order_line_id": f"O{n}-1", "severity": 2,
            "open": is_open, "first_evidence_at": NOW - timedelta(days=1), "evidence": "{}", "batch_key": "b1"}


def reject(n: int, source: str = "orders") -> dict:
    return {"source": source, "record_id": f"R{n}", "field": "email", "file": "orders.csv", "row_no": n,
            "reason": "not an address", "payload": "{}", "first_batch": "b1", "first_seen_at": NOW}
