"""Rejected input: every bad record is kept with the field and the reason, never silently dropped."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rejection:
    source: str  # which feed or table: "orders", "customers", "easypost", ...
    record_id: str  # the id a person can search for: order id, tracking code#scan index, ...
    field: str
    reason: str
    payload: str  # the raw record as JSON, for audit and replay

    @classmethod
    def of(cls, source: str, record_id: str, field: str, reason: str, record: Any) -> Rejection:
        return cls(source, str(record_id), field, reason, json.dumps(record, default=str, sort_keys=True))

    def message(self) -> str:
        """One line for ops logs: names the record and the field, never the customer's data."""
        return f"{self.source} record {self.record_id}: field {self.field!r}: {self.reason}"
