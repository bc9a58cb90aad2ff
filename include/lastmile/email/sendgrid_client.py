"""SendGrid through the official `sendgrid` library, over one pooled keep-alive connection.

The library builds every request (Mail helpers, auth headers, URL); only the last hop is replaced
so that a batch reuses one HTTP connection instead of opening one per message. Every failure is
classified by what it means for exactly-once delivery:

The failure classes live in lastmile.email.transport (every transport raises them):
- `Rejected`: SendGrid said no for good (400, 403, 413): the message will never go as it is.
- `Unauthorized`: the API key is wrong: stop the batch, keep the messages for the next run.
- `TryLater`: nothing was accepted (429 or 5xx after retries, connection refused).
- `Ambiguous`: the request may have been accepted (timeout or a dropped connection after the
  request was sent): it must not be resent blindly.
"""

from __future__ import annotations

import email.message
import io
import json
import logging
import os
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import python_http_client
import requests
from python_http_client.exceptions import HTTPError, handle_error
from requests.adapters import HTTPAdapter
from sendgrid import SendGridAPIClient

from lastmile.config import base_url
from lastmile.core.retry import GaveUp, RetryLater, call_with_retries, wait_hint
from lastmile.email.outgoing import Ambiguous, Rejected, TryLater, Unauthorized

log = logging.getLogger(__name__)
# The library logs whole request payloads and headers (the API key, addresses, names) at DEBUG.
logging.getLogger("python_http_client").setLevel(logging.WARNING)

DEFAULT_HOST = "https://api.sendgrid.com"
SEND_AT_LIMIT_SECONDS = 72 * 3600  # SendGrid refuses send_at further ahead than 72 hours


@dataclass(frozen=True)
class SendGridConfig:
    api_key: str
    host: str = DEFAULT_HOST
    sandbox_mode: bool = False
    asm_group_id: int | None = None
    timeout: float = 10.0
    max_attempts: int = 5
    max_wait: float = 60.0  # cap on one Retry-After or backoff wait

    def __repr__(self) -> str:  # never print the key
        return f"SendGridConfig(host={self.host!r}, sandbox_mode={self.sandbox_mode}, asm_group_id={self.asm_group_id})"


class SendGridConfigError(ValueError):
    """The SendGrid Connection is missing or unusable. The message never holds the API key."""


def _flag(value: Any) -> bool:
    """A Connection extra as a boolean: JSON true/false, or the strings "true"/"false"/"1"/"0"."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def sendgrid_config_from_fields(conn_id: str, host: str | None, port: int | str | None, password: str | None,
                                extra: Mapping[str, Any] | None) -> SendGridConfig:
    """The one mapping of a SendGrid Connection's fields to a config, for Airflow and the command line.

    password = the API key; host (and port), when set, override the API base URL -- a host without a
    protocol is https unless extra `scheme` says otherwise; extra may set sandbox_mode, asm_group_id
    (follow-ups only) and timeout (seconds).
    """
    if not password:
        raise SendGridConfigError(f"connection {conn_id!r} has no password: put the SendGrid API key there")
    extra = extra or {}
    if host and "://" not in host and extra.get("scheme"):
        host = f"{extra['scheme']}://{host}"
    try:
        port_number = int(port) if port not in (None, "") else None
    except (TypeError, ValueError):
        raise SendGridConfigError(f"connection {conn_id!r}: the port is not a number") from None
    group = extra.get("asm_group_id")
    try:
        asm_group_id = int(group) if group not in (None, "", 0, "0") else None
    except (TypeError, ValueError):
        raise SendGridConfigError(f"connection {conn_id!r}: extra asm_group_id must be a whole number") from None
    try:
        timeout = float(extra.get("timeout", 10))
    except (TypeError, ValueError):
        raise SendGridConfigError(f"connection {conn_id!r}: extra timeout must be a number of seconds") from None
    return SendGridConfig(api_key=password, host=base_url(host, port_number, DEFAULT_HOST) or DEFAULT_HOST,
                          sandbox_mode=_flag(extra.get("sandbox_mode", False)), asm_group_id=asm_group_id,
                          timeout=timeout)


def connection_var(conn_id: str) -> str:
    """The environment variable Airflow reads a Connection from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _fields_from_json(conn_id: str, raw: str) -> dict[str, Any]:
    try:
        conn = json.loads(raw)
        extra = conn.get("extra") or {}
        extra = json.loads(extra) if isinstance(extra, str) else extra
    except (ValueError, AttributeError):  # the document may hold the key: never quote it
        raise SendGridConfigError(f"{connection_var(conn_id)} is not a valid JSON connection") from None
    if not isinstance(extra, Mapping):
        raise SendGridConfigError(f"{connection_var(conn_id)}: extra must be a JSON object")
    return {"host": conn.get("host"), "port": conn.get("port"), "password": conn.get("password"), "extra": extra}


