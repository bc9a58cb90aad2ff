"""The attention policy: quiet hours in the customer's zone, a daily cap, suppressions."""

from __future__ import annotations

from datetime import UTC, datetime, time

from lastmile.core.policy import Policy, gate, suppression_reason

POLICY = Policy(max_per_order_per_day=2, quiet_start=time(21), quiet_end=time(8))


def test_the_same_instant_is_quiet_in_one_zone_and_not_in_another():
    five_utc = datetime(2026, 11, 20, 5, tzinfo=UTC)  # midnight in New York, 06:00 in Berlin
    assert POLICY.send_at(five_utc, "America/New_York") == datetime(2026, 11, 20, 13, tzinfo=UTC)
    assert POLICY.send_at(five_utc, "Europe/Berlin") == datetime(2026, 11, 20, 7, tzinfo=UTC)
    two_pm = datetime(2026, 11, 20, 14, tzinfo=UTC)  # 09:00 in New York, 15:00 in Berlin
    assert POLICY.send_at(two_pm, "America/New_York") is None
    assert POLICY.send_at(two_pm, "Europe/Berlin") is None


def test_late_evening_waits_for_the_next_morning():
    ten_pm_berlin = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)  # 22:30 local
    assert POLICY.send_at(ten_pm_berlin, "Europe/Berlin") == datetime(2026, 11, 21, 7, tzinfo=UTC)


def test_daily_cap_defers_and_suppressions_win():
    now = datetime(2026, 11, 20, 14, tzinfo=UTC)
    assert gate("notice", "a@example.com", "Europe/Paris", {}, 1, now, POLICY).action == "send"
    capped = gate("notice", "a@example.com", "Europe/Paris", {}, 2, now, POLICY)
    assert capped.action == "defer" and "2 e-mails" in capped.reason
    bounced = gate("notice", "a@example.com", "Europe/Paris", {"a@example.com": {"bounces"}}, 0, now, POLICY)
    assert bounced.action == "suppress"


def test_unsubscribing_from_follow_ups_does_not_silence_the_delay_notice():
    lists = {"a@example.com": {"asm_group"}}
    assert suppression_reason("update", lists, "a@example.com") == "customer unsubscribed from delivery follow-ups"
    assert suppression_reason("notice", lists, "a@example.com") is None
    assert suppression_reason("notice", {}, None).startswith("no valid e-mail")
