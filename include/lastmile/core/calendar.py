"""Business days per destination country: its weekend and public holidays (the `holidays` package),
and the country a time zone lies in (the time zone database's zone.tab)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo

import holidays


@lru_cache(maxsize=1)
def _zone_countries() -> dict[str, str]:
    """IANA time zone → ISO 3166 country, from the time zone database's own zone.tab (tzdata)."""
    text = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, _where, zone, *_ = line.split("\t")
            out[zone] = code
    return out


def zone_country(tz: str) -> str | None:
    """The country a time zone lies in (None for UTC, Etc/… and names the database does not list)."""
    return _zone_countries().get(tz)


def country_for(dest_country: object, tz: str) -> str:
    """A shipment's destination country: the one the shop gave, else its time zone's ('' if none)."""
    if isinstance(dest_country, str) and dest_country:
        return dest_country
    return zone_country(tz) or ""


# The zones the simulator's customers live in (and bench/detect generates).
TZ_COUNTRY = {tz: zone_country(tz) or "" for tz in (
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Europe/London",
    "Europe/Berlin", "Europe/Paris", "Europe/Madrid", "Europe/Amsterdam")}


@lru_cache(maxsize=256)
def weekend(country: str) -> frozenset[int]:
    """The country's weekend days (Monday = 0), as the `holidays` package knows them; else Sat-Sun."""
    try:
        return frozenset(holidays.country_holidays(country).weekend)
    except (NotImplementedError, KeyError, AttributeError):
        return frozenset({5, 6})


def weekmask(country: str) -> str:
    """numpy's busday weekmask for the country ("1111100": Monday to Friday)."""
    off = weekend(country)
    return "".join("0" if d in off else "1" for d in range(7))


def has_calendar(country: str) -> bool:
    """Whether the `holidays` package knows the country's public holidays."""
    try:
        holidays.country_holidays(country)
    except (NotImplementedError, KeyError):
        return False
    return True


@lru_cache(maxsize=512)
def _holidays(country: str, year: int) -> frozenset[date]:
    """The country's public holidays in `year` (none for a country the package does not know:
    validation flags those, docs/detection-rules.md)."""
    try:
        return frozenset(holidays.country_holidays(country, years=year).keys())
    except (NotImplementedError, KeyError):
        return frozenset()


def is_business_day(day: date, country: str) -> bool:
    """True on a day that is neither the country's weekend nor one of its public holidays."""
    return day.weekday() not in weekend(country) and day not in _holidays(country, day.year)


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
    """The UTC instant at which `instant`'s day began in `tz`."""
    day = instant.astimezone(ZoneInfo(tz)).date()
    return datetime.combine(day, time(0), ZoneInfo(tz)).astimezone(ZoneInfo("UTC"))


def learned_by(instant: datetime, tz: str) -> datetime:
    """What the thresholds and windows of a destination's day learn from: what was known at the last
    UTC midnight at or before the start of its local day. The same all that local day (it moves
    only when the destination's day does), and one instant for every zone whose day began on the
    same UTC date, so a day's learning is done once, not once per time zone."""
    start = start_of_local_day(instant, tz)
    return datetime.combine(start.date(), time(0), ZoneInfo("UTC"))

