"""E-mail transports. The file transport writes .eml files plus an index.html a person can open."""

from __future__ import annotations

import hashlib
import html
import os
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lastmile.config import Settings
from lastmile.core.brand import Brand
from lastmile.core.policy import NON_CRITICAL_KINDS
from lastmile.core.privacy import mask_email, one_line
from lastmile.email.emails import sender_label
from lastmile.email.outgoing import Outgoing

if TYPE_CHECKING:
    from lastmile.email.sendgrid_client import SendGridConfig, SendGridSender


class Transport(Protocol):
    def send(self, message: Outgoing) -> str:
        """Deliver one message; return the provider's reference. Raise on any failure."""
        ...


def build_mime(message: Outgoing, brand: Brand) -> EmailMessage:
    """The RFC 5322 message. Header values are single lines: no CR/LF from data can add a header."""
    mime = EmailMessage()
    sender_user, _, sender_domain = brand.sender_email.partition("@")
    mime["From"] = Address(one_line(sender_label(brand, html_language(message.body_html))), sender_user,
                           sender_domain)
    user, _, domain = message.recipient.partition("@")
    mime["To"] = Address(one_line(message.recipient_name), user, domain)
    reply_user, _, reply_domain = brand.reply_to.partition("@")
    mime["Reply-To"] = Address(one_line(brand.name), reply_user, reply_domain)
    mime["Subject"] = one_line(message.subject)
    mime["Date"] = format_datetime(message.planned_at)
    digest = hashlib.sha1(message.message_key.encode()).hexdigest()[:24]
    mime["Message-ID"] = f"<{digest}@lastmile.{sender_domain}>"
    mime["X-Lastmile-Message-Key"] = one_line(message.message_key)
    if message.send_at is not None:
        mime["X-Lastmile-Send-At"] = message.send_at.isoformat()
    mime.set_content(message.body_text)
    mime.add_alternative(message.body_html, subtype="html")
    return mime


# Characters a stem keeps as they are: safe in file names everywhere and in an href without quoting.
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.@+=,")
_SAFE = re.compile(r"[A-Za-z0-9\-_.@+=,]*")  # _SAFE_CHARS, for a whole key at once (the outbox page names 1,000)
MAX_STEM = 120  # characters (all ASCII): far below every file system's 255-byte name limit
_HASH_CHARS = 16  # hex digits of sha256: 64 bits, no collision in practice


