"""A wide window comes with a date by which we write again, and the pipeline keeps it; a window
that passed goes to a person.

Through the production steps on a tiny shop: a failed delivery attempt gets a window wider than
the brand's span, so the notice names a check-in date; nothing else happens to the parcel; on that
date the check-in e-mail goes out once, and the history (v_check_ins) says the promise was kept.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from sqlalchemy import select, text

from lastmile.core.brand import load_brand
from lastmile.store import schema
from lastmile.store.db import prepare

from tiny_shop import TinyShop, day, run


@pytest.fixture()
def brand(monkeypatch):
    """The demo brand with a two-business-day span: any window wider than that is 'wide'."""
    base = load_brand()
    wide = dataclasses.replace(base, policy=dataclasses.replace(base.policy, wide_window_business_days=2,
                                                                  check_in_business_days=2))
    monkeypatch.setattr("lastmile.steps.plan_messages.load_brand", lambda: wide)
    return wide


def _outbox(settings):
    ob = schema.outbox.c
    with prepare(settings.db_url).connect() as conn:
        return [dict(r) for r in conn.execute(select(ob.message_key, ob.kind, ob.state, ob.check_in_by,
                                                     ob.window_latest).order_by(ob.planned_at)).mappings()]


def test_a_wide_window_promises_a_check_in_and_the_pipeline_keeps_it(brand, tmp_path):
    shop = TinyShop(tmp_path / "shop", lines=1)
    shop.scan("SO1-1-1", "in_transit", day(-2))
    shop.scan("SO1-1-1", "failed_attempt", day(0) - timedelta(hours=3))
    shop.write()
    settings = shop.settings(f"sqlite:///{tmp_path / 'history.db'}", tmp_path / "out")
    run(settings, shop, day(0))
    [notice] = _outbox(settings)
    assert notice["kind"] == "notice" and notice["state"] == "sent"
    assert notice["check_in_by"] == date(2026, 11, 4)  # Monday 2 Nov + two business days
    assert notice["window_latest"] > notice["check_in_by"]

    run(settings, shop, day(1))
    assert len(_outbox(settings)) == 1, "nothing owed before the date"
    run(settings, shop, day(2))
    run(settings, shop, day(2) + timedelta(hours=1))
    kinds = [(m["kind"], m["state"]) for m in _outbox(settings)]
    assert kinds[:2] == [("notice", "sent"), ("check_in", "sent")]
    assert kinds.count(("check_in", "sent")) == 1, "kept once, not every run of the day"
    with prepare(settings.db_url).connect() as conn:
        kept = conn.execute(text("SELECT check_in_by, kept FROM v_check_ins WHERE promised_in = :k"),
                            {"k": notice["message_key"]}).one()
    assert kept.kept == 1


def test_windows_that_passed_go_to_a_person_once(tmp_path):
    """Two parcels told a window, then silent past it: in one run both cases go to a person (the
    escalated e-mail, the case state and its owner, one case event each); a rerun adds nothing."""
    shop = TinyShop(tmp_path / "shop", lines=2)
    for sid in ("SO1-1-1", "SO1-2-1"):
        shop.scan(sid, "in_transit", day(-2))
        shop.scan(sid, "failed_attempt", day(0) - timedelta(hours=3))
    shop.write()
    settings = shop.settings(f"sqlite:///{tmp_path / 'history.db'}", tmp_path / "out")
    run(settings, shop, day(0))
    run(settings, shop, day(1))  # (one e-mail per order a day: the second notice goes the next day)
    notices = _outbox(settings)
    assert [(m["kind"], m["state"]) for m in notices] == [("notice", "sent")] * 2
    past = max(m["window_latest"] for m in notices)
    after = next(n for n in range(1, 30) if day(n).date() > past)
    for _ in range(2):  # the run, then the same run again
        run(settings, shop, day(after))
        ca, ev = schema.cases.c, schema.case_events.c
        with prepare(settings.db_url).connect() as conn:
            cases = conn.execute(select(ca.case_id, ca.state, ca.owner).order_by(ca.case_id)).all()
            events = conn.execute(select(ev.case_id, ev.detail).where(ev.event == "escalated")
                                  .order_by(ev.case_id)).all()
        assert [(state, owner) for _, state, owner in cases] == [("escalated", load_brand().escalation_owner)] * 2
        assert events == [(case_id, "window_passed") for case_id, _, _ in cases]
        assert sorted(m["kind"] for m in _outbox(settings)) == ["escalated", "escalated", "notice", "notice"]
