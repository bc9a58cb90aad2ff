"""Customer e-mails: what the customer reads (text and HTML), the MIME envelope, the outbox index."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from lastmile.core import brand as brand_mod
from lastmile.core import privacy
from lastmile.email import emails, locales, outgoing, transport

from builders import EARLIEST, ITEM, LATEST, NEEDS_A_PERSON, email_context

BRAND = brand_mod.load_brand()
# An English date as an e-mail writes it, in either style: "Tue, Nov 24" or "Tue 24 Nov".
LOCAL_DATE_RE = re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun),? ([A-Z][a-z]{2} \d{1,2}|\d{1,2} [A-Z][a-z]{2})\b")

def context(exception_type: str = "late", *, window: bool = True, **over: Any) -> dict[str, Any]:
    return email_context(exception_type, window=window, **over)


def h(value: str) -> str:
    return str(escape(value))


# --------------------------------------------------------------------------- every notice


def _cases() -> list[tuple[str, bool]]:
    out = []
    for kind in emails.HEADLINES:
        out.append((kind, False))
        if kind not in NEEDS_A_PERSON:
            out.append((kind, True))
    return out


@pytest.mark.parametrize(("exception_type", "window"), _cases())
def test_every_notice_apologises_names_the_owner_and_gives_a_way_to_a_human(exception_type: str,
                                                                          window: bool) -> None:
    rendered = emails.render("notice", context(exception_type, window=window))

    assert rendered.subject.strip()
    assert "\n" not in rendered.subject
    assert "NW-10482" in rendered.subject
    assert h(emails.HEADLINES[exception_type]) in rendered.html
    for body, enc in ((rendered.text, str), (rendered.html, h)):
        assert "sorry" in body.lower()
        assert enc(BRAND.owner_team) in body
        assert enc(BRAND.support_phone) in body
        assert enc(context()["tracking_url"]) in body
        assert "NW-10482" in body
        assert enc(ITEM) in body
        # No "no-reply" anywhere: replying is how the customer reaches a person.
        assert "no-reply" not in body.lower() and "noreply" not in body.lower()


@pytest.mark.parametrize("exception_type", [k for k in emails.HEADLINES if k not in NEEDS_A_PERSON])
@pytest.mark.parametrize(("locale", "earliest", "latest"), [
    ("en_US", "Tue, Nov 24", "Fri, Nov 27"),
    ("en_GB", "Tue 24 Nov", "Fri 27 Nov"),
])
def test_a_window_shows_both_dates_in_the_customers_style(exception_type: str, locale: str, earliest: str,
                                                          latest: str) -> None:
    rendered = emails.render("notice", context(exception_type, locale=locale))

    assert locales.format_day(EARLIEST, locale) == earliest
    for body in (rendered.text, rendered.html):
        assert earliest in body
        assert latest in body
        assert body.index(earliest) < body.index(latest)


def _shown_dates(body: str) -> list[date]:
    return [d for d in (EARLIEST, LATEST) if locales.format_day(d, "en_US") in body]


def test_a_window_without_its_earliest_date_shows_no_date() -> None:
    rendered = emails.render("notice", context("late", window_earliest=None, window_latest=LATEST))
    for body in (rendered.text, rendered.html):
        assert _shown_dates(body) == []


def test_a_window_without_its_latest_date_never_shows_only_one_date() -> None:
    rendered = emails.render("notice", context("late", window_earliest=EARLIEST, window_latest=None))
    for body in (rendered.text, rendered.html):
        assert " and ." not in body
        assert len(_shown_dates(body)) in (0, 2), body


@pytest.mark.parametrize("exception_type", NEEDS_A_PERSON)
def test_lost_damaged_returned_name_a_person_and_give_no_date(exception_type: str) -> None:
    rendered = emails.render("notice", context(exception_type, window=False))

    for body in (rendered.text, rendered.html):
        assert f"{h(BRAND.owner_team)} now owns your case personally" in body
        assert "between" not in body
        assert "expect it to arrive" not in body
        assert not LOCAL_DATE_RE.search(body), LOCAL_DATE_RE.search(body)


# --------------------------------------------------------------------------- plain words


def test_lost_says_lost() -> None:
    rendered = emails.render("notice", context("lost", window=False))
    assert "lost" in rendered.subject.lower()
    assert "your parcel is lost" in rendered.text.lower()
    assert "your parcel is lost" in rendered.html.lower()


def test_carrier_confirmed_loss_is_said_plainly() -> None:
    rendered = emails.render("notice", context(
        "lost", window=False, evidence={"rule": "lost", "business_days_silent": 2, "carrier_says_lost": True}))
    assert "cannot locate it" in rendered.text
    assert "We will not ask you to keep waiting" in rendered.text


def test_third_shipment_says_third_time_in_subject_and_body() -> None:
    rendered = emails.render("notice", context("reshipped", shipments_in_chain=3, goodwill="repeated"))

    assert "third time" in rendered.subject
    assert "sorry" in rendered.subject
    assert "third time" in rendered.text
    assert "third time" in rendered.html
    # A repeated failure comes with the goodwill gesture.
    assert "a 20% credit on your next order (code SORRY20)" in rendered.text


def test_second_shipment_does_not_claim_third_time() -> None:
    rendered = emails.render("notice", context("reshipped", shipments_in_chain=2))
    assert "third" not in rendered.subject + rendered.text
    assert "sent your order again" in rendered.text


# --------------------------------------------------------------------------- data never becomes markup


def test_script_in_customer_name_is_escaped_in_html_and_literal_in_text() -> None:
    name = "<script>alert(1)</script>"
    rendered = emails.render("notice", context(customer_name=name))

    assert "<script" not in rendered.html
    assert "Dear &lt;script&gt;alert(1)&lt;/script&gt;," in rendered.html
    assert f"Dear {name}," in rendered.text


def test_accented_name_with_apostrophe_renders_in_both() -> None:
    rendered = emails.render("notice", context(customer_name="Zoë O'Brien"))

    assert "Dear Zoë O'Brien," in rendered.text
    assert "Dear Zoë O&#39;Brien," in rendered.html or "Dear Zoë O'Brien," in rendered.html
    assert "&amp;#39;" not in rendered.html  # not escaped twice


def test_carrier_message_markup_is_escaped_in_html() -> None:
    evil = "<img src=x onerror=alert(1)>"
    rendered = emails.render("notice", context("failed_attempt", evidence={"carrier_message": evil}))

    assert "<img" not in rendered.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in rendered.html
    assert evil in rendered.text


def test_newlines_in_data_do_not_break_the_subject() -> None:
    rendered = emails.render("notice", context(order_id="NW-1\r\nBcc: attacker@evil.example"))
    assert "\r" not in rendered.subject and "\n" not in rendered.subject


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(("day", "locale", "expected"), [
    (date(2026, 11, 24), "en_US", "Tue, Nov 24"),
    (date(2026, 11, 24), "en_GB", "Tue 24 Nov"),
    (date(2026, 12, 1), "en_US", "Tue, Dec 1"),
    (date(2026, 12, 1), "en_GB", "Tue 1 Dec"),
    (None, "en_US", ""),
])
def test_format_day(day: date | None, locale: str, expected: str) -> None:
    assert locales.format_day(day, locale) == expected


# --------------------------------------------------------------------------- the MIME message


def _outgoing(**over: Any) -> outgoing.Outgoing:
    rendered = emails.render("notice", context())
    fields = {"message_key": "case-7f3a91/notice/late", "case_id": "case-7f3a91", "kind": "notice",
              "recipient": "eve@example.com", "recipient_name": "Eve", "subject": rendered.subject,
              "body_text": rendered.text, "body_html": rendered.html,
              "planned_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC)}
    fields.update(over)
    return outgoing.Outgoing(**fields)


def test_header_injection_through_the_recipient_name_adds_no_header() -> None:
    mime = transport.build_mime(_outgoing(recipient_name="Eve\r\nBcc: attacker@evil.example"), BRAND)

    assert len(mime.get_all("To")) == 1
    assert mime.get_all("Bcc") is None
    assert [a.addr_spec for a in mime["To"].addresses] == ["eve@example.com"]
    for wire in (mime.as_bytes(), mime.as_bytes(policy=email.policy.SMTP)):
        assert b"\r\nBcc:" not in wire
        assert b"\nBcc:" not in wire
        parsed = email.message_from_bytes(wire, policy=email.policy.default)
        assert parsed.get_all("Bcc") is None
        assert len(parsed.get_all("To")) == 1
        assert [a.addr_spec for a in parsed["To"].addresses] == ["eve@example.com"]
        assert "attacker@evil.example" not in [a.addr_spec for a in parsed["To"].addresses]


def test_header_injection_through_the_subject_adds_no_header() -> None:
    mime = transport.build_mime(_outgoing(subject="Hello\r\nBcc: attacker@evil.example"), BRAND)
    wire = mime.as_bytes(policy=email.policy.SMTP)
    assert b"\r\nBcc:" not in wire
    assert email.message_from_bytes(wire, policy=email.policy.default).get_all("Bcc") is None


def test_from_and_reply_to_come_from_the_brand_and_reach_a_person() -> None:
    mime = transport.build_mime(_outgoing(), BRAND)

    (sender,) = mime["From"].addresses
    (reply_to,) = mime["Reply-To"].addresses
    assert sender.addr_spec == BRAND.sender_email
    assert sender.display_name == BRAND.sender_name
    assert reply_to.addr_spec == BRAND.reply_to
    for addr in (sender.addr_spec, reply_to.addr_spec):
        assert "noreply" not in re.sub(r"[-_.]", "", addr.lower())
    assert mime["X-Lastmile-Message-Key"] == "case-7f3a91/notice/late"


def test_mime_carries_both_bodies_and_a_stable_message_id() -> None:
    first = transport.build_mime(_outgoing(), BRAND)
    again = transport.build_mime(_outgoing(), BRAND)

    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"] != transport.build_mime(_outgoing(message_key="other/notice/late"), BRAND)["Message-ID"]
    assert "sorry" in first.get_body(("plain",)).get_content().lower()
    assert "<html" in first.get_body(("html",)).get_content()


# --------------------------------------------------------------------------- brand file


def _brand_file(tmp_path: Path, **over: str) -> Path:
    text = brand_mod.DEFAULT_PATH.read_text(encoding="utf-8")
    for key, value in over.items():
        text, count = re.subn(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', text)
        assert count == 1
    path = tmp_path / "brand.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_brand_is_monitored() -> None:
    assert "@" in BRAND.reply_to
    assert "noreply" not in BRAND.reply_to.replace("-", "").replace("_", "")
    assert "noreply" not in BRAND.sender_email.replace("-", "").replace("_", "")


@pytest.mark.parametrize(("field", "value"), [
    ("sender_email", "no-reply@x.example"),
    ("sender_email", "NoReply@x.example"),
    ("reply_to", "no_reply@x.example"),
    ("reply_to", "care.x.example"),
])
def test_no_reply_brand_is_refused_at_load(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        brand_mod.load_brand(_brand_file(tmp_path, **{field: value}))


@pytest.mark.parametrize(("field", "value"), [
    ("support_opens", "19:00"),  # after closing
    ("support_closes", "6 pm"),
    ("support_tz", "Mars/Olympus_Mons"),
])
def test_support_hours_that_cannot_be_written_are_refused_at_load(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(ValueError, match="support"):
        brand_mod.load_brand(_brand_file(tmp_path, **{field: value}))


def test_the_brand_file_holds_names_and_numbers_and_the_owners_read_as_before() -> None:
    assert (BRAND.care_team_member, BRAND.escalation_lead, BRAND.goodwill_code) == ("Maya", "Daniel Okafor", "SORRY20")
    assert BRAND.owner_team == "Maya from our Care Team"
    assert BRAND.escalation_owner == "Daniel Okafor (Delivery Care Lead)"
    assert BRAND.sender_name == "Northwind Coffee Care Team"


def test_a_monitored_brand_file_loads(tmp_path: Path) -> None:
    loaded = brand_mod.load_brand(_brand_file(tmp_path, sender_email="care@x.example", reply_to="help@x.example"))
    assert (loaded.sender_email, loaded.reply_to) == ("care@x.example", "help@x.example")


# --------------------------------------------------------------------------- masking and the outbox index


def test_mask_email_hides_local_part_and_domain_name() -> None:
    masked = privacy.mask_email("zoe.obrien@example.com")

    assert masked == "z***@e***.com"
    assert "obrien" not in masked
    assert "example" not in masked
    assert privacy.mask_email(None) == "(none)"
    assert privacy.mask_email("") == "(none)"
    assert privacy.mask_email("a@b.example.org") != privacy.mask_email("z@b.example.org")


def test_outbox_index_masks_addresses_escapes_subjects_and_links_sent_messages(tmp_path: Path) -> None:
    messages = [
        {"message_key": "case-1/notice/late", "case_id": "case-1", "kind": "notice", "state": "sent",
         "recipient": "zoe.obrien@example.com", "subject": "<b>Late</b> & sorry — order NW-1",
         "planned_at": datetime(2026, 11, 23, 10, 0, tzinfo=UTC)},
        {"message_key": "case-2/escalated/window-2026-11-20", "case_id": "case-2", "kind": "escalated",
         "state": "planned", "recipient": "ada.lovelace@example.org", "subject": "Order NW-2",
         "planned_at": datetime(2026, 11, 23, 11, 0, tzinfo=UTC)},
        {"message_key": "case-3/notice/lost", "case_id": "case-3", "kind": "notice", "state": "suppressed",
         "recipient": None, "subject": "Your parcel is lost — order NW-3",
         "planned_at": datetime(2026, 11, 23, 9, 0, tzinfo=UTC)},
    ]
    path = transport.write_index(tmp_path / "outbox", messages)

    assert path == tmp_path / "outbox" / "index.html"
    page = path.read_text(encoding="utf-8")
    for full in ("zoe.obrien@example.com", "ada.lovelace@example.org", "obrien", "lovelace"):
        assert full not in page
    assert "z***@e***.com" in page
    assert "a***@e***.org" in page
    assert "<b>Late</b>" not in page
    assert "&lt;b&gt;Late&lt;/b&gt; &amp; sorry" in page
    assert 'href="case-1__notice__late.html"' in page
    assert 'href="case-1__notice__late.eml"' in page
    assert "case-2__escalated__window-2026-11-20" not in page  # planned: nothing to open yet
    assert "case-3__notice__lost" not in page
    assert "1 sent, 2 not sent, 3 in all" in page
    # Newest first.
    assert page.index("case-2") < page.index("case-1") < page.index("case-3")


def test_a_new_process_reads_the_templates_compiled_before_and_a_broken_cache_is_never_an_error(tmp_path):
    from jinja2 import Environment, FileSystemLoader

    def environment(cache) -> Environment:
        return Environment(loader=FileSystemLoader(emails.TEMPLATES), bytecode_cache=cache, **emails._OPTIONS)

    folder = tmp_path / "compiled"
    folder.mkdir()
    first = environment(emails._CompiledTemplates(directory=str(folder)))
    compiled = first.get_template("notice.html")
    assert len(list(folder.iterdir())) == 1

    class NoCompiling(Environment):
        def compile(self, *args, **kwargs):
            raise AssertionError("compiled again")

    later = NoCompiling(loader=FileSystemLoader(emails.TEMPLATES),
                        bytecode_cache=emails._CompiledTemplates(directory=str(folder)), **emails._OPTIONS)
    assert later.get_template("notice.html").blocks.keys() == compiled.blocks.keys()
    # A cache file cut short, or a cache directory that is not one: the template is compiled as usual
    # (and a cut file is written again whole).
    whole = {f: f.read_bytes() for f in folder.iterdir()}
    for cached in whole:
        cached.write_bytes(whole[cached][:40])
    again = environment(emails._CompiledTemplates(directory=str(folder))).get_template("notice.html")
    assert again.blocks.keys() == compiled.blocks.keys()
    assert {f: f.read_bytes() for f in folder.iterdir()} == whole
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    without = environment(emails._CompiledTemplates(directory=str(not_a_folder))).get_template("notice.html")
    assert without.blocks.keys() == compiled.blocks.keys() and not_a_folder.read_text() == ""
