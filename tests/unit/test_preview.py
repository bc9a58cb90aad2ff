"""`python -m lastmile preview`: every kind of e-mail in every language, readable before go-live."""

from __future__ import annotations

import re

from lastmile.core.brand import load_brand
from lastmile.email.locales import SUPPORTED
from lastmile.email.preview import PREVIEW_LOCALES, render_all, samples

KINDS = {"notice-late", "notice-lost", "notice-reshipped-third-time", "update-moving-again",
         "update-out-for-delivery", "check-in-as-promised", "escalated-window-passed", "resolved-delivered"}


def test_preview_renders_every_kind_with_the_required_elements(tmp_path):
    index = render_all(tmp_path).read_text()
    brand = load_brand()
    pages = sorted(tmp_path.glob("preview__en__*.html"))
    labels = {p.stem.removeprefix("preview__en__") for p in pages}
    assert KINDS <= labels
    for page in pages:
        html = page.read_text()
        assert "sorry" in html.lower(), page.name
        assert brand.support_phone in html and "reply to this e-mail" in html.lower(), page.name
        assert "track.northwind-coffee.example/1Z999AA10123456784" in html, page.name
        assert "Single-origin coffee beans" in html, page.name
        assert f'href="{page.name}"' in index
    for language in SUPPORTED:
        assert "<script>alert(1)</script>" not in (tmp_path / f"preview__{language}__notice-hostile-name.html").read_text()


def test_preview_writes_every_kind_in_all_six_languages_with_an_index_of_kind_by_language(tmp_path):
    index = render_all(tmp_path).read_text(encoding="utf-8")
    labels = [label for label, _ in samples()]
    assert set(PREVIEW_LOCALES) == set(SUPPORTED) and len(SUPPORTED) == 6
    for language in PREVIEW_LOCALES:
        lang = language.replace("_", "-")
        for label in labels:
            page = tmp_path / f"preview__{language}__{label}.html"
            assert page.exists() and (tmp_path / f"preview__{language}__{label}.eml").exists(), page.name
            html = page.read_text(encoding="utf-8")
            assert f'<html lang="{lang}">' in html, page.name
            assert f'<td lang="{lang}"><a href="{page.name}">' in index
            assert "{{" not in html and "{%" not in html, page.name
    # One row per kind, one column per language.
    assert len(re.findall(r"</td></tr>", index)) == len(labels)
    assert index.count("<td lang=") == len(labels) * len(SUPPORTED)
    # German pages are German: the greeting, the subject in the index.
    assert "Guten Tag Zoë O&#39;Brien," in (tmp_path / "preview__de__notice-late.html").read_text(encoding="utf-8")
    assert "Ihre Bestellung verspätet sich – Bestellnummer O123456" in index


def test_a_second_preview_leaves_no_page_of_an_earlier_one(tmp_path):
    (tmp_path / "preview__notice-late.html").write_text("an older preview's page")
    render_all(tmp_path)
    assert not (tmp_path / "preview__notice-late.html").exists()
