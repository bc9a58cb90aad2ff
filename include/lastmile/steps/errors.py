"""Which failures are worth retrying, and how to name a failure without leaking row data or secrets.

Pure: no Airflow import. The Airflow plugin (lastmile_airflow.steps) uses `is_transient` to let only
failures that can heal reach Airflow's retries (everything else fails at once, with the ops alert),
and `describe` for every text that reaches a task log, the ALERT line or the ops webhook.

Classification (`is_transient`), by the first link of the exception chain (`__cause__`, else
`__context__`, outermost first) that says something definite; nothing definite means "not transient":

- transient: a dropped or refused connection (`ConnectionError`, `requests.ConnectionError`, a
  psycopg `OperationalError` without SQLSTATE, a DBAPIError with `connection_invalidated`,
  SQLAlchemy's `DisconnectionError`), a timeout (`TimeoutError`, `requests.Timeout`, a pool timeout,
  SQLSTATE 57014), a locked SQLite database (SQLITE_BUSY / SQLITE_LOCKED, "database is locked"), Postgres
  SQLSTATE class 08 (connection), 53 (insufficient resources), 40001/40P01 (serialization failure,
  deadlock), 55P03 (lock not available), 57P01-57P03 (administrator/crash shutdown, cannot connect now),
  HTTP 429 or 5xx that escaped a client, a vendor or e-mail provider "try later", another run holding a
  lock (`lastmile.store.db.Busy`);
- not transient: every other DB error (SQLSTATE 22 data, 23 integrity, 42 syntax/undefined, ...;
  SQLAlchemy's IntegrityError/DataError/ProgrammingError without SQLSTATE, as SQLite raises them),
  HTTP 4xx, errors of data or code (ValueError - so `ConfigError` -, LookupError, TypeError, ...),
  and anything unknown.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator

from lastmile.core.privacy import mask_emails_in, mask_url

MAX_MESSAGE = 300

# SQLSTATE classes (first two characters) and codes that heal by themselves.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53"})
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"})
# SQLite result codes: SQLITE_BUSY, SQLITE_LOCKED (the extended codes share the low byte).
_SQLITE_BUSY_CODES = frozenset({5, 6})
_SQLITE_LOCKED_TEXT = ("database is locked", "database table is locked", "database is busy")

# Errors of data or code: they fail the same way on every try.
_DETERMINISTIC = (ValueError, LookupError, TypeError, AttributeError, NotImplementedError, AssertionError,
                  ArithmeticError)


class TransientStepError(Exception):
    """A failure that may heal, re-raised (as its description, from None) for Airflow to retry.

    Carries `describe(original)` only: the original's text may hold statement parameters.
    """


def chain(err: BaseException) -> Iterator[BaseException]:
    """The exception and what led to it, outermost first: `__cause__`, else `__context__`, else the
    driver error a SQLAlchemy DBAPIError wraps (`orig`, normally its `__cause__` too)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        following = current.__cause__ if current.__cause__ is not None else current.__context__
        if following is None and isinstance(getattr(current, "orig", None), BaseException):
            following = current.orig  # type: ignore[attr-defined]
        current = following


def chain_names(err: BaseException) -> str:
    """The class names of the chain, e.g. 'DataError <- StringDataRightTruncation' (never a message)."""
    return " <- ".join(_qualified(e) for e in chain(err))


def is_transient(err: BaseException) -> bool:
    """True when trying the same work again later may succeed (see the module doc for the rules)."""
    for link in chain(err):
        verdict = _classify(link)
        if verdict is not None:
            return verdict
    return False


def describe(err: BaseException, step: str | None = None) -> str:
    """One line naming a failure for logs and alerts: class names, SQLSTATE, a masked and clipped message.

    Never a DB statement's parameters nor the driver's DETAIL/CONTEXT lines; e-mail addresses and
    URL passwords are masked; values quoted in a driver message are replaced by "***".
    """
    where = f" in {step}" if step else ""
    if isinstance(err, TransientStepError):  # already described
        return safe_text(str(err))
    db = _db_error(err)
    if db is err:
        return _describe_db(err, where)
    text = f"{type(err).__name__}{where}"
    message = _message(err)
    if db is not None:  # a wrapper's message may repeat its DB cause's text, with a quoted value
        message = _mask_quoted(message)
    message = safe_text(message)
    if message:
        text += f": {message}"
    if db is not None:
        text += f" (cause: {_describe_db(db, '')})"
    return text


