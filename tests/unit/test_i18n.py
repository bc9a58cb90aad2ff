"""E-mails in the customer's language: complete catalogs, every e-mail in every language with no
English left in a translation, dates in the customer's form, locale fallback, escaping everywhere."""

from __future__ import annotations

import html as htmllib
import os
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from markupsafe import escape

from lastmile.core.brand import load_brand
from lastmile.email import emails, locales, outgoing, transport
from lastmile.email.locales import SUPPORTED, catalog_path, customer_locale, resolve
from lastmile.reporting.summary import format_summary
from lastmile.sim.simulator import HOSTILE_NAMES

from builders import EARLIEST, ITEM, NEEDS_A_PERSON, TRACKING_CODE, email_context

ROOT = Path(__file__).resolve().parents[2]
EMAIL_DIR = ROOT / "include" / "lastmile" / "email"
POT = locales.LOCALE_DIR / "messages.pot"
BRAND = load_brand()
TRANSLATED = [lang for lang in SUPPORTED if lang != locales.SOURCE]
# Languages whose translators have not delivered yet: their tests must fail until they do (strict),
# then the language leaves this set. (A new language starts here.)
PENDING: set[str] = set()
# The customer locale each language is rendered for: the one its catalog is written for.
LOCALE_OF = {"en": "en_US", "de": "de_DE", "fr": "fr_FR", "es": "es_ES", "nl": "nl_NL", "pt_BR": "pt_BR"}


def languages(which: list[str]) -> list[Any]:
    return [pytest.param(lang, marks=pytest.mark.xfail(strict=True, reason="translation pending"))
            if lang in PENDING else lang for lang in which]


# --------------------------------------------------------------------------- contexts

NO_WINDOW = NEEDS_A_PERSON
context = email_context


def scenarios() -> list[tuple[str, str, dict[str, Any]]]:
    """(id, kind, context overrides): every kind, every exception type, every branch of the copy."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for kind in emails.HEADLINES:
        out.append((f"notice-{kind}-no-window", "notice", {"exception_type": kind, "window": False}))
        if kind not in NO_WINDOW:
            out.append((f"notice-{kind}", "notice", {"exception_type": kind}))
    esc = BRAND.escalation_owner
    out += [
        ("notice-late-no-estimate", "notice", {"carrier_estimate": None}),
        ("notice-late-wide", "notice", {"window_latest": date(2026, 12, 11), "check_in_by": date(2026, 11, 27)}),
        ("notice-third-time", "notice", {"exception_type": "reshipped", "shipments_in_chain": 3,
                                         "goodwill": "repeated", "owner": esc}),
        ("notice-lost-standing-order", "notice", {"exception_type": "lost", "window": False, "owner": esc,
                                                  "goodwill": "standing_order", "subscription_next": date(2026, 12, 1)}),
        ("notice-late-subscriber", "notice", {"subscription_next": date(2026, 12, 1)}),
        ("notice-lost-carrier-says", "notice", {"exception_type": "lost", "window": False, "evidence": {
            "carrier_says_lost": True}}),
        ("notice-lost-no-days", "notice", {"exception_type": "lost", "window": False, "evidence": {}}),
        ("notice-stalled-one-day-no-scan", "notice", {"exception_type": "stalled", "evidence": {
            "business_days_silent": 1}}),
        ("notice-stalled-nothing-known", "notice", {"exception_type": "stalled", "evidence": {}}),
        ("notice-lost-one-day", "notice", {"exception_type": "lost", "window": False, "evidence": {
            "business_days_silent": 1}}),
        *[(f"notice-{k}-no-message", "notice", {"exception_type": k, "evidence": {}, "window": k not in NO_WINDOW})
          for k in ("failed_attempt", "address_problem", "returned")],
        ("update-out-for-delivery", "update", {"update": "out_for_delivery"}),
        ("update-moving-again-window-begun", "update", {"update": "moving_again", "today": EARLIEST}),
        ("update-no-window", "update", {"update": "moving_again", "window": False}),
        ("update-wide", "update", {"update": "moving_again", "window_latest": date(2026, 12, 11),
                                   "check_in_by": date(2026, 11, 27)}),
        *[(f"check-in-{status or 'no-scan'}", "check_in", {"last_scan_status": status, "window_latest": date(
            2026, 12, 11), "check_in_by": date(2026, 11, 27)})
          for status in ("out_for_delivery", "in_transit", None)],
        ("check-in-window-begun", "check_in", {"today": EARLIEST}),
        ("escalated", "escalated", {"owner": esc, "window": False, "broken_window_latest": date(2026, 11, 19)}),
        ("escalated-by-a-person", "escalated", {"owner": "Priya Patel", "window": False,
                                                "broken_window_latest": date(2026, 11, 19)}),
        ("resolved", "resolved", {"window": False, "delivered_date": date(2026, 11, 20)}),
    ]
    return out


SCENARIOS = {sid: (kind, over) for sid, kind, over in scenarios()}


def render(sid: str, locale: str, **extra: Any) -> emails.Rendered:
    kind, over = SCENARIOS[sid]
    over = dict(over)
    return emails.render(kind, context(over.pop("exception_type", "late"), locale=locale,
                                       window=over.pop("window", True), **{**over, **extra}))


def visible_text(page: str) -> str:
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", page)).split())


# --------------------------------------------------------------------------- (1) the catalogs


def _ids(catalog) -> set:
    return {m.id for m in catalog if m.id}


def test_the_template_is_what_the_sources_say():
    """messages.pot holds exactly the messages of the templates and code (run `pybabel extract`,
    docs/translations.md), each with a translator comment."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = {message for _, _, message, _, _ in extract_from_dir(
        EMAIL_DIR, method_map, options_map, keywords=DEFAULT_KEYWORDS, comment_tags=("Translators:",))}
    with POT.open("rb") as f:
        template = read_po(f)
    assert _ids(template) == found
    assert [m.id for m in template if m.id and not m.auto_comments] == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_catalog_is_updated_from_the_template(language):
    """Each .po has the template's messages (`pybabel update`), so a translator starts from all of them."""
    with POT.open("rb") as f:
        template = read_po(f)
    with catalog_path(language).open("rb") as f:
        catalog = read_po(f, locale=language)
    assert _ids(catalog) == _ids(template)
    assert not catalog.obsolete


