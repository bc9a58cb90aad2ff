"""Instants as carriers and shops write them: ISO 8601 with an offset, never guessed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_timestamp(value: Any) -> tuple[datetime, int]:
    """An ISO-8601 instant with its offset -> (UTC datetime, offset minutes). Naive is an error."""
    if not isinstance(value, str) or not value:
        raise ValueError("missing timestamp")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    offset = int(parsed.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    try:
        return parsed.astimezone(UTC), offset
    except OverflowError:  # (year 1 east of UTC, year 9999 west of it)
        raise ValueError(f"timestamp {value!r} is out of range") from None