# ------------------------------------------------------------------------------------------ classify


def _classify(err: BaseException) -> bool | None:
    """True (transient), False (deterministic) or None (says nothing: look at what caused it)."""
    if isinstance(err, TransientStepError):
        return True
    verdict = _classify_sqlalchemy(err)
    if verdict is not None:
        return verdict
    verdict = _classify_driver(err)
    if verdict is not None:
        return verdict
    verdict = _classify_http(err)
    if verdict is not None:
        return verdict
    verdict = _classify_domain(err)
    if verdict is not None:
        return verdict
    if isinstance(err, (TimeoutError, ConnectionError)):  # includes refused, reset, aborted, broken pipe
        return True
    if isinstance(err, _DETERMINISTIC):  # ConfigError, AccountError, KeyError from bad data, ...
        return False
    return None


def _classify_sqlalchemy(err: BaseException) -> bool | None:
    try:
        from sqlalchemy import exc as sa
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return None
    if isinstance(err, sa.DBAPIError):
        if err.connection_invalidated:
            return True
        if err.orig is not None:
            verdict = _classify_driver(err.orig)
            if verdict is not None:
                return verdict
        return isinstance(err, sa.OperationalError) and _sqlite_locked(str(err.orig or ""))
    if isinstance(err, (sa.DisconnectionError, sa.TimeoutError)):  # pool: gone or exhausted for a while
        return True
    if isinstance(err, sa.SQLAlchemyError):  # statement building, parameter processing, mapping
        return False
    return None


def _sqlstate(err: BaseException) -> str | None:
    code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)  # psycopg 3 / psycopg2
    return code if isinstance(code, str) and len(code) == 5 else None


def _classify_driver(err: BaseException) -> bool | None:
    """A DB-API driver's own exception (psycopg, psycopg2, sqlite3), wrapped by SQLAlchemy or not."""
    code = _sqlstate(err)
    if code is not None:
        return code[:2] in TRANSIENT_SQLSTATE_CLASSES or code in TRANSIENT_SQLSTATES
    if isinstance(err, sqlite3.Error):
        if getattr(err, "sqlite_errorcode", None) is not None and (err.sqlite_errorcode & 0xFF) in _SQLITE_BUSY_CODES:
            return True
        return isinstance(err, sqlite3.OperationalError) and _sqlite_locked(str(err))
    module = type(err).__module__.split(".")[0]
    if module in ("psycopg", "psycopg2") and _is_dbapi_error(err):
        # No SQLSTATE: the server never answered. OperationalError is a lost/refused connection.
        return any(c.__name__ == "OperationalError" for c in type(err).__mro__)
    return None


def _is_dbapi_error(err: BaseException) -> bool:
    return any(c.__name__ == "Error" and c.__module__.split(".")[0] in ("psycopg", "psycopg2")
               for c in type(err).__mro__)


def _sqlite_locked(message: str) -> bool:
    lowered = message.lower()
    return any(text in lowered for text in _SQLITE_LOCKED_TEXT)


def _http_status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(err, "status", None)
    return status if isinstance(status, int) and 100 <= status < 600 else None


def _classify_http(err: BaseException) -> bool | None:
    try:
        import requests
    except ImportError:  # pragma: no cover - requests is a dependency
        return None
    if isinstance(err, (requests.ConnectionError, requests.Timeout)):  # incl. ConnectTimeout, ReadTimeout
        return True
    if isinstance(err, requests.HTTPError):
        status = _http_status(err)
        return status is not None and (status == 429 or status >= 500)
    return None


