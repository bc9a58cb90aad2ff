"""Which e-mail a case owes: never twice, never a broken promise repeated, never to no one."""

from __future__ import annotations

import json
from datetime import date

import pytest

from lastmile.core.brand import load_brand
from lastmile.email.messages import CaseFacts, decide

from builders import utc

BRAND = load_brand()
AS_OF = utc("2026-11-20T14:00:00+00:00")


def facts(state="open", kind="late", previous=(), email="zoe@example.com", chain=1, window=(date(2026, 11, 23),
          date(2026, 11, 25)), delivered=None, subscription=None):
    case = {"case_id": "CASE-O1-1", "order_id": "O1", "order_line_id": "O1-1", "customer_id": "C1",
            "shipment_id": "S1", "exception_type": kind, "severity": 1, "state": state,
            "shipments_in_chain": chain, "window_earliest": window[0], "window_latest": window[1],
            "evidence": json.dumps({kind: {"rule": kind, "business_days_silent": 4}}), "owner": BRAND.owner_team}
    return CaseFacts(
        case=case, customer={"customer_id": "C1", "name": "Zoë O'Brien", "email": email, "locale": "en_US"},
        order={"order_id": "O1", "subscription_id": subscription}, shipment={
            "shipment_id": "S1", "carrier": "UPS", "tracking_code": "1Z999", "dest_tz": "America/New_York"},
        items=[{"description": "Coffee beans, 250 g", "quantity": 2}], subscription_next=date(2026, 12, 1),
        delivered_at=delivered, promised_date=date(2026, 11, 18), carrier_estimate=None, previous=list(previous))


def sent(key, kind="notice", window_latest=date(2026, 11, 25)):
    return {"message_key": key, "kind": kind, "state": "sent", "window_latest": window_latest}


def test_a_new_case_gets_one_notice_with_its_window():
    d = decide(facts(), AS_OF, "b1", BRAND)
    assert d.message["message_key"] == "CASE-O1-1/notice/late"
    assert d.message["state"] == "planned" and d.message["window_latest"] == date(2026, 11, 25)
    assert "Wed, Nov 25" in d.message["body_text"] and "Mon, Nov 23" in d.message["body_text"]


def test_the_same_case_in_a_rerun_owes_nothing_more():
    assert decide(facts(state="told", previous=[sent("CASE-O1-1/notice/late")]), AS_OF, "b1", BRAND).message is None


def test_a_graver_exception_is_news_and_gets_its_own_notice():
    d = decide(facts(state="told", kind="lost", previous=[sent("CASE-O1-1/notice/late")]), AS_OF, "b2", BRAND)
    assert d.message["message_key"] == "CASE-O1-1/notice/lost"
    assert "lost" in d.message["subject"].lower()


def test_a_broken_window_goes_to_a_person_without_a_new_date():
    previous = [sent("CASE-O1-1/notice/late", window_latest=date(2026, 11, 19))]
    d = decide(facts(state="told", previous=previous), AS_OF, "b3", BRAND)
    assert d.escalate
    assert d.message["message_key"] == "CASE-O1-1/escalated/window-2026-11-19"
    assert d.message["window_earliest"] is None and d.message["window_latest"] is None
    assert BRAND.escalation_owner in d.message["body_text"]
    again = decide(facts(state="escalated", previous=previous + [sent(d.message["message_key"], "escalated", None)]),
                   AS_OF, "b4", BRAND)
    assert again.message is None and again.escalate


def test_delivery_after_we_told_them_sends_one_resolution_note():
    d = decide(facts(state="resolved", previous=[sent("CASE-O1-1/notice/late")],
                     delivered=utc("2026-11-20T15:00:00+00:00")), AS_OF, "b5", BRAND)
    assert d.message["kind"] == "resolved" and "Fri, Nov 20" in d.message["body_text"]


def test_a_case_resolved_before_anyone_was_told_sends_nothing():
    assert decide(facts(state="resolved", delivered=AS_OF), AS_OF, "b1", BRAND).message is None


def test_no_valid_address_means_suppressed_not_lost():
    d = decide(facts(email=None), AS_OF, "b1", BRAND)
    assert d.message["state"] == "suppressed" and "quarantine" in d.message["state_reason"]


def test_third_shipment_is_said_plainly_with_a_goodwill_gesture():
    d = decide(facts(kind="reshipped", chain=3), AS_OF, "b1", BRAND)
    assert d.message["message_key"] == "CASE-O1-1/notice/reshipped-3"
    assert "third time" in d.message["subject"] and "third time" in d.message["body_text"]
    assert f"a 20% credit on your next order (code {BRAND.goodwill_code})" in d.message["body_text"]


@pytest.mark.parametrize("subscription, expected", [("S1", True), (None, False)])
def test_subscribers_hear_about_their_next_delivery(subscription, expected):
    d = decide(facts(subscription=subscription), AS_OF, "b1", BRAND)
    assert ("next scheduled delivery" in d.message["body_text"]) is expected


