"""`python -m lastmile preview`: every kind of e-mail, readable before go-live."""

from __future__ import annotations

from lastmile.core.brand import load_brand
from lastmile.email.preview import render_all


def test_preview_renders_every_kind_with_the_required_elements(tmp_path):
    index = render_all(tmp_path).read_text()
    brand = load_brand()
    pages = sorted(tmp_path.glob("preview__*.html"))
    labels = {p.stem.removeprefix("preview__") for p in pages}
    assert {"notice-late", "notice-lost", "notice-reshipped-third-time", "update-moving-again",
            "update-out-for-delivery", "escalated-window-passed", "resolved-delivered"} <= labels
    for page in pages:
        html = page.read_text()
        assert "sorry" in html.lower(), page.name
        assert brand.support_phone in html and "reply to this e-mail" in html.lower(), page.name
        assert "track.northwind-coffee.example/1Z999AA10123456784" in html, page.name
        assert "Single-origin coffee beans" in html, page.name
        assert f'href="{page.name}"' in index
    assert "<script>alert(1)</script>" not in (tmp_path / "preview__notice-hostile-name.html").read_text()
