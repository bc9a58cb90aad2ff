"""Business days per destination country: weekends and public holidays (the `holidays` package)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

TZ_COUNTRY = {
    "America/New_York": "US",
    "America/Chicago": "US",
    "America/Denver": "US",
    "America/Los_Angeles": "US",
    "Europe/London": "GB",
    "Europe/Berlin": "DE",
    "Europe/Paris": "FR",
    "Europe/Madrid": "ES",
    "Europe/Amsterdam": "NL",
}


@lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country, years=year).keys())


def is_business_day(day: date, country: str) -> bool:
    """True on a weekday that is not a public holiday in `country`."""
    return day.weekday() < 5 and day not in _holidays(country, day.year)


def add_business_days(day: date, n: int, country: str) -> date:
    """The business day `n` business days after `day` (n >= 0; n == 0 rolls forward to one)."""
    current = day
    while not is_business_day(current, country):
        current += timedelta(days=1)
    for _ in range(n):
        current += timedelta(days=1)
        while not is_business_day(current, country):
            current += timedelta(days=1)
    return current


def business_days_between(start: date, end: date, country: str) -> int:
    """Business days in (start, end]; negative when end is before start."""
    if end < start:
        return -business_days_between(end, start, country)
    days, current = 0, start
    while current < end:
        current += timedelta(days=1)
        days += is_business_day(current, country)
    return days


def start_of_local_day(instant: datetime, tz: str) -> datetime:
    """The UTC instant at which `instant`'s day began in `tz`: what is learned by then holds all day."""
    day = instant.astimezone(ZoneInfo(tz)).date()
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(ZoneInfo("UTC"))

