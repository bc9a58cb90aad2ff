"""E-mail transports. The file transport writes .eml files plus an index.html a person can open."""

from __future__ import annotations

import hashlib
import html
import os
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol

from lastmile.brand import Brand
from lastmile.privacy import mask_email, one_line


@dataclass(frozen=True)
class Outgoing:
    message_key: str
    case_id: str
    kind: str
    recipient: str
    recipient_name: str
    subject: str
    body_text: str
    body_html: str
    planned_at: Any

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Outgoing:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


class Transport(Protocol):
    def send(self, message: Outgoing) -> str:
        """Deliver one message; return the provider's reference. Raise on any failure."""
        ...


def build_mime(message: Outgoing, brand: Brand) -> EmailMessage:
    """The RFC 5322 message. Header values are single lines: no CR/LF from data can add a header."""
    mime = EmailMessage()
    sender_user, _, sender_domain = brand.sender_email.partition("@")
    mime["From"] = Address(one_line(brand.sender_name), sender_user, sender_domain)
    user, _, domain = message.recipient.partition("@")
    mime["To"] = Address(one_line(message.recipient_name), user, domain)
    reply_user, _, reply_domain = brand.reply_to.partition("@")
    mime["Reply-To"] = Address(one_line(brand.name), reply_user, reply_domain)
    mime["Subject"] = one_line(message.subject)
    mime["Date"] = format_datetime(message.planned_at)
    digest = hashlib.sha1(message.message_key.encode()).hexdigest()[:24]
    mime["Message-ID"] = f"<{digest}@lastmile.{sender_domain}>"
    mime["X-Lastmile-Message-Key"] = one_line(message.message_key)
    mime.set_content(message.body_text)
    mime.add_alternative(message.body_html, subtype="html")
    return mime


def file_stem(message_key: str) -> str:
    return message_key.replace("/", "__")


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


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_index(folder: Path, messages: list[dict[str, Any]]) -> Path:
    """index.html listing every message in the outbox, newest first, with links to read each one."""
    rows = []
    for m in sorted(messages, key=lambda m: (str(m["planned_at"]), m["message_key"]), reverse=True):
        stem = file_stem(m["message_key"])
        links = (f'<a href="{html.escape(stem)}.html">read</a> · <a href="{html.escape(stem)}.eml">.eml</a>'
                 if m["state"] == "sent" else "")
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                str(m["planned_at"])[:16], m["case_id"], m["kind"], m["state"], mask_email(m["recipient"]),
                m["subject"])) + f"<td>{links}</td></tr>")
    sent = sum(1 for m in messages if m["state"] == "sent")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lastmile outbox</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;font-size:14px}}th{{background:#f4f4f4}}</style>
</head><body><h1>Outbox</h1><p id="totals">{sent} sent, {len(messages) - sent} not sent, {len(messages)} in all.
Addresses are masked here; open a message to read it as the customer will.</p>
<table><thead><tr><th>planned</th><th>case</th><th>kind</th><th>state</th><th>to</th><th>subject</th>
<th>message</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>"""
    path = folder / "index.html"
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, page.encode("utf-8"))
    return path