@pytest.mark.parametrize("language", languages(TRANSLATED))
def test_a_catalog_translates_every_message(language):
    """Every message of the template has a non-empty, non-fuzzy translation (every plural form) with
    the same placeholders."""
    with POT.open("rb") as f:
        template = read_po(f)
    with catalog_path(language).open("rb") as f:
        catalog = read_po(f, locale=language)
    problems = []
    for message in template:
        if not message.id:
            continue
        translated = catalog.get(message.id)
        if translated is None:
            problems.append(("missing", message.id))
            continue
        if translated.fuzzy:
            problems.append(("fuzzy", message.id))
        strings = translated.string if isinstance(translated.string, (list, tuple)) else (translated.string,)
        if message.pluralizable and len(strings) != catalog.num_plurals:
            problems.append(("plural forms", message.id))
        if not all(s and s.strip() for s in strings):
            problems.append(("empty", message.id))
    problems += [("placeholders", m.id, [str(e) for e in errors]) for m, errors in catalog.check()]
    assert problems == []


# --------------------------------------------------------------------------- (2) every e-mail, every language


@pytest.mark.parametrize("language", SUPPORTED)
@pytest.mark.parametrize("sid", SCENARIOS)
def test_every_email_renders_in_every_language(sid, language):
    rendered = render(sid, LOCALE_OF[language])
    assert rendered.language == language
    assert rendered.subject.strip() and "\n" not in rendered.subject and "\r" not in rendered.subject
    for part in (rendered.subject, rendered.text, rendered.html):
        for leftover in ("{{", "}}", "{%", "%}", "%(", "{#", "None"):
            assert leftover not in part, (leftover, part)
    assert f'<html lang="{language.replace("_", "-")}">' in rendered.html
    assert "NW-10482" in rendered.subject and "NW-10482" in rendered.text
    for body in (rendered.text, visible_text(rendered.html)):
        assert BRAND.support_phone in body and BRAND.tracking_url.format(tracking_code=TRACKING_CODE) in rendered.text
        assert ITEM in body


