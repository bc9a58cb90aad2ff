"""Masking for anything that may reach a log line, a metric or an ops page (PRINCIPLES 9)."""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")


def mask_email(address: str | None) -> str:
    """'zoe.obrien@example.com' -> 'z***@e***.com'; keeps enough to tell two addresses apart."""
    if not address or "@" not in address:
        return "(none)"
    local, _, domain = address.partition("@")
    host, dot, tld = domain.rpartition(".")
    return f"{local[:1]}***@{(host or tld)[:1]}***{dot}{tld if host else ''}"


def one_line(text: str) -> str:
    """Collapse every kind of line break and run of spaces: a header or log value stays one line."""
    return " ".join(str(text).split())


def mask_emails_in(text: str | None) -> str | None:
    """Free text from a provider or carrier, one line, with every e-mail address in it masked."""
    if text is None:
        return None
    return _EMAIL.sub(lambda m: mask_email(m.group(0)), one_line(text))


# scheme://user:password@host -- the password ends at the last '@' before the host (it may hold '@' or ':').
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@]*:)(?P<secret>[^\s/?#]*)(?=@[^\s@/?#]+)")


# ...?password=s3cret&sslmode=require -- a secret can ride in the query string too (libpq accepts it).
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|passwd|pwd|secret|token|api_?key|access_token)=)[^&\s#]*",
                           re.IGNORECASE)


def mask_url(text: str | None) -> str | None:
    """Every URL in `text` with its password masked: 'postgresql://app:s3cret@db/x' -> 'postgresql://app:***@db/x',
    '...?password=s3cret' -> '...?password=***'."""
    if text is None:
        return None
    masked = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***", str(text))
    return _QUERY_SECRET.sub(lambda m: f"{m.group('head')}***", masked)
