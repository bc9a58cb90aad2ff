"""Parse carrier tracker payloads (EasyPost Tracker shape) into normalised scans and estimates."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from lastmile import status as status_map
from lastmile.quarantine import Rejection

REQUIRED_TRACKER_FIELDS = ("tracking_code", "status", "tracking_details")


@dataclass
class ParsedTrackers:
    scans: list[dict[str, Any]] = field(default_factory=list)
    estimates: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    trackers_ok: int = 0


def parse_timestamp(value: Any) -> tuple[datetime, int]:
    """An ISO-8601 instant with its offset -> (UTC datetime, offset minutes). Naive is an error."""
    if not isinstance(value, str) or not value:
        raise ValueError("missing timestamp")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    offset = int(parsed.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    return parsed.astimezone(UTC), offset


def scan_id(shipment_id: str, occurred_at: datetime, carrier_status: str, detail: str, message: str) -> str:
    """The same scan seen in two polls has the same id, so it is stored once."""
    key = f"{shipment_id}|{occurred_at.isoformat()}|{carrier_status}|{detail}|{message}"
    return hashlib.sha1(key.encode()).hexdigest()[:20]


def _estimate(payload: dict[str, Any]) -> date | None:
    local = (payload.get("carrier_detail") or {}).get("est_delivery_date_local")
    raw = local or payload.get("est_delivery_date")
    if not raw:
        return None
    return date.fromisoformat(str(raw)[:10])


def parse_easypost(
    payloads: Iterable[tuple[str, dict[str, Any]]], observed_at: datetime, source: str = "easypost"
) -> ParsedTrackers:
    """Parse (shipment_id, Tracker) pairs; bad trackers and bad scans become rejections, not errors."""
    out = ParsedTrackers()
    for shipment_id, payload in payloads:
        code = str(payload.get("tracking_code") or payload.get("id") or shipment_id)
        missing = [f for f in REQUIRED_TRACKER_FIELDS if payload.get(f) in (None, "")]
        if missing or not isinstance(payload.get("tracking_details"), list):
            field_name = missing[0] if missing else "tracking_details"
            out.rejections.append(Rejection.of(
                source, code, field_name, f"tracker payload is missing {', '.join(missing) or field_name}",
                payload))
            continue
        out.trackers_ok += 1
        details = list(payload["tracking_details"])
        for index, detail in enumerate(details):
            try:
                occurred_at, offset = parse_timestamp(detail.get("datetime"))
            except ValueError as err:
                out.rejections.append(Rejection.of(source, f"{code}#{index}", "datetime", str(err), detail))
                if index == len(payload["tracking_details"]) - 1 and payload.get("updated_at"):
                    # The newest scan is unreadable but the tracker itself says where the parcel is
                    # (and when): keep that, or a delivered parcel would look lost.
                    details.append({**detail, "datetime": payload["updated_at"],
                                    "message": f"{detail.get('message') or ''} (time from tracker)".strip()})
                continue
            carrier_status = str(detail.get("status") or "")
            carrier_detail = str(detail.get("status_detail") or "")
            message = str(detail.get("message") or "")
            mapped = status_map.from_easypost(carrier_status, carrier_detail, message)
            location = detail.get("tracking_location") or {}
            out.scans.append({
                "scan_id": scan_id(shipment_id, occurred_at, carrier_status, carrier_detail, message),
                "shipment_id": shipment_id,
                "occurred_at": occurred_at,
                "utc_offset_minutes": offset,
                "status": mapped.status,
                "reason": mapped.reason,
                "carrier_status": carrier_status,
                "carrier_status_detail": carrier_detail,
                "message": message,
                "city": location.get("city"),
                "country": location.get("country"),
                "raw": json.dumps(detail, sort_keys=True),
            })
        estimate = _estimate(payload)
        if estimate is not None:
            out.estimates.append({"shipment_id": shipment_id, "est_delivery_date": estimate,
                                  "observed_at": observed_at})
    return out