@pytest.mark.parametrize("language", SUPPORTED)
def test_every_kind_renders_for_every_exception_type_in_every_language(language):
    """The follow-ups of a case of any exception type, not only of the late ones."""
    kinds = {"notice": {}, "update": {"update": "out_for_delivery"}, "check_in": {"check_in_by": date(2026, 11, 25)},
             "escalated": {"broken_window_latest": date(2026, 11, 19), "owner": BRAND.escalation_owner},
             "resolved": {"delivered_date": date(2026, 11, 20)}}
    for kind, over in kinds.items():
        for exception_type in emails.HEADLINES:
            rendered = emails.render(kind, context(exception_type, locale=LOCALE_OF[language], **over))
            assert rendered.language == language and "\n" not in rendered.subject
            for part in (rendered.subject, rendered.text, rendered.html):
                assert not re.search(r"\{\{|\{%|%\(|\bNone\b", part), (kind, exception_type, part)


def _data(ctx: dict[str, Any]) -> list[str]:
    """What an e-mail quotes rather than says: names, ids, links, the carrier's own words, the brand."""
    values = [ctx["customer_name"], ctx["order_id"], ctx["case_id"], ctx["carrier"], ctx["tracking_code"],
              ctx["tracking_url"], BRAND.name, BRAND.support_phone, BRAND.care_team_member, BRAND.escalation_lead,
              BRAND.goodwill_code, *(i["description"] for i in ctx["items"]),
              *(str(v) for v in ctx["evidence"].values() if isinstance(v, str))]
    if ctx["owner"] not in (BRAND.owner_team, BRAND.escalation_owner):
        values.append(ctx["owner"])  # a person's name, as ops wrote it
    return sorted({v for v in values if v}, key=len, reverse=True)


def english_runs(text: str, data: list[str]) -> list[str]:
    """Every stretch of English prose longer than four words, between the data it quotes."""
    for value in data:
        text = text.replace(value, "\x00")
    runs = []
    for sentence in re.split(r"(?<=[.!?;:])\s+|\n+", text):
        for run in sentence.split("\x00"):
            if len(re.findall(r"[A-Za-z][A-Za-z'’-]*", run)) > 4:
                runs.append(" ".join(run.split()).strip(" ()\"“”—–-,"))
    return runs


@pytest.mark.parametrize("language", languages(TRANSLATED))
def test_a_translated_email_has_no_english_sentence_left(language):
    """Every e-mail of every scenario, against the English one from the same facts: no stretch of
    English prose (subject, text or HTML) is left in the translation."""
    leaked, untouched = [], []
    for sid, (_, over) in SCENARIOS.items():
        english = render(sid, "en_US")
        translated = render(sid, LOCALE_OF[language])
        data = _data(context(over.get("exception_type", "late"), **{
            k: v for k, v in over.items() if k not in ("exception_type", "window")}))
        pairs = [(english.subject, translated.subject), (english.text, translated.text),
                 (visible_text(english.html), visible_text(translated.html))]
        leaked += [(sid, run) for source, target in pairs for run in english_runs(source, data)
                   if run in " ".join(target.split())]
        if translated.subject == english.subject:
            untouched.append(sid)
    assert leaked == [] and untouched == []


def test_english_runs_sees_english_and_skips_data():
    data = ["Departed USPS facility MEMPHIS TN"]
    text = 'Your parcel has not moved for 4 working days. The last update was "Departed USPS facility MEMPHIS TN".'
    assert english_runs(text, data) == ["Your parcel has not moved for 4 working days."]


# --------------------------------------------------------------------------- (3) dates and fallback


@pytest.mark.parametrize(("locale", "earliest", "latest"), [
    ("en_US", "Tue, Nov 24", "Fri, Nov 27"),
    ("en_GB", "Tue 24 Nov", "Fri 27 Nov"),
    ("de_DE", "Dienstag, 24. November", "Freitag, 27. November"),
    ("de_AT", "Dienstag, 24. November", "Freitag, 27. November"),
    ("fr_FR", "mardi 24 novembre", "vendredi 27 novembre"),
    ("es_ES", "martes, 24 de noviembre", "viernes, 27 de noviembre"),
    ("nl_NL", "dinsdag 24 november", "vrijdag 27 november"),
    ("pt_BR", "terça-feira, 24 de novembro", "sexta-feira, 27 de novembro"),
    ("xx_YY", "Tue, Nov 24", "Fri, Nov 27"),
])
def test_a_window_is_written_in_the_customers_date_form(locale, earliest, latest):
    rendered = emails.render("notice", context("late", locale=locale))
    for body in (rendered.text, rendered.html):
        assert earliest in body and latest in body
        assert body.index(earliest) < body.index(latest)
    if not locale.startswith("en") and locale != "xx_YY":
        assert not re.search(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun),? ", rendered.text)


