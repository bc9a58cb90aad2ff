"""Respect the customer's attention (PRINCIPLES 8): quiet hours, a daily cap, suppressions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

# Kinds a customer may opt out of (an ASM group); the rest are what they must hear about their order.
NON_CRITICAL_KINDS = frozenset({"update"})
# Provider suppression lists that stop every e-mail, and the one that stops only non-critical ones.
HARD_SUPPRESSIONS = frozenset({"bounces", "blocks", "spam_reports", "invalid_emails", "unsubscribes"})
GROUP_SUPPRESSION = "asm_group"


@dataclass(frozen=True)
class Policy:
    max_per_order_per_day: int = 2
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    max_schedule_ahead: timedelta = timedelta(hours=72)  # SendGrid's send_at limit
    # A window wider than this many business days is said to be wide, with the latest date we can
    # stand behind and a date by which we write again whatever happens (check_in_business_days on).
    wide_window_business_days: int = 7
    check_in_business_days: int = 5

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> Policy:
        start, _, end = str(raw.get("quiet_hours", "21:00-08:00")).partition("-")
        return cls(max_per_order_per_day=int(raw.get("max_emails_per_order_per_day", 2)),  # type: ignore[arg-type]
                   quiet_start=time.fromisoformat(start.strip()), quiet_end=time.fromisoformat(end.strip()),
                   wide_window_business_days=int(raw.get("wide_window_business_days", 7)),  # type: ignore[arg-type]
                   check_in_business_days=int(raw.get("check_in_business_days", 5)))  # type: ignore[arg-type]

    def in_quiet_hours(self, local: time) -> bool:
        if self.quiet_start <= self.quiet_end:
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end

    def send_at(self, as_of: datetime, tz: str) -> datetime | None:
        """None to send now; else the end of the customer's quiet hours (an aware UTC instant)."""
        local = as_of.astimezone(ZoneInfo(tz))
        if not self.in_quiet_hours(local.timetz().replace(tzinfo=None)):
            return None
        day = local.date() if local.time() < self.quiet_end else local.date() + timedelta(days=1)
        wake = datetime.combine(day, self.quiet_end, ZoneInfo(tz))
        return wake.astimezone(ZoneInfo("UTC"))

    def local_day(self, moment: datetime, tz: str) -> str:
        return moment.astimezone(ZoneInfo(tz)).date().isoformat()


def suppression_reason(kind: str, suppressed: dict[str, set[str]], address: str | None) -> str | None:
    """Why an address must not get a message of `kind` (None: it may)."""
    if not address:
        return "no valid e-mail address on file (see quarantine)"
    lists = suppressed.get(address.lower(), set())
    hard = sorted(lists & HARD_SUPPRESSIONS)
    if hard:
        return f"address is on the provider's {hard[0]} list"
    if kind in NON_CRITICAL_KINDS and GROUP_SUPPRESSION in lists:
        return "customer unsubscribed from delivery follow-ups"
    return None


@dataclass(frozen=True)
class Gate:
    action: str  # "send" | "suppress" | "defer"
    reason: str | None = None
    send_at: datetime | None = None


def gate(kind: str, address: str | None, tz: str, suppressed: dict[str, set[str]], sent_today: int,
         as_of: datetime, policy: Policy) -> Gate:
    """What to do with one planned message now: send (maybe scheduled), suppress, or defer."""
    reason = suppression_reason(kind, suppressed, address)
    if reason is not None:
        return Gate("suppress", reason)
    if sent_today >= policy.max_per_order_per_day:
        return Gate("defer", f"deferred: {policy.max_per_order_per_day} e-mails already sent for this order today")
    return Gate("send", send_at=policy.send_at(as_of, tz))