def _classify_domain(err: BaseException) -> bool | None:
    """lastmile's own classified errors (vendor clients, e-mail transports, named locks)."""
    from lastmile.carriers.vendor_http import VendorError, VendorUnavailable
    from lastmile.email.outgoing import TransportError, TryLater

    if isinstance(err, (VendorUnavailable, TryLater)):
        return True
    if isinstance(err, (VendorError, TransportError)):  # refused, unauthorized, malformed, rejected
        status = _http_status(err)
        return status is not None and (status == 429 or status >= 500)
    try:
        from lastmile.store.db import Busy
    except ImportError:  # pragma: no cover
        return None
    if isinstance(err, Busy):
        return True
    return None


# ------------------------------------------------------------------------------------------ describe


def _qualified(err: BaseException) -> str:
    module = type(err).__module__.split(".")[0]
    return type(err).__name__ if module in ("builtins", "lastmile") else f"{module}.{type(err).__name__}"


def _db_error(err: BaseException) -> BaseException | None:
    """The first link of the chain that is a SQLAlchemy statement error or a driver error."""
    try:
        from sqlalchemy import exc as sa
    except ImportError:  # pragma: no cover
        return None
    for link in chain(err):
        if isinstance(link, sa.StatementError) or isinstance(link, sqlite3.Error) or _is_dbapi_error(link):
            return link
    return None


def _describe_db(err: BaseException, where: str) -> str:
    """'DataError (psycopg StringDataRightTruncation, SQLSTATE 22001) in step: value too long for ...'."""
    from sqlalchemy import exc as sa

    if isinstance(err, sa.StatementError) and not isinstance(err, sa.DBAPIError):
        # Failed before reaching the database (parameter processing): its message may quote a value.
        inner = f" ({type(err.orig).__name__})" if err.orig is not None else ""
        return f"{type(err).__name__}{inner}{where}"
    parts: list[str] = []
    if isinstance(err, sa.DBAPIError):
        name, driver = type(err).__name__, err.orig
        if driver is not None:
            parts.append(f"{type(driver).__module__.split('.')[0]} {type(driver).__name__}")
    else:
        name, driver = _qualified(err), err
    code = _sqlstate(driver) if driver is not None else None
    if code:
        parts.append(f"SQLSTATE {code}")
    if isinstance(driver, sqlite3.Error) and getattr(driver, "sqlite_errorname", None):
        parts.append(driver.sqlite_errorname)
    text = f"{name} ({', '.join(parts)}){where}" if parts else f"{name}{where}"
    message = safe_text(_mask_quoted(_first_line(str(driver)))) if driver is not None else ""
    return f"{text}: {message}" if message else text


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# Postgres quotes identifiers after these words; any other quoted text in a message is a value.
_IDENTIFIER_WORDS = frozenset({
    "constraint", "column", "relation", "table", "index", "type", "function", "schema", "database", "role",
    "sequence", "view", "operator", "extension", "trigger", "domain", "user", "tablespace", "at",
})
_QUOTED = re.compile(r'([^\s"]*)\s*"[^"]*"')


def _mask_quoted(text: str) -> str:
    """'invalid input syntax for type integer: "Zoë"' -> '... integer: "***"'; keeps quoted identifiers."""
    def repl(match: re.Match[str]) -> str:
        before = match.group(1)
        if before.lower() in _IDENTIFIER_WORDS:
            return match.group(0)
        return re.sub(r'"[^"]*"', '"***"', match.group(0))
    return _QUOTED.sub(repl, text)


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1:
        return repr(err.args[0])
    return str(err)


# Where SQLAlchemy and drivers append statement, parameters and row details to a message.
_TAILS = re.compile(r"\[SQL:|\[parameters:|\bDETAIL:|\bCONTEXT:|\(Background on this error", re.IGNORECASE)


def safe_text(text: str) -> str:
    """Free text fit for a log or an alert: no SQL tail, no URL password, no e-mail, one line, clipped."""
    cut = _TAILS.search(text)
    if cut:
        text = text[:cut.start()]
    text = mask_emails_in(mask_url(text)) or ""
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1].rstrip() + "…"