def _spaces(value: str) -> str:
    return re.sub(r"[\xa0\u202f]", " ", value)  # CLDR's no-break spaces, as plain ones


@pytest.mark.parametrize(("locale", "share", "money"), [
    ("en_US", "20%", "€12.50"), ("de_DE", "20 %", "12,50 €"), ("fr_FR", "20 %", "12,50 €"),
    ("nl_NL", "20%", "€ 12,50"), ("pt_BR", "20%", "€ 12,50"),
])
def test_numbers_and_money_in_the_customers_form(locale, share, money):
    assert _spaces(locales.format_share(0.2, locale)) == share
    assert _spaces(locales.format_money(12.5, "EUR", locale)) == money
    credit = emails.render("notice", context("reshipped", locale=locale, shipments_in_chain=3, goodwill="repeated"))
    assert f"{share} " in _spaces(credit.text)


def test_an_austrian_customer_reads_german_with_austrian_dates():
    rendered = emails.render("notice", context("late", locale="de_AT", window_latest=date(2027, 1, 8)))
    assert rendered.language == "de"
    assert "Freitag, 8. Jänner" in rendered.text and "Guten Tag" in rendered.text


@pytest.mark.parametrize(("value", "language", "fell_back", "formats"), [
    ("en_US", "en", False, "en_US"),
    ("en_GB", "en", False, "en_GB"),
    ("en-GB", "en", False, "en_GB"),
    ("de_DE", "de", False, "de_DE"),
    ("fr_FR", "fr", False, "fr_FR"),
    ("es_ES", "es", False, "es_ES"),
    ("nl_NL", "nl", False, "nl_NL"),
    ("pt_BR", "pt_BR", False, "pt_BR"),
    ("de", "de", False, "de"),
    ("de_AT", "de", True, "de_AT"),
    ("de_CH", "de", True, "de_CH"),
    ("fr_CA", "fr", True, "fr_CA"),
    ("nl_BE", "nl", True, "nl_BE"),
    ("pt_PT", "pt_BR", True, "pt_PT"),
    ("en_AU", "en", True, "en_AU"),
    ("ja_JP", "en", True, "en"),
    ("xx_YY", "en", True, "en"),
    ("", "en", True, "en"),
    (None, "en", True, "en"),
])
def test_locale_resolution(value, language, fell_back, formats):
    assert resolve(value) == (language, fell_back)
    assert customer_locale(value).formats == formats


def test_a_fallback_is_named_as_ops_read_it():
    assert customer_locale("de_AT").fallback == "de_AT → de"
    assert customer_locale("xx_YY").fallback == "xx_YY → en"
    assert customer_locale("de_DE").fallback is None
    assert emails.render("notice", context(locale="xx_YY")).language == "en"


def test_the_run_summary_counts_fallbacks_in_a_line_ops_can_read():
    summary = {"batch": "b", "orders": 1, "shipments": 1, "scans_new": 0, "feeds": {},
               "exceptions_open_by_type": {}, "exceptions_all_by_type": {}, "cases_by_state": {},
               "emails_sent_this_run": 5, "emails_failed_this_run": 0, "messages_planned_this_run": {},
               "outbox_by_state": {}, "sent_by_kind": {}, "quarantined_by_source": {},
               "outbox_index": "out/outbox/index.html", "history_db": "sqlite:///x",
               "languages_planned_this_run": {"de": 2, "en": 3},
               "language_fallbacks_this_run": {"de_AT → de": 1, "xx_YY → en": 1}}
    text = format_summary(summary)
    assert "e-mail languages     planned this run: de 2, en 3; fell back: 2 (de_AT → de 1, xx_YY → en 1)" in text
    calm = format_summary({**summary, "languages_planned_this_run": {}, "language_fallbacks_this_run": {}})
    assert "e-mail languages     planned this run: none; fell back: none" in calm


# --------------------------------------------------------------------------- (4) data never becomes markup