def _fields_from_uri(conn_id: str, raw: str) -> dict[str, Any]:
    """Airflow's URI form: `type://login:password@host:port/schema?extra`, or with the host's
    protocol spelled out, `type://https://:password@host:port` (as Airflow's Connection parses it)."""
    invalid = SendGridConfigError(f"{connection_var(conn_id)} is not a valid connection URI "
                                  f"(e.g. sendgrid://:API_KEY@api.sendgrid.com)")
    try:
        schemes = raw.count("://")
        conn_type = urlsplit(raw).scheme
        if schemes < 1 or schemes > 2 or not conn_type:
            raise invalid
        rest = raw.split("://", 1)[1]
        protocol = None
        if schemes == 2:
            protocol, rest = rest.split("://", 1)
            if "@" in protocol or ":" in protocol:
                raise invalid
        parts = urlsplit(f"//{rest}")
        hostname = unquote(parts.hostname or "")
        port = parts.port  # raises ValueError on a non-number: the text may be the key, never quote it
        password = unquote(parts.password) if parts.password else None
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
    except ValueError:
        raise invalid from None
    if "__extra__" in query:
        try:
            extra = json.loads(query["__extra__"])
        except ValueError:
            raise SendGridConfigError(f"{connection_var(conn_id)}: __extra__ is not valid JSON") from None
    else:
        extra = {}
        for key, value in query.items():
            try:
                extra[key] = json.loads(value) if value else value
            except ValueError:
                extra[key] = value
    host = f"{protocol}://{hostname}" if protocol and hostname else hostname or None
    return {"host": host, "port": port, "password": password, "extra": extra}


def sendgrid_config_from_env(conn_id: str = "sendgrid_default", env: Mapping[str, str] | None = None
                             ) -> SendGridConfig:
    """The SendGrid config from `AIRFLOW_CONN_<CONN_ID>` (Airflow's JSON or URI form): the command
    line's way to the same Connection the DAG reads through Airflow."""
    env = os.environ if env is None else env
    var = connection_var(conn_id)
    raw = (env.get(var) or "").strip()
    if not raw:
        raise SendGridConfigError(
            f"no SendGrid connection {conn_id!r}: set {var} to the Airflow connection, as JSON "
            f"('{{\"conn_type\": \"sendgrid\", \"password\": \"<API key>\"}}') or as a URI "
            f"('sendgrid://:<API key>@api.sendgrid.com')")
    fields = _fields_from_json(conn_id, raw) if raw.startswith("{") else _fields_from_uri(conn_id, raw)
    return sendgrid_config_from_fields(conn_id, **fields)


