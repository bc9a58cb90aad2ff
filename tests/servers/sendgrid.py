"""A local SendGrid v3 server for tests: real HTTP, SendGrid's own OpenAPI shapes, scriptable faults.

Speaks the subset of the v3 Web API that lastmile uses, validated against SendGrid's published
OpenAPI documents in ``../shared/fixtures/sendgrid`` (twilio/sendgrid-oai):

* ``POST /v3/mail/send`` -- body validated against ``components.requestBodies.PostMailSend`` of
  ``tsg_mail_v3.json``; 400 lists one ``{"message", "field", "help"}`` per violation; 202 with an
  empty body and ``X-Message-Id`` otherwise.
* ``GET /v3/suppression/{bounces,blocks,spam_reports,unsubscribes,invalid_emails}`` with
  ``start_time``/``end_time`` (inclusive unix seconds on ``created``), ``limit`` (1..500) and
  ``offset`` (>= 0) paging, and the ``email`` prefix filter (``%`` is a wildcard), item shapes as in
  ``tsg_suppressions_v3.json``.
* ``GET /v3/asm/groups/{group_id}/suppressions`` -- a JSON list of email strings (the spec documents
  no query parameters for it, so none are applied).

Every endpoint requires ``Authorization: Bearer <api_key>``; anything else gets SendGrid's 401.

Use::

    with SendGridServer() as sg:
        client = SendGridAPIClient(api_key=sg.api_key, host=sg.url)
        sg.script(("429", 2), 500, "accept_then_drop")   # the next three mail/send calls
        ...
        assert sg.accepted[0].body["personalizations"][0]["custom_args"]["message_key"] == "..."

Spec quirks handled when loading (see ``_patch_mail_schema``): the top-level ``custom_args`` is typed
``string`` in the spec while SendGrid (and its official client) use an object; ``personalizations``
and ``content`` have no ``minItems`` in the spec although the descriptions/API require at least one.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from servers.base import (
    Behaviour,
    RecordedRequest,
    RecordList,
    ScriptedServer,
    VendorHandler,
    parse_behaviour,
)

SPEC_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sendgrid"
MAIL_SPEC = "tsg_mail_v3.json"
SUPPRESSIONS_SPEC = "tsg_suppressions_v3.json"

MAIL_BODY_POINTER = "#/components/requestBodies/PostMailSend/content/application~1json/schema"

SUPPRESSION_KINDS = ("bounces", "blocks", "spam_reports", "unsubscribes", "invalid_emails")
ASM_GROUP = "asm_group"

# Item fields per list, exactly as the 200 response schemas in tsg_suppressions_v3.json.
SUPPRESSION_FIELDS: dict[str, tuple[str, ...]] = {
    "bounces": ("created", "email", "reason", "status"),        # BounceResponse
    "blocks": ("created", "email", "reason", "status"),         # BlocksResponse
    "spam_reports": ("created", "email", "ip"),                 # SpamReportsResponse
    "unsubscribes": ("created", "email"),                       # inline schema
    "invalid_emails": ("created", "email", "reason"),           # InvalidEmail
}
_DEFAULTS: dict[str, dict[str, str]] = {  # values taken from the spec's examples
    "bounces": {"reason": "550 5.1.1 The email account that you tried to reach does not exist.",
                "status": "5.1.1"},
    "blocks": {"reason": "unable to resolve MX record for example.com: servfail", "status": "4.0.0"},
    "spam_reports": {"ip": "10.63.202.100"},
    "unsubscribes": {},
    "invalid_emails": {"reason": "Mail domain mentioned in email address is unknown"},
}
MAX_PAGE_SIZE = 500  # PaginationCommonLimit: minimum 1, maximum 500

_REASONS = {
    400: "invalid request",
    401: "authorization required",
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    413: "content too large",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


# --------------------------------------------------------------------------------------------- spec


def _load(name: str, spec_dir: Path) -> dict[str, Any]:
    path = spec_dir / name
    if not path.exists():
        raise FileNotFoundError(f"SendGrid OpenAPI file not found: {path} (clone the project beside ../shared)")
    return json.loads(path.read_text())


def _patch_mail_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of tsg_mail_v3.json with the known quirks fixed; everything else untouched."""
    spec = copy.deepcopy(spec)
    body = spec["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["schema"]
    props = body["properties"]
    # Quirk 1 (fixtures README): top-level custom_args is typed "string"; SendGrid and the official
    # client use an object of string values, like the per-personalization custom_args.
    props["custom_args"] = {**props["custom_args"], "type": "object", "maxProperties": 10000}
    # Quirk 2: no minItems although "personalizations" is required and an envelope needs at least one
    # entry (SendGrid answers 400 for []), and content's description says "You must specify at least
    # one MIME type".
    props["personalizations"].setdefault("minItems", 1)
    props["content"].setdefault("minItems", 1)
    return spec


@lru_cache(maxsize=4)
def _mail_validator(spec_dir: Path) -> Draft202012Validator:
    spec = _patch_mail_schema(_load(MAIL_SPEC, spec_dir))
    uri = "urn:sendgrid:tsg_mail_v3"
    registry = Registry().with_resource(uri, Resource.from_contents(spec, default_specification=DRAFT202012))
    # The "#/components/schemas/..." refs inside resolve against the whole spec document (uri).
    return Draft202012Validator({"$ref": uri + MAIL_BODY_POINTER}, registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def mail_validator(spec_dir: Path = SPEC_DIR) -> Draft202012Validator:
    """The (patched) PostMailSend validator the server uses; exposed so tests can pre-check bodies."""
    return _mail_validator(Path(spec_dir))


def _field_of(error: Any) -> str:
    """SendGrid names fields as dotted paths with numeric indices: ``personalizations.0.to.0.email``."""
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = [p for p in error.validator_value if f"{p!r} is a required property" == error.message]
        parts.extend(missing[:1])
    return ".".join(parts) if parts else None  # type: ignore[return-value]


def validation_errors(body: Any, spec_dir: Path = SPEC_DIR) -> list[dict[str, Any]]:
    """SendGrid-shaped error entries for a mail/send body; empty when valid."""
    errors = sorted(mail_validator(spec_dir).iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
    return [{"message": e.message, "field": _field_of(e), "help": None} for e in errors]


# ---------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class AcceptedMessage:
    message_id: str
    body: dict[str, Any]
    headers: dict[str, str]  # names lower-cased
    dropped: bool = False  # True when the client never got the 202 (accept_then_drop)
    accepted_at: float = field(default_factory=time.time)


def behaviour(spec: Any) -> Behaviour:
    """Normalise one scripted response (``servers.base.parse_behaviour`` with SendGrid's words).

    ``202`` (normal processing), any 4xx/5xx int (forced error, SendGrid error JSON), ``("429", s)``
    (429 + ``Retry-After: s``), ``(400, field, message)``, ``("hang", seconds)`` (sleep, then normal
    processing -> 202; the message is recorded when the sleep ends, even if the client has given up,
    and abandoned unrecorded if the server stops first), ``("accept_then_drop",)`` / ``"accept_then_drop"``
    (record as accepted, close the connection without a response).
    """
    return parse_behaviour(spec, ok=202, drop_names=("accept_then_drop", "drop"), malformed=False)


# ----------------------------------------------------------------------------------------- server



class SendGridServer(ScriptedServer):
    """A SendGrid v3 look-alike on 127.0.0.1:<random port>, served from a daemon thread."""

    def __init__(self, api_key: str | None = None, spec_dir: Path | str = SPEC_DIR,
                 default_page_size: int = MAX_PAGE_SIZE) -> None:
        super().__init__()
        self.api_key = api_key or f"SG.{secrets.token_urlsafe(16)}.{secrets.token_urlsafe(32)}"
        self.spec_dir = Path(spec_dir)
        self.default_page_size = default_page_size  # the spec leaves "the default page size" unstated
        self._validator = mail_validator(self.spec_dir)  # fail fast when the spec is missing
        self._suppressions: dict[str, list[dict[str, Any]]] = {k: [] for k in SUPPRESSION_KINDS}
        self._groups: dict[int, list[str]] = {}
        self.accepted = RecordList()

    name = "sendgrid-server"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- scripting

    def script(self, *responses: Any) -> None:
        """Queue behaviours for the next mail/send calls, one per call, in order (see ``behaviour``).

        Every mail/send request consumes one entry, whatever its outcome. Forced statuses answer without
        looking at auth or body; ``202``, ``hang`` and ``accept_then_drop`` run the normal auth and
        schema checks first (an invalid body still gets its 400, and is then not recorded or dropped).
        """
        super().script(*responses)

    def behaviour(self, spec: Any) -> Behaviour:
        return behaviour(spec)

    def error_payload(self, step: Behaviour) -> Any:
        return _errors(step.message or _REASONS.get(step.status, "error"), step.code)

    def fault_headers(self, step: Behaviour) -> list[tuple[str, str]]:
        if step.status != 429:
            return []
        if step.code == "rate-limit-reset":  # as SendGrid documents a 429: the X-RateLimit-* headers only
            return [("X-RateLimit-Limit", "600"), ("X-RateLimit-Remaining", "0"),
                    ("X-RateLimit-Reset", str(int(time.time()) + int(step.message or 0)))]
        seconds = int(step.retry_after or 0)
        return [("Retry-After", str(seconds)), ("X-RateLimit-Limit", "600"), ("X-RateLimit-Remaining", "0"),
                ("X-RateLimit-Reset", str(int(time.time()) + seconds))]

    def fail_next(self, n: int, status: int = 500, retry_after: int = 1) -> None:
        """The next ``n`` mail/send calls answer ``status`` (429 carries ``Retry-After: retry_after``)."""
        self.script(*([(status, retry_after) if status == 429 else status] * n))

    def storm(self, pattern: Any, count: int) -> None:
        """Queue ``count`` behaviours cycling through ``pattern`` (one behaviour or a list of them)."""
        items = list(pattern) if isinstance(pattern, list) else [pattern]
        self.script(*[items[i % len(items)] for i in range(count)])

    # -- suppressions

    def suppress(self, kind: str, email: str, created: int | float | datetime | None = None,
                 reason: str | None = None, *, status: str | None = None, ip: str | None = None,
                 group_id: int | None = None) -> None:
        """Add an address to a suppression list.

        ``kind``: bounces, blocks, spam_reports, unsubscribes, invalid_emails, or ``asm_group`` (then
        ``group_id`` is required). ``created`` is unix seconds or an aware datetime (default: now).
        """
        if kind == ASM_GROUP:
            if group_id is None:
                raise ValueError("asm_group suppressions need group_id=")
            with self._lock:
                self._groups.setdefault(int(group_id), []).append(email)
            return
        if kind not in SUPPRESSION_FIELDS:
            raise ValueError(f"unknown suppression kind {kind!r}; one of {SUPPRESSION_KINDS + (ASM_GROUP,)}")
        if isinstance(created, datetime):
            if created.tzinfo is None:
                raise ValueError("created must be timezone-aware")
            created = created.timestamp()
        given = {"reason": reason, "status": status, "ip": ip}
        fields = SUPPRESSION_FIELDS[kind]
        stray = [k for k, v in given.items() if v is not None and k not in fields]
        if stray:
            raise ValueError(f"{kind} items have no {stray} (fields: {fields})")
        item: dict[str, Any] = {"created": int(time.time() if created is None else created), "email": email}
        for name in fields[2:]:
            item[name] = given[name] if given[name] is not None else _DEFAULTS[kind][name]
        with self._lock:
            self._suppressions[kind].append(item)

    def suppress_in_group(self, group_id: int, *emails: str) -> None:
        for email in emails:
            self.suppress(ASM_GROUP, email, group_id=group_id)

    def reset(self) -> None:
        """Forget scripts, records and suppressions (the API key and port stay)."""
        self._forget()
        with self._lock:
            for items in self._suppressions.values():
                items.clear()
            self._groups.clear()
        self.accepted._clear()

    # -- request handling (called from handler threads)

    def _authorized(self, headers: dict[str, str]) -> tuple[bool, str]:
        auth = headers.get("authorization")
        if not auth:
            return False, "authorization required"
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), self.api_key):
            return False, "The provided authorization grant is invalid, expired, or revoked"
        return True, ""

    def _list_suppressions(self, kind: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        params: dict[str, int] = {}
        for name, low, high in (("start_time", None, None), ("end_time", None, None),
                                ("limit", 1, MAX_PAGE_SIZE), ("offset", 0, None)):
            if name not in query:
                continue
            raw = query[name][-1]
            try:
                value = int(raw)
            except ValueError:
                return 400, _errors(f"{name} must be an integer", name)
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
                return 400, _errors(f"{name} must be {bounds}", name)
            params[name] = value
        with self._lock:
            items = [dict(i) for i in self._suppressions[kind]]
        if "start_time" in params:
            items = [i for i in items if i["created"] >= params["start_time"]]
        if "end_time" in params:
            items = [i for i in items if i["created"] <= params["end_time"]]
        if "email" in query:
            pattern = re.compile(".*".join(re.escape(p) for p in query["email"][-1].split("%")), re.I)
            items = [i for i in items if pattern.match(i["email"])]
        offset = params.get("offset", 0)
        limit = params.get("limit", self.default_page_size)
        return 200, items[offset:offset + limit]

    def _group_suppressions(self, group_id: str) -> tuple[int, Any]:
        try:
            gid = int(group_id)
        except ValueError:
            return 404, _errors("not found")
        with self._lock:
            return 200, list(self._groups.get(gid, []))


def _errors(message: str, fld: str | None = None) -> dict[str, Any]:
    return {"errors": [{"message": message, "field": fld, "help": None}]}


_SUPPRESSION_PATH = re.compile(r"^/v3/suppression/(?P<kind>[a-z_]+)$")
_GROUP_PATH = re.compile(r"^/v3/asm/groups/(?P<group_id>[^/]+)/suppressions$")


class _Handler(VendorHandler):
    vendor: ClassVar[SendGridServer]
    keep_blank_values = False
    parse_json_body = False  # the body may be gzipped; _mail_send decodes it

    def _route(self, record: RecordedRequest) -> None:
        server, path = self.vendor, record.path
        if path == "/v3/mail/send":
            if self.command != "POST":
                return self._send(record, 405, _errors("method not allowed"))
            return self._mail_send(record)
        match = _SUPPRESSION_PATH.match(path)
        group = _GROUP_PATH.match(path)
        if (match and match["kind"] in SUPPRESSION_KINDS) or group:
            if self.command != "GET":
                return self._send(record, 405, _errors("method not allowed"))
            ok, why = server._authorized(record.headers)
            if not ok:
                return self._send(record, 401, _errors(why))
            if match:
                status, payload = server._list_suppressions(match["kind"], record.query)
            else:
                status, payload = server._group_suppressions(group["group_id"])
            return self._send(record, status, payload)
        return self._send(record, 404, _errors("not found"))

    def _handle(self) -> None:
        record = self._read()
        self._route(record)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    # ---- POST /v3/mail/send

    def _mail_send(self, record: RecordedRequest) -> None:
        server = self.vendor
        step = server._next_behaviour()
        if self.play(record, step, drop_now=False):
            return

        ok, why = server._authorized(record.headers)
        if not ok:
            return self._send(record, 401, _errors(why), outcome="unauthorized")
        raw = record.raw_body
        if record.headers.get("content-encoding", "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                return self._send(record, 400, _errors("Bad Request"), outcome="rejected")
        try:
            record.body = json.loads(raw)
        except ValueError:
            return self._send(record, 400, _errors("Bad Request"), outcome="rejected")
        errors = validation_errors(record.body, server.spec_dir)
        if errors:
            return self._send(record, 400, {"errors": errors}, outcome="rejected")

        message_id = secrets.token_urlsafe(16)[:22]
        server.accepted._append(AcceptedMessage(message_id, record.body, record.headers,
                                                dropped=step.kind == "drop"))
        if step.kind == "drop":
            return self._drop(record)
        self._send(record, 202, None, [("X-Message-Id", message_id)], outcome="accepted")


SendGridServer.handler_class = _Handler