@pytest.mark.parametrize("language", SUPPORTED)
@pytest.mark.parametrize("name", [*HOSTILE_NAMES, "\"Zoë\" O'Brien & <i>Co</i>"])
def test_hostile_names_stay_escaped_in_every_language(language, name):
    for sid in ("notice-late", "notice-third-time", "update-out-for-delivery", "check-in-in_transit",
                "escalated", "resolved"):
        rendered = render(sid, LOCALE_OF[language], customer_name=name,
                          evidence={"carrier_message": "<img src=x onerror=alert(1)>"})
        for tag in ("<script", "<b>", "<i>", "<img"):
            assert tag not in rendered.html, (sid, tag)
        assert str(escape(name)) in rendered.html, sid
        assert name in rendered.text, sid
        assert "&amp;lt;" not in rendered.html and "&amp;#" not in rendered.html  # never escaped twice


@pytest.mark.parametrize("language", SUPPORTED)
def test_a_carrier_message_and_a_subject_stay_data_in_every_language(language):
    rendered = render("notice-failed_attempt", LOCALE_OF[language], order_id="NW-1\r\nBcc: attacker@evil.example",
                      evidence={"carrier_message": "<img src=x onerror=alert(1)>"})
    assert "<img" not in rendered.html and "&lt;img src=x onerror=alert(1)&gt;" in rendered.html
    assert "<img src=x onerror=alert(1)>" in rendered.text
    assert "\r" not in rendered.subject and "\n" not in rendered.subject


# --------------------------------------------------------------------------- the outbox index


def test_the_outbox_index_names_each_messages_language(tmp_path):
    planned = datetime(2026, 11, 23, 10, tzinfo=UTC)
    german = render("notice-late", "de_DE")
    rows = [{"message_key": "c1/notice/late", "case_id": "c1", "kind": "notice", "state": "sent",
             "recipient": "a@example.com", "subject": german.subject, "planned_at": planned,
             "html_head": german.html[:transport.HTML_HEAD_CHARS]},
            {"message_key": "c2/notice/late", "case_id": "c2", "kind": "notice", "state": "sent",
             "recipient": "b@example.com", "subject": "Old", "planned_at": planned, "body_html": "<p>older</p>"}]
    page = transport.write_index(tmp_path, rows).read_text(encoding="utf-8")
    assert f'<td>de</td><td lang="de">{htmllib.escape(german.subject)}</td>' in page
    assert '<td>en</td><td lang="en">Old</td>' in page


@pytest.mark.parametrize(("locale", "sender"), [("en_US", BRAND.sender_name), ("de_DE", "Northwind Coffee Kundenservice")])
def test_the_sender_is_named_in_the_messages_language(locale, sender):
    rendered = render("notice-late", locale)
    message = outgoing.Outgoing(message_key="c1/notice/late", case_id="c1", kind="notice",
                                recipient="zoe@example.com", recipient_name="Zoë", subject=rendered.subject,
                                body_text=rendered.text, body_html=rendered.html,
                                planned_at=datetime(2026, 11, 23, 10, tzinfo=UTC))
    (address,) = transport.build_mime(message, BRAND)["From"].addresses
    assert address.display_name == sender and address.addr_spec == BRAND.sender_email


def test_a_catalog_without_a_current_mo_is_compiled_in_memory(tmp_path, monkeypatch):
    """A fresh clone (or a read-only mount) has only the .po files: e-mails are translated all the same,
    and a .mo older than its .po is not trusted."""
    po = tmp_path / "de" / "LC_MESSAGES" / "messages.po"
    po.parent.mkdir(parents=True)
    shutil.copy(catalog_path("de"), po)
    monkeypatch.setattr(locales, "LOCALE_DIR", tmp_path)
    locales.translations.cache_clear()
    try:
        assert locales.translations("de").gettext("We're sorry.") == "es tut uns leid."
        with po.open("rb") as f:
            stale = read_po(f, locale="de")
        stale["We're sorry."].string = "(stale)"
        with po.with_suffix(".mo").open("wb") as f:
            write_mo(f, stale)
        os.utime(po.with_suffix(".mo"), (1, 1))  # older than the .po
        locales.translations.cache_clear()
        assert locales.translations("de").gettext("We're sorry.") == "es tut uns leid."
    finally:
        locales.translations.cache_clear()