def test_moving_again_and_out_for_delivery_are_follow_ups_with_the_window_we_promised():
    told = {**sent("CASE-O1-1/notice/stalled", window_latest=date(2026, 11, 26)),
            "window_earliest": date(2026, 11, 23), "planned_at": utc("2026-11-18T14:00:00+00:00")}
    moving = facts(state="told", kind="late", previous=[told], window=(date(2026, 11, 24), date(2026, 11, 30)))
    moving = moving.__class__(**{**moving.__dict__, "last_scan_status": "in_transit",
                                 "last_scan_at": utc("2026-11-19T10:00:00+00:00")})
    d = decide(moving, AS_OF, "b2", BRAND)
    assert d.message["message_key"] == "CASE-O1-1/update/moving_again@S1"
    assert "Thu, Nov 26" in d.message["body_text"] and "Mon, Nov 30" not in d.message["body_text"]
    out = moving.__class__(**{**moving.__dict__, "last_scan_status": "out_for_delivery"})
    assert decide(out, AS_OF, "b3", BRAND).message["message_key"] == "CASE-O1-1/update/out_for_delivery@S1"


def test_a_less_grave_exception_after_a_graver_one_is_not_news():
    told = {**sent("CASE-O1-1/notice/stalled"), "planned_at": utc("2026-11-18T14:00:00+00:00")}
    assert decide(facts(state="told", kind="late", previous=[told]), AS_OF, "b2", BRAND).message is None


def test_a_case_closed_by_a_refund_gets_no_good_news_note():
    f = facts(state="resolved", previous=[sent("CASE-O1-1/notice/late")])
    f.case["resolution"] = "refunded"
    assert decide(f, AS_OF, "b6", BRAND).message is None


def test_a_wide_window_says_so_gives_the_latest_date_and_a_date_we_will_write_again_by():
    # 23 Nov to 11 Dec is 13 business days: wider than the brand's 7.
    d = decide(facts(window=(date(2026, 11, 23), date(2026, 12, 11))), AS_OF, "b1", BRAND)
    text = d.message["body_text"]
    assert "can't honestly give you a narrow window" in text and "latest date we can stand behind" in text
    assert d.message["check_in_by"] == date(2026, 11, 30)  # five business days from Friday 20 Nov (26th: Thanksgiving)
    assert "we will write to you again by Mon, Nov 30" in text
    narrow = decide(facts(), AS_OF, "b1", BRAND).message
    assert narrow["check_in_by"] is None and "write to you again" not in narrow["body_text"]


def test_the_check_in_date_is_kept_whatever_happens_once_and_only_if_nothing_else_went_out():
    promise = {**sent("CASE-O1-1/notice/late", window_latest=date(2026, 12, 11)), "window_earliest": date(2026, 11, 16),
               "planned_at": utc("2026-11-13T14:00:00+00:00"), "check_in_by": date(2026, 11, 20)}
    d = decide(facts(state="told", previous=[promise], window=(date(2026, 11, 23), date(2026, 12, 11))),
               AS_OF, "b5", BRAND)
    assert d.message["message_key"] == "CASE-O1-1/check_in/2026-11-20" and d.message["kind"] == "check_in"
    assert "As promised" in d.message["body_text"] and "Dec 11" in d.message["body_text"]
    assert d.message["subject"] == "An update on your order O1, as promised"
    kept = {**d.message, "state": "sent", "planned_at": AS_OF}
    assert decide(facts(state="told", previous=[promise, kept]), AS_OF, "b6", BRAND).message is None
    not_yet = {**promise, "check_in_by": date(2026, 11, 24)}
    assert decide(facts(state="told", previous=[not_yet]), AS_OF, "b5", BRAND).message is None
    news_since = {**sent("CASE-O1-1/update/out_for_delivery@S1", kind="update"),
                  "planned_at": utc("2026-11-19T14:00:00+00:00")}
    assert decide(facts(state="told", previous=[promise, news_since]), AS_OF, "b5", BRAND).message is None


def test_a_check_in_after_the_window_opened_says_by_when_not_a_first_day_already_gone():
    # Promised 16 Nov: 17 Nov to 27 Nov, check in by 20 Nov. On 20 Nov no further check-in fits
    # before the 27th, and the 17th is gone: "by Fri, Nov 27 at the latest".
    promise = {**sent("CASE-O1-1/notice/late", window_latest=date(2026, 11, 27)), "window_earliest": date(2026, 11, 17),
               "planned_at": utc("2026-11-16T14:00:00+00:00"), "check_in_by": date(2026, 11, 20)}
    d = decide(facts(state="told", previous=[promise]), AS_OF, "b5", BRAND)
    text = d.message["body_text"]
    assert "by Fri, Nov 27 at the latest" in text and "Nov 17" not in text
    assert d.message["check_in_by"] is None and "write to you again" not in text
