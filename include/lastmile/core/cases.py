"""Turn a run's detections into cases: one case per order line, opened once and then updated.

A case follows the order line across reshipments. It shows the gravest open exception of the
line's current shipment, resolves when that shipment is delivered, and records every change as a
case event so analysts can replay its life.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from lastmile.core.windows import STILL_COMING

NEEDS_A_PERSON = frozenset({"lost", "damaged", "returned"})
# Every case state but "resolved", for lookups through the cases' state index.
LIVE_STATES = ("open", "told", "escalated")


@dataclass(frozen=True)
class CaseUpdate:
    case: dict[str, Any]
    events: list[tuple[str, str]]  # (event, detail)


def case_id_for(order_line_id: str) -> str:
    return f"CASE-{order_line_id}"


def build_cases(
    detections: pd.DataFrame,
    shipments: pd.DataFrame,
    delivered_at: dict[str, datetime],
    existing: dict[str, dict[str, Any]],
    as_of: datetime,
    batch_key: str,
    owner: str,
    escalation_owner: str,
    order_status: dict[str, str] | None = None,
) -> list[CaseUpdate]:
    """New and changed cases for the order lines in `detections` (one row per shipment+type).

    A case resolves when its current parcel is delivered, or when the shop cancels or refunds the
    order (`order_status`): then nothing is coming, and a person has already settled it.
    """
    order_status = order_status or {}
    updates: list[CaseUpdate] = []
    # Plain records grouped once: a batch touches thousands of lines in a busy hour, and a frame
    # filtered and sorted per line costs a millisecond each.
    chains: dict[str, list[dict[str, Any]]] = {}
    # (by id within the same sequence: a shop may number two parcels alike; the same one is current every run)
    for ship in sorted(shipments.to_dict("records"), key=lambda r: (r["sequence"], str(r["shipment_id"]))):
        chains.setdefault(ship["order_line_id"], []).append(ship)
    by_line: dict[str, list[dict[str, Any]]] = {}
    for det in detections.to_dict("records"):
        by_line.setdefault(det["order_line_id"], []).append(det)
    for line_id in sorted(by_line):
        dets = by_line[line_id]
        current = chains[line_id][-1]
        sid = str(current["shipment_id"])
        on_current = [d for d in dets if d["shipment_id"] == sid]
        open_now = [d for d in on_current if d["open"]]
        pick = open_now or on_current or dets
        # Ties are broken by type name so every database and every rerun picks the same one.
        top = min(pick, key=lambda d: (-d["severity"], pd.Timestamp(d["first_evidence_at"]), d["exception_type"]))
        kind = str(top["exception_type"])
        n_chain = int(current["sequence"])
        severity = int(top["severity"]) + (1 if n_chain >= 3 else 0)
        prior = existing.get(case_id_for(str(line_id)))
        delivered = delivered_at.get(sid)
        settled = order_status.get(str(current["order_id"]), "open")
        if delivered is not None:
            state, resolution = "resolved", "delivered"
        elif settled in ("cancelled", "refunded"):
            state, resolution = "resolved", settled
        elif kind in NEEDS_A_PERSON or n_chain >= 3:  # a repeated failure is flagged for a person
            state, resolution = "escalated", None
        else:
            state = prior["state"] if prior and prior["state"] in ("told", "escalated") else "open"
            resolution = None
        window = top if kind in STILL_COMING and top.get("window_earliest") is not None else None
        case = {
            "case_id": case_id_for(str(line_id)),
            "order_line_id": str(line_id),
            "order_id": str(current["order_id"]),
            "customer_id": str(current["customer_id"]),
            "shipment_id": sid,
            "exception_type": kind,
            "severity": severity,
            "state": state,
            "resolution": resolution,
            "shipments_in_chain": n_chain,
            "opened_at": prior["opened_at"] if prior else as_of,
            "first_evidence_at": min(pd.Timestamp(d["first_evidence_at"]) for d in dets).to_pydatetime(),
            "resolved_at": delivered if delivered is not None else (
                (prior.get("resolved_at") if prior else None) or as_of if state == "resolved" else None),
            "window_earliest": window["window_earliest"] if window is not None else None,
            "window_latest": window["window_latest"] if window is not None else None,
            "window_basis": window["window_basis"] if window is not None else None,
            "evidence": json.dumps(
                {r["exception_type"]: json.loads(r["evidence"]) | {"shipment_id": r["shipment_id"]}
                 for r in sorted(dets, key=lambda d: pd.Timestamp(d["first_evidence_at"]))}, sort_keys=True),
            "owner": escalation_owner if state == "escalated" else owner,
            "last_batch": batch_key,
        }
        events: list[tuple[str, str]] = []
        if prior is None:
            events.append(("opened", kind))
        elif prior["exception_type"] != kind:
            events.append(("type_changed", f"{prior['exception_type']}->{kind}"))
        if state != (prior or {}).get("state"):
            events.append((state, kind if state != "resolved" else str(resolution)))
        if prior is not None and not events and _same(prior, case):
            continue
        updates.append(CaseUpdate(case, events))
    return updates


def _same(prior: dict[str, Any], case: dict[str, Any]) -> bool:
    keys = ("exception_type", "severity", "state", "shipment_id", "window_earliest", "window_latest")
    return all(str(prior.get(k)) == str(case.get(k)) for k in keys)
