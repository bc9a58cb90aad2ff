"""Render every kind of customer e-mail with sample data in every language, for a person to read
before go-live: out/preview/index.html is a grid of each kind × each language."""

from __future__ import annotations

import html
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from lastmile.core.brand import load_brand
from lastmile.core.detection import SEVERITY
from lastmile.email.locales import SUPPORTED, customer_locale
from lastmile.email.messages import CaseFacts, decide
from lastmile.email.outgoing import Outgoing
from lastmile.email.transport import FileTransport, file_stem

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)
# Each language is shown to a customer of the locale its catalog is written for.
PREVIEW_LOCALES = {"en": "en_US", "de": "de_DE", "fr": "fr_FR", "es": "es_ES", "nl": "nl_NL", "pt_BR": "pt_BR"}
assert tuple(PREVIEW_LOCALES) == SUPPORTED
SAMPLE_EVIDENCE = {"business_days_silent": 4, "last_scan": "Departed facility", "carrier_says_lost": False,
                   "carrier_message": "Delivery attempted - no access to location"}


def _facts(kind: str, *, chain: int = 1, state: str = "open", previous: list[dict[str, Any]] | None = None,
           name: str = "Zoë O'Brien", subscription: bool = False, delivered: datetime | None = None,
           last_scan: tuple[str, datetime] | None = None, window: bool = True,
           latest: date = date(2026, 11, 27), locale: str = "en_US") -> CaseFacts:
    case = {"case_id": f"CASE-SAMPLE-{kind}-{chain}", "order_id": "O123456", "order_line_id": "O123456-1",
            "customer_id": "C-SAMPLE", "shipment_id": "SH-SAMPLE", "exception_type": kind,
            "severity": SEVERITY.get(kind, 1), "state": state, "shipments_in_chain": chain,
            "window_earliest": date(2026, 11, 24) if window else None,
            "window_latest": latest if window else None,
            "evidence": json.dumps({kind: {"rule": kind, **SAMPLE_EVIDENCE}}),
            "owner": load_brand().escalation_owner if not window or chain >= 3 else load_brand().owner_team}
    return CaseFacts(
        case=case, customer={"customer_id": "C-SAMPLE", "name": name, "email": "sample@example.com",
                             "locale": locale},
        order={"order_id": "O123456", "subscription_id": "S0001" if subscription else None},
        shipment={"shipment_id": "SH-SAMPLE", "carrier": "UPS", "tracking_code": "1Z999AA10123456784",
                  "dest_tz": "America/New_York"},
        items=[{"description": "Single-origin coffee beans, 250 g", "quantity": 2}],
        subscription_next=date(2026, 12, 1), delivered_at=delivered, promised_date=date(2026, 11, 18),
        carrier_estimate=date(2026, 11, 25), previous=previous or [],
        last_scan_status=last_scan[0] if last_scan else None, last_scan_at=last_scan[1] if last_scan else None)


def samples(locale: str = "en_US") -> list[tuple[str, CaseFacts]]:
    """(label, facts) for every message the pipeline can send, to a customer of `locale`."""
    told = [{"message_key": "x/notice/stalled", "kind": "notice", "state": "sent", "planned_at": datetime(
        2026, 11, 18, 14, tzinfo=UTC), "window_earliest": date(2026, 11, 23), "window_latest": date(2026, 11, 26)}]
    no_window = {"lost", "damaged", "returned"}
    out = [(f"notice-{k}", _facts(k, window=k not in no_window, locale=locale)) for k in SEVERITY]
    out += [
        ("notice-reshipped-third-time", _facts("reshipped", chain=3, locale=locale)),
        ("notice-lost-standing-order", _facts("lost", subscription=True, window=False, locale=locale)),
        ("notice-late-subscriber", _facts("late", subscription=True, locale=locale)),
        ("notice-hostile-name", _facts("late", name="<script>alert(1)</script>", locale=locale)),
        ("update-moving-again", _facts("late", state="told", previous=told, locale=locale,
                                       last_scan=("in_transit", datetime(2026, 11, 20, 9, tzinfo=UTC)))),
        ("update-out-for-delivery", _facts("late", state="told", previous=told, locale=locale,
                                           last_scan=("out_for_delivery", datetime(2026, 11, 20, 9, tzinfo=UTC)))),
        ("notice-late-wide-window", _facts("late", latest=date(2026, 12, 11), locale=locale)),
        ("check-in-as-promised", _facts("late", state="told", latest=date(2026, 12, 11), locale=locale, previous=[
            {**told[0], "window_latest": date(2026, 12, 11), "check_in_by": date(2026, 11, 20)}])),
        ("escalated-window-passed", _facts("late", state="told", locale=locale, previous=[
            {**told[0], "window_latest": date(2026, 11, 19)}])),
        ("resolved-delivered", _facts("late", state="resolved", previous=told, locale=locale,
                                      delivered=datetime(2026, 11, 20, 12, tzinfo=UTC))),
    ]
    return out


def render_all(folder: Path) -> Path:
    """Write every sample in every language as .eml + .html into `folder` (preview__<language>__<label>)
    with an index: one row per kind, one column per language. Returns the index path."""
    brand = load_brand()
    transport = FileTransport(folder, brand)
    for old in (*folder.glob("preview__*.html"), *folder.glob("preview__*.eml")):  # an earlier preview's
        old.unlink()
    grid: dict[str, dict[str, dict[str, Any]]] = {}
    for language, locale in PREVIEW_LOCALES.items():
        for label, facts in samples(locale):
            message = decide(facts, AS_OF, "preview", brand).message
            assert message is not None, label
            message = {**message, "message_key": f"preview/{language}/{label}", "state": "sent"}
            transport.send(Outgoing.from_row(message))
            grid.setdefault(label, {})[language] = message
    return _write_index(folder, grid)


def _write_index(folder: Path, grid: dict[str, dict[str, dict[str, Any]]]) -> Path:
    head = "".join(f'<th>{html.escape(customer_locale(PREVIEW_LOCALES[lang]).html_lang)}</th>'
                   for lang in PREVIEW_LOCALES)
    rows = []
    for label, by_language in grid.items():
        cells = []
        for language in PREVIEW_LOCALES:
            message = by_language[language]
            stem = html.escape(file_stem(message["message_key"]))
            lang = html.escape(customer_locale(PREVIEW_LOCALES[language]).html_lang)
            cells.append(f'<td lang="{lang}"><a href="{stem}.html">{html.escape(message["subject"])}</a> '
                         f'<a class="eml" href="{stem}.eml">.eml</a></td>')
        rows.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lastmile e-mail preview</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;font-size:13px;vertical-align:top}}
thead th{{background:#f4f4f4}}a.eml{{color:#888;font-size:11px}}</style>
</head><body><h1>Every e-mail, in every language</h1>
<p id="totals">{len(grid)} kinds × {len(PREVIEW_LOCALES)} languages, rendered with sample data as of
{AS_OF:%Y-%m-%d %H:%M} UTC. Each cell is the subject; open it to read the e-mail as the customer will.</p>
<table><thead><tr><th>kind</th>{head}</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>"""
    path = folder / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
