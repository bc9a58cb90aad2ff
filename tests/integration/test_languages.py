"""A run writes each customer in their language, and counts the e-mails that fell back to another."""

from __future__ import annotations

from sqlalchemy import select

from lastmile.reporting.summary import format_summary
from lastmile.store import schema
from lastmile.store.db import prepare

from tiny_shop import TinyShop, day, run


def test_a_run_writes_each_customer_in_their_language_and_counts_the_fallbacks(tmp_path):
    shop = TinyShop(tmp_path / "shop", lines=4)
    for customer, locale in zip(shop.rows["customers"], ("de_DE", "de_AT", "xx_YY", "en_US"), strict=True):
        customer["locale"] = locale
    for n in range(1, 5):  # in transit, never delivered: late once the promised day has passed
        shop.scan(shop.current(f"O{n}-1"), "in_transit", day(-2))
    shop.write()
    settings = shop.settings(f"sqlite:///{tmp_path / 'history.db'}", tmp_path / "out")
    summary = run(settings, shop, day(2))

    assert summary["languages_planned_this_run"] == {"de": 2, "en": 2}
    assert summary["language_fallbacks_this_run"] == {"de_AT → de": 1, "xx_YY → en": 1}
    assert "fell back: 2 (de_AT → de 1, xx_YY → en 1)" in format_summary(summary)
    ob = schema.outbox.c
    with prepare(settings.db_url).connect() as conn:
        subjects = dict(conn.execute(select(ob.customer_id, ob.subject).where(ob.kind == "notice")).all())
    assert subjects["C1"].endswith("– Bestellnummer O1") and subjects["C2"].endswith("– Bestellnummer O2")
    assert subjects["C3"].endswith("— order O3") and subjects["C4"].endswith("— order O4")
    index = (settings.outbox_dir / "index.html").read_text(encoding="utf-8")
    assert index.count('<td lang="de">') == 2 and index.count('<td lang="en">') == 2
