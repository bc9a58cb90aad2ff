"""One retry policy for every vendor: wait what the vendor asked, else back off; never retry a refusal."""

from __future__ import annotations

import pytest

from lastmile.core.retry import GaveUp, RetryLater, call_with_retries, wait_hint


def test_the_vendor_s_own_word_on_waiting_comes_first():
    now = lambda: 1_000_000.0  # noqa: E731
    assert wait_hint({"Retry-After": "7"}, now) == 7.0
    assert wait_hint({"Retry-After": "Mon, 12 Jan 1970 13:46:47 GMT"}, now) == pytest.approx(7.0)
    assert wait_hint({"X-RateLimit-Reset": "1000012"}, now) == 12.0
    assert wait_hint({"Retry-After": "2", "X-RateLimit-Reset": "1000012"}, now) == 2.0
    assert wait_hint({"Retry-After": "soon"}, now) is None and wait_hint({}, now) is None


def test_retries_wait_as_asked_capped_and_give_up_naming_the_last_failure():
    sleeps: list[float] = []
    answers = iter([RetryLater("429", 90.0), RetryLater("503"), "ok"])

    def attempt() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert call_with_retries(attempt, max_attempts=5, max_wait=30.0, sleep=sleeps.append) == "ok"
    assert sleeps[0] == 30.0 and 0 <= sleeps[1] <= 30.0
    with pytest.raises(GaveUp, match="gave up after 2 attempts; last: 500"):
        call_with_retries(lambda: (_ for _ in ()).throw(RetryLater("500")), max_attempts=2, max_wait=1.0,
                          sleep=sleeps.append)


def test_a_refusal_is_never_retried():
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise ValueError("400: bad address")

    with pytest.raises(ValueError):
        call_with_retries(attempt, max_attempts=5, max_wait=1.0, sleep=lambda s: None)
    assert len(calls) == 1
