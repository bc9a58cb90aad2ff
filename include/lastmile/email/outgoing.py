"""A message on its way out, and how a send can fail: shared by every transport."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class TransportError(Exception):
    """A classified send failure; `detail` is safe to log (no addresses, no key)."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class Rejected(TransportError):
    """The provider refused this message for good (e.g. 400): it will never go as it is."""


class Unauthorized(TransportError):
    """The credentials are wrong: stop the batch, keep every message for the next run."""


class TryLater(TransportError):
    """Nothing was accepted (rate limit or outage outlasted the retries, or no connection)."""


class Ambiguous(TransportError):
    """The request may have been accepted (timeout or dropped connection after sending)."""


@dataclass(frozen=True)
class Outgoing:
    message_key: str
    case_id: str
    kind: str
    recipient: str
    recipient_name: str
    subject: str
    body_text: str
    body_html: str
    planned_at: Any
    send_at: datetime | None = None  # deliver at this instant (quiet hours); None: at once

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Outgoing:
        return cls(**{k: row.get(k) for k in cls.__dataclass_fields__})
