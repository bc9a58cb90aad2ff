"""A rejected input record: what it was, where it was read, which field, and why."""

from __future__ import annotations

import dataclasses
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
    file: str = ""  # the file (or shop table) it was read from; '' for an API payload
    row: int = 0  # 1-based data row in that file (the header is not counted); 0 when not a file

    @classmethod
    def of(cls, source: str, record_id: str, field: str, reason: str, record: Any,
           file: str = "", row: int = 0) -> Rejection:
        return cls(source, str(record_id), field, reason, json.dumps(record, default=str, sort_keys=True),
                   file, row)

    def at(self, file: str, row: int) -> Rejection:
        """The same rejection, placed in the file and row it came from."""
        return dataclasses.replace(self, file=file, row=row)

    def message(self) -> str:
        """One line for ops logs: names the record, the place and the field, never the customer's data."""
        where = f" ({self.file} row {self.row})" if self.file and self.row else (f" ({self.file})" if self.file else "")
        return f"{self.source} record {self.record_id}{where}: field {self.field!r}: {self.reason}"
