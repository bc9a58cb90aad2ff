"""Render every kind of customer e-mail with sample data, for a person to read before go-live."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from lastmile.core.brand import load_brand
from lastmile.core.detection import SEVERITY
from lastmile.email.messages import CaseFacts, decide
from lastmile.email.outgoing import Outgoing
from lastmile.email.transport import FileTransport, write_index

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)
SAMPLE_EVIDENCE = {"business_days_silent": 4, "last_scan": "Departed facility", "carrier_says_lost": False,
                   "carrier_message": "Delivery attempted - no access to location"}


def _facts(kind: str, *, chain: int = 1, state: str = "open", previous: list[dict[str, Any]] | None = None,
           name: str = "Zoë O'Brien", subscription: bool = False, delivered: datetime | None = None,
           last_scan: tuple[str, datetime] | None = None, window: bool = True,
           latest: date = date(2026, 11, 27)) -> CaseFacts:
    case = {"case_id": f"CASE-SAMPLE-{kind}-{chain}", "order_id": "O123456", "order_line_id": "O123456-1",
            "customer_id": "C-SAMPLE", "shipment_id": "SH-SAMPLE", "exception_type": kind,
            "severity": SEVERITY.get(kind, 1), "state": state, "shipments_in_chain": chain,
            "window_earliest": date(2026, 11, 24) if window else None,
            "window_latest": latest if window else None,
            "evidence": json.dumps({kind: {"rule": kind, **SAMPLE_EVIDENCE}}),
            "owner": load_brand().escalation_owner if not window or chain >= 3 else load_brand().owner_team}
    return CaseFacts(
        case=case, customer={"customer_id": "C-SAMPLE", "name": name, "email": "sample@example.com",
                             "locale": "en_US"},
        order={"order_id": "O123456", "subscription_id": "S0001" if subscription else None},
        shipment={"shipment_id": "SH-SAMPLE", "carrier": "UPS", "tracking_code": "1Z999AA10123456784",
                  "dest_tz": "America/New_York"},
        items=[{"description": "Single-origin coffee beans, 250 g", "quantity": 2}],
        subscription_next=date(2026, 12, 1), delivered_at=delivered, promised_date=date(2026, 11, 18),
        carrier_estimate=date(2026, 11, 25), previous=previous or [],
        last_scan_status=last_scan[0] if last_scan else None, last_scan_at=last_scan[1] if last_scan else None)


def samples() -> list[tuple[str, CaseFacts]]:
    """(label, facts) for every message the pipeline can send."""
    told = [{"message_key": "x/notice/stalled", "kind": "notice", "state": "sent", "planned_at": datetime(
        2026, 11, 18, 14, tzinfo=UTC), "window_earliest": date(2026, 11, 23), "window_latest": date(2026, 11, 26)}]
    no_window = {"lost", "damaged", "returned"}
    out = [(f"notice-{k}", _facts(k, window=k not in no_window)) for k in SEVERITY]
    out += [
        ("notice-reshipped-third-time", _facts("reshipped", chain=3)),
        ("notice-lost-standing-order", _facts("lost", subscription=True, window=False)),
        ("notice-late-subscriber", _facts("late", subscription=True)),
        ("notice-hostile-name", _facts("late", name="<script>alert(1)</script>")),
        ("update-moving-again", _facts("late", state="told", previous=told,
                                       last_scan=("in_transit", datetime(2026, 11, 20, 9, tzinfo=UTC)))),
        ("update-out-for-delivery", _facts("late", state="told", previous=told,
                                           last_scan=("out_for_delivery", datetime(2026, 11, 20, 9, tzinfo=UTC)))),
        ("notice-late-wide-window", _facts("late", latest=date(2026, 12, 11))),
        ("check-in-as-promised", _facts("late", state="told", latest=date(2026, 12, 11), previous=[
            {**told[0], "window_latest": date(2026, 12, 11), "check_in_by": date(2026, 11, 20)}])),
        ("escalated-window-passed", _facts("late", state="told", previous=[
            {**told[0], "window_latest": date(2026, 11, 19)}])),
        ("resolved-delivered", _facts("late", state="resolved", previous=told,
                                      delivered=datetime(2026, 11, 20, 12, tzinfo=UTC))),
    ]
    return out


def render_all(folder: Path) -> Path:
    """Write every sample as .eml + .html into `folder` with an index; returns the index path."""
    brand = load_brand()
    transport = FileTransport(folder, brand)
    rows = []
    for label, facts in samples():
        message = decide(facts, AS_OF, "preview", brand).message
        assert message is not None, label
        message = {**message, "message_key": f"preview/{label}", "state": "sent"}
        transport.send(Outgoing.from_row(message))
        rows.append(message)
    return write_index(folder, rows)
