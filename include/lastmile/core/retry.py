"""One retry policy for every vendor client (EasyPost, AfterShip, SendGrid), on tenacity.

A call is retried only when repeating it can heal: rate limiting, a 5xx, a timeout or a connection
that never reached the vendor. The wait honours what the vendor said — `Retry-After` (seconds or an
HTTP date, RFC 9110) or SendGrid's `X-RateLimit-Reset` (the Unix time the limit resets) — and
otherwise backs off exponentially with full jitter, capped; no wait after the last attempt.
Everything else is the caller's to classify and raise at once.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

T = TypeVar("T")


class RetryLater(Exception):
    """One attempt failed in a way another attempt may not: `detail` says how, `wait` what the
    vendor asked for (seconds; None: back off)."""

    def __init__(self, detail: str, wait: float | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.wait = wait
        self.status = status


class GaveUp(Exception):
    """Every attempt failed with RetryLater; `last` is the last one."""

    def __init__(self, attempts: int, last: RetryLater) -> None:
        super().__init__(f"gave up after {attempts} attempts; last: {last.detail}")
        self.attempts = attempts
        self.last = last


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110 allows both)."""
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now()


def wait_hint(headers: Mapping[str, str] | None, now: Callable[[], float] = time.time) -> float | None:
    """How long the vendor asked us to wait: `Retry-After`, else `X-RateLimit-Reset` (Unix time)."""
    if not headers:
        return None
    hint = retry_after_seconds(headers.get("Retry-After"), now)
    if hint is not None:
        return hint
    reset = headers.get("X-RateLimit-Reset")
    try:
        return float(reset) - now() if reset else None
    except ValueError:
        return None


def call_with_retries(attempt: Callable[[], T], *, max_attempts: int, max_wait: float,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """`attempt()` until it returns, at most `max_attempts` times while it raises RetryLater.

    Raises GaveUp when every attempt asked to retry; any other exception passes through at once.
    """
    backoff = wait_random_exponential(multiplier=0.5, max=max_wait)

    def wait(state: RetryCallState) -> float:
        asked = getattr(state.outcome.exception(), "wait", None) if state.outcome else None
        chosen = asked if asked is not None else backoff(state)
        return min(max(float(chosen), 0.0), max_wait)

    retrying = Retrying(stop=stop_after_attempt(max(1, max_attempts)), wait=wait, sleep=sleep,
                        retry=retry_if_exception_type(RetryLater), reraise=True)
    try:
        return retrying(attempt)
    except RetryLater as last:
        raise GaveUp(max(1, max_attempts), last) from None