def file_stem(message_key: str) -> str:
    """The file name (without suffix) of a message: its key with '/' as '__' when that is short and
    safe, else a clipped, cleaned prefix plus '~' and a hash of the whole key.

    Distinct keys get distinct stems: a readable stem has no '~' and maps back to its key (keys whose
    '__' would make that ambiguous take the hashed form); a hashed stem differs by its hash.
    """
    readable = message_key.replace("/", "__")
    if (readable and len(readable) <= MAX_STEM and not readable.startswith(".")
            and _SAFE.fullmatch(readable) and readable.replace("__", "/") == message_key):
        return readable
    digest = hashlib.sha256(message_key.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    prefix = "".join(c if c in _SAFE_CHARS else "_" for c in readable if c.isprintable())
    prefix = prefix[: MAX_STEM - 1 - _HASH_CHARS].strip("._") or "message"
    return f"{prefix}~{digest}"


class FileTransport:
    """Writes each message once as out/outbox/<key>.eml (+ .html preview); rewriting is harmless."""

    def __init__(self, folder: Path, brand: Brand) -> None:
        self.folder = folder
        self.brand = brand
        folder.mkdir(parents=True, exist_ok=True)

    def send(self, message: Outgoing) -> str:
        stem = file_stem(message.message_key)
        _atomic_write(self.folder / f"{stem}.eml", build_mime(message, self.brand).as_bytes())
        _atomic_write(self.folder / f"{stem}.html", message.body_html.encode("utf-8"))
        return f"file:{stem}.eml"


class SendGridTransport:
    """POST /v3/mail/send with the official library: one request per message, one connection."""

    def __init__(self, sender: SendGridSender, brand: Brand) -> None:
        self.sender = sender
        self.brand = brand

    def body(self, message: Outgoing) -> dict[str, Any]:
        """The request body, built with the library's Mail helpers (validated by our spec tests)."""
        from sendgrid.helpers.mail import (
            Asm,
            Category,
            Content,
            CustomArg,
            From,
            GroupId,
            Mail,
            MailSettings,
            Personalization,
            ReplyTo,
            SandBoxMode,
            SendAt,
            Subject,
            To,
        )

        config = self.sender.config
        mail = Mail()
        mail.from_email = From(self.brand.sender_email,
                               one_line(sender_label(self.brand, html_language(message.body_html))))
        mail.reply_to = ReplyTo(self.brand.reply_to, one_line(self.brand.name))
        mail.subject = Subject(one_line(message.subject))
        person = Personalization()
        person.add_to(To(message.recipient, one_line(message.recipient_name)))
        # Our keys ride with the message so provider events can be joined back to the outbox.
        person.add_custom_arg(CustomArg("message_key", message.message_key))
        person.add_custom_arg(CustomArg("case_id", message.case_id))
        mail.add_personalization(person)
        mail.add_content(Content("text/plain", message.body_text))
        mail.add_content(Content("text/html", message.body_html))
        mail.add_category(Category(message.kind))
        if message.kind in NON_CRITICAL_KINDS and config.asm_group_id:
            mail.asm = Asm(GroupId(config.asm_group_id))
        if config.sandbox_mode:
            mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
        if message.send_at is not None:
            mail.send_at = SendAt(int(message.send_at.timestamp()))
        return mail.get()

    def send(self, message: Outgoing) -> str:
        return f"sendgrid:{self.sender.post(self.body(message))}"


def make_transport(settings: Settings, brand: Brand, sendgrid: SendGridConfig | None = None) -> Transport:
    """The transport named by LASTMILE_EMAIL_TRANSPORT. SendGrid's config comes from the caller (the
    DAG reads the Connection through Airflow) or else from AIRFLOW_CONN_SENDGRID_DEFAULT (the CLI)."""
    if settings.email_transport == "sendgrid":
        from lastmile.email.sendgrid_client import (
            SendGridConfigError,
            SendGridSender,
            sendgrid_config_from_env,
        )

        if sendgrid is None:
            try:
                sendgrid = sendgrid_config_from_env("sendgrid_default")
            except SendGridConfigError as err:
                raise SendGridConfigError(f"LASTMILE_EMAIL_TRANSPORT=sendgrid: {err}") from None

        return SendGridTransport(SendGridSender(sendgrid), brand)
    return FileTransport(settings.outbox_dir, brand)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


INDEX_LIMIT = 1000  # messages listed on the outbox page: the newest; the totals count them all


_HTML_LANG = re.compile(r'<html lang="([A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)"')
HTML_HEAD_CHARS = 200  # of body_html: enough to hold its <html lang="..."> (the outbox page reads no more)


def html_language(body_html: str | None) -> str:
    """The language an HTML part declares (<html lang="de">: "de", "pt-BR"); "en" when it names none."""
    found = _HTML_LANG.search(str(body_html or "")[:HTML_HEAD_CHARS])
    return found.group(1) if found else "en"


def message_language(message: dict[str, Any]) -> str:
    """The language an outbox row is written in, from `html_head` (the first HTML_HEAD_CHARS
    characters of body_html, all the outbox page reads) or body_html."""
    return html_language(message.get("html_head") or message.get("body_html"))


def write_index(folder: Path, messages: list[dict[str, Any]], by_state: dict[str, int] | None = None) -> Path:
    """index.html listing the outbox's newest messages, with links to read each one, and totals.

    Each row names the language the message is written in, and its subject carries that language
    (lang attribute). `by_state` counts the whole outbox when `messages` is only its newest part
    (the page then stays the same size however long the history grows)."""
    esc, rows = html.escape, []
    for m in sorted(messages, key=lambda m: (str(m["planned_at"]), m["message_key"]), reverse=True):
        stem = esc(file_stem(m["message_key"]))
        links = f'<a href="{stem}.html">read</a> · <a href="{stem}.eml">.eml</a>' if m["state"] == "sent" else ""
        lang = esc(message_language(m))
        # (one string per row: the page is written every hour that sends, 1,000 rows at most)
        rows.append(f'<tr><td>{esc(str(m["planned_at"])[:16])}</td><td>{esc(str(m["case_id"]))}</td>'
                    f'<td>{esc(str(m["kind"]))}</td><td>{esc(str(m["state"]))}</td>'
                    f'<td>{esc(mask_email(m["recipient"]))}</td><td>{lang}</td>'
                    f'<td lang="{lang}">{esc(str(m["subject"]))}</td><td>{links}</td></tr>')
    counts = by_state if by_state is not None else {}
    if by_state is None:
        for m in messages:
            counts[m["state"]] = counts.get(m["state"], 0) + 1
    sent, everything = counts.get("sent", 0), sum(counts.values())
    shown = "" if len(messages) == everything else f" The newest {len(messages)} are listed."
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lastmile outbox</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;font-size:14px}}th{{background:#f4f4f4}}</style>
</head><body><h1>Outbox</h1><p id="totals">{sent} sent, {everything - sent} not sent, {everything} in all.{shown}
Addresses are masked here; open a message to read it as the customer will.</p>
<table><thead><tr><th>planned</th><th>case</th><th>kind</th><th>state</th><th>to</th><th>language</th>
<th>subject</th><th>message</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>"""
    path = folder / "index.html"
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, page.encode("utf-8"))
    return path