class _Reply:
    """What python_http_client.Response expects from urllib: getcode(), read(), info()."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response

    def getcode(self) -> int:
        return self._response.status_code

    def read(self) -> bytes:
        return self._response.content

    def info(self) -> email.message.Message:
        headers = email.message.Message()
        for key, value in self._response.headers.items():
            headers[key] = value
        return headers


class _PooledClient(python_http_client.Client):
    """python_http_client.Client whose requests go through one shared requests.Session."""

    session: requests.Session

    def _build_client(self, name: str | None = None) -> _PooledClient:
        child = _PooledClient(host=self.host, version=self._version, request_headers=self.request_headers,
                              url_path=self._url_path + [name] if name else self._url_path,
                              append_slash=self.append_slash, timeout=self.timeout)
        child.session = self.session
        return child

    def _make_request(self, opener: Any, request: Any, timeout: float | None = None) -> _Reply:
        response = self.session.request(request.get_method(), request.get_full_url(), data=request.data,
                                        headers=dict(request.header_items()), timeout=timeout or self.timeout)
        if response.status_code >= 400:
            # Raise exactly what the official client raises (BadRequestsError, TooManyRequestsError, ...).
            err = urllib.error.HTTPError(request.get_full_url(), response.status_code, response.reason,
                                         _Reply(response).info(), io.BytesIO(response.content))
            raise handle_error(err)
        return _Reply(response)


def make_api_client(config: SendGridConfig) -> SendGridAPIClient:
    """The official client, pointed at `config.host`, with a pooled session and a timeout."""
    api = SendGridAPIClient(api_key=config.api_key, host=config.host)
    pooled = _PooledClient(host=api.host, request_headers=api._default_headers, version=3,
                           timeout=config.timeout)
    session = requests.Session()
    # Proxies from the environment, read once for SendGrid's host rather than on every request.
    session.proxies.update(requests.utils.get_environ_proxies(api.host))
    session.trust_env = False
    session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0))
    session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=4, max_retries=0))
    pooled.session = session
    api.client = pooled
    return api


def _error_detail(err: HTTPError) -> str:
    body = err.body.decode("utf-8", "replace") if isinstance(err.body, bytes) else str(err.body)
    return f"HTTP {err.status_code}: {body[:300]}"


def _never_connected(err: requests.ConnectionError) -> bool:
    """True when the request cannot have reached SendGrid (refused, DNS, connect timeout)."""
    text = repr(err)
    return isinstance(err, requests.ConnectTimeout) or "NewConnectionError" in text or "NameResolution" in text


class SendGridSender:
    """Sends one request body, retrying what is safe to retry, classifying what is not."""

    def __init__(self, config: SendGridConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.api = make_api_client(config)
        self.sleep = sleep
        self._session = self.api.client.session
        self._mail_url = f"{self.api.host.rstrip('/')}/v3/mail/send"
        self._headers = {**self.api._default_headers, "Content-Type": "application/json"}

    def post(self, body: dict[str, Any]) -> str:
        """POST /v3/mail/send; returns SendGrid's X-Message-Id. Raises a SendGridError subclass.

        The body comes from the official library's Mail helpers; the request goes straight over the
        pooled session (the library's own client builds a urllib opener and re-reads the proxy
        environment for every message, a third of the send step's time).
        """
        data = json.dumps(body).encode("utf-8")

        def attempt() -> str:
            try:
                response = self._session.post(self._mail_url, data=data, headers=self._headers,
                                              timeout=self.config.timeout)
            except requests.Timeout as err:
                if isinstance(err, requests.ConnectTimeout):
                    raise RetryLater("connect timeout") from None
                raise Ambiguous(f"no answer within {self.config.timeout:g} s after sending") from None
            except requests.ConnectionError as err:
                if _never_connected(err):
                    raise RetryLater(f"cannot connect: {type(err).__name__}") from None
                raise Ambiguous(f"connection dropped after sending: {type(err).__name__}") from None
            status = response.status_code
            if status < 300:
                return str(response.headers.get("X-Message-Id") or "")
            last = f"HTTP {status}: {response.content.decode('utf-8', 'replace')[:300]}"
            if status == 401:
                raise Unauthorized(last, 401)
            if status == 429:  # SendGrid documents X-RateLimit-Reset; a proxy may say Retry-After
                raise RetryLater(last, wait_hint(response.headers), status)
            if status >= 500:
                raise RetryLater(last, None, status)
            raise Rejected(last, status)

        try:
            return call_with_retries(attempt, max_attempts=self.config.max_attempts, max_wait=self.config.max_wait,
                                     sleep=self.sleep)
        except GaveUp as gave_up:
            raise TryLater(str(gave_up)) from None

    def get_all(self, path: str, page_size: int = 500) -> Iterator[Any]:
        """Every item of a SendGrid list endpoint paged by limit/offset (e.g. suppression lists)."""
        offset = 0
        while True:
            node = self.api.client
            for part in path.strip("/").split("/"):
                node = node._(part)
            try:
                response = node.get(query_params={"limit": page_size, "offset": offset})
            except HTTPError as err:
                if err.status_code == 401:
                    raise Unauthorized(_error_detail(err), 401) from None
                raise TryLater(_error_detail(err), err.status_code) from None
            items = response.to_dict or []
            yield from items
            if len(items) < page_size:
                return
            offset += page_size


def unix_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


SUPPRESSION_LISTS = ("bounces", "blocks", "spam_reports", "unsubscribes", "invalid_emails")


def fetch_suppressions(sender: SendGridSender) -> list[dict[str, Any]]:
    """Every suppressed address from SendGrid's lists (and our ASM group), as suppression rows."""
    rows: list[dict[str, Any]] = []
    for kind in SUPPRESSION_LISTS:
        for item in sender.get_all(f"suppression/{kind}"):
            created = item.get("created")
            rows.append({"email": str(item["email"]).lower(), "kind": kind, "reason": item.get("reason"),
                         "created_at": datetime.fromtimestamp(created, UTC) if isinstance(created, int | float)
                         else None})
    group = sender.config.asm_group_id
    if group:
        for address in sender.get_all(f"asm/groups/{group}/suppressions"):
            rows.append({"email": str(address).lower(), "kind": "asm_group", "reason": f"group {group}",
                         "created_at": None})
    return rows
