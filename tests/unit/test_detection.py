"""Detection rules on tiny frames: what ops and customers would see for each situation."""

from __future__ import annotations

from lastmile.core.detection import detect

from builders import frames, scan, shipment, utc


def found(ships, scans, as_of, estimates=()):
    result = detect(*frames(ships, scans, estimates), utc(as_of))
    return {(r.shipment_id, r.exception_type): r for r in result.itertuples()}


LABEL = "2026-11-02T14:00:00+00:00"  # Monday


def moving(sid="S1", until="2026-11-03T15:00:00+00:00"):
    return [scan(sid, LABEL, "pre_transit", message="Label created"),
            scan(sid, "2026-11-02T22:00:00+00:00"), scan(sid, until)]


def test_promise_passed_without_delivery_is_late_and_open():
    hits = found([shipment(created=LABEL, promised="2026-11-05")], moving(until="2026-11-05T10:00:00+00:00"),
                 "2026-11-06T12:00:00+00:00")
    late = hits[("S1", "late")]
    assert late.open
    # Evidence starts when the promised day ended in New York, not at UTC midnight.
    assert late.first_evidence_at.isoformat().startswith("2026-11-06T05:00")


def test_carrier_estimate_past_the_promise_is_late_before_the_promise_passes():
    hits = found([shipment(created=LABEL, promised="2026-11-06")], moving(), "2026-11-04T12:00:00+00:00",
                 estimates=[("S1", "2026-11-09", "2026-11-03T16:00:00+00:00")])
    assert ("S1", "late") in hits
    assert '"carrier_estimate": "2026-11-09"' in hits[("S1", "late")].evidence


def test_delivered_on_the_promised_local_day_is_not_late_even_if_utc_says_next_day():
    # 20:00 in Los Angeles on Nov 5 is already Nov 6 in UTC.
    ships = [shipment(created=LABEL, promised="2026-11-05", tz="America/Los_Angeles")]
    scans = moving() + [scan("S1", "2026-11-06T04:00:00+00:00", "delivered", message="Delivered")]
    assert not found(ships, scans, "2026-11-10T12:00:00+00:00")


def test_friday_night_scan_before_a_monday_holiday_is_not_stalled_until_three_business_days():
    # Last scan late on Friday 4 Sep 2026 (New York); Monday 7 Sep is Labor Day.
    ships = [shipment(created="2026-09-02T14:00:00+00:00", promised="2026-09-15")]
    scans = [scan("S1", "2026-09-02T14:00:00+00:00", "pre_transit"), scan("S1", "2026-09-05T03:30:00+00:00")]
    assert ("S1", "stalled") not in found(ships, scans, "2026-09-09T16:00:00+00:00")  # Tue, Wed: 2 days
    stalled = found(ships, scans, "2026-09-10T16:00:00+00:00")[("S1", "stalled")]  # Thu: 3 days
    assert '"business_days_silent": 3' in stalled.evidence
    assert stalled.first_evidence_at.isoformat().startswith("2026-09-05T03:30")


def test_long_silence_is_lost_not_stalled():
    hits = found([shipment(created=LABEL, promised="2026-11-06")], moving(), "2026-11-13T16:00:00+00:00")
    assert ("S1", "lost") in hits and ("S1", "stalled") not in hits


def test_carrier_saying_lost_is_lost_at_once():
    scans = moving() + [scan("S1", "2026-11-04T09:00:00+00:00", "failed", "lost", "Package could not be located")]
    hits = found([shipment(created=LABEL, promised="2026-11-10")], scans, "2026-11-04T10:00:00+00:00")
    assert '"carrier_says_lost": true' in hits[("S1", "lost")].evidence


def test_label_without_acceptance_is_stuck_before_pickup():
    ships = [shipment(created=LABEL, promised="2026-11-10")]
    scans = [scan("S1", LABEL, "pre_transit", message="Label created")]
    assert not found(ships, scans, "2026-11-03T20:00:00+00:00")
    assert found(ships, scans, "2026-11-04T20:00:00+00:00")[("S1", "stuck_before_pickup")].open


def test_carrier_reported_exceptions_each_become_their_own_type():
    ships = [shipment(sid, created=LABEL, promised="2026-11-20", line=f"L{sid}") for sid in "ABCDE"]
    scans = [scan("A", "2026-11-03T10:00:00+00:00", "exception", "failed_attempt", "No access"),
             scan("B", "2026-11-03T10:00:00+00:00", "exception", "address_problem", "Address incomplete"),
             scan("C", "2026-11-03T10:00:00+00:00", "exception", "customs_hold", "Held by customs"),
             scan("D", "2026-11-03T10:00:00+00:00", "returned", "return_to_sender", "Returning"),
             scan("E", "2026-11-03T10:00:00+00:00", "failed", "damaged", "Damaged")]
    hits = found(ships, scans, "2026-11-03T12:00:00+00:00")
    assert {k for k in hits} == {("A", "failed_attempt"), ("B", "address_problem"), ("C", "customs_hold"),
                                 ("D", "returned"), ("E", "damaged")}
    assert '"carrier_message": "No access"' in hits[("A", "failed_attempt")].evidence


def test_out_of_order_scan_does_not_reopen_a_delivered_parcel():
    scans = moving() + [scan("S1", "2026-11-04T18:00:00+00:00", "delivered", message="Delivered"),
                        scan("S1", "2026-11-05T08:00:00+00:00", "out_for_delivery", message="Out for delivery")]
    hits = found([shipment(created=LABEL, promised="2026-11-03")], scans, "2026-11-20T12:00:00+00:00")
    assert not hits[("S1", "late")].open
    assert ("S1", "lost") not in hits and ("S1", "stalled") not in hits


def test_parcel_delivered_after_being_called_lost_closes():
    ships = [shipment(created=LABEL, promised="2026-11-06")]
    assert found(ships, moving(), "2026-11-13T16:00:00+00:00")[("S1", "lost")].open
    later = moving() + [scan("S1", "2026-11-14T15:00:00+00:00", "delivered", message="Delivered")]
    hits = found(ships, later, "2026-11-16T16:00:00+00:00")
    assert ("S1", "lost") not in hits
    assert not hits[("S1", "late")].open


def test_chain_of_three_shipments_marks_each_reshipment_and_closes_the_replaced_ones():
    ships = [shipment("S1", created=LABEL, promised="2026-11-06"),
             shipment("S2", created="2026-11-12T14:00:00+00:00", promised="2026-11-17", sequence=2, replaces="S1"),
             shipment("S3", created="2026-11-19T14:00:00+00:00", promised="2026-11-24", sequence=3, replaces="S2")]
    scans = moving("S1") + [scan("S2", "2026-11-12T14:00:00+00:00", "pre_transit"),
                            scan("S2", "2026-11-13T09:00:00+00:00", "failed", "damaged", "Damaged"),
                            scan("S3", "2026-11-19T14:00:00+00:00", "pre_transit")]
    hits = found(ships, scans, "2026-11-19T16:00:00+00:00")
    assert hits[("S3", "reshipped")].open and '"shipment_number": 3' in hits[("S3", "reshipped")].evidence
    assert not hits[("S1", "lost")].open and not hits[("S2", "damaged")].open


def test_nothing_is_detected_for_a_shipment_created_after_as_of():
    assert not found([shipment(created="2026-11-20T14:00:00+00:00", promised="2026-11-24")], [],
                     "2026-11-19T12:00:00+00:00")


def test_quiet_days_during_a_customs_hold_are_not_a_stall_but_still_end_in_lost():
    ships = [shipment(created=LABEL, promised="2026-11-20")]
    scans = moving() + [scan("S1", "2026-11-04T10:00:00+00:00", "exception", "customs_hold", "Held by customs")]
    hits = found(ships, scans, "2026-11-09T16:00:00+00:00")
    assert ("S1", "customs_hold") in hits and ("S1", "stalled") not in hits
    assert ("S1", "lost") in found(ships, scans, "2026-11-16T16:00:00+00:00")


def test_a_carrier_that_gives_up_on_a_parcel_is_never_a_quiet_end():
    # EasyPost failure/failure: the carrier stopped trying. Tracking ends, and a person must take it.
    scans = [*moving(), scan("S1", "2026-11-04T15:00:00+00:00", "failed", "failure", "Unable to deliver")]
    hits = found([shipment(created=LABEL, promised="2026-11-09")], scans, "2026-11-04T16:00:00+00:00")
    assert ("S1", "returned") in hits and hits[("S1", "returned")].open


def test_evidence_says_null_for_every_kind_of_missing_fact_and_keeps_dates_and_numbers_plain():
    import json
    from datetime import date

    import numpy as np
    import pandas as pd

    from lastmile.core.detection import _evidence

    rows = pd.Index([7, 3])  # the rows of a rule's hits keep the facts' own labels
    texts = pd.Series(["No access", pd.NA], index=[7, 3], dtype="string")
    found = _evidence(rows, "failed_attempt", carrier_message=texts,
                      at=pd.Series([pd.Timestamp("2026-11-20 14:00", tz="UTC"), pd.NaT], index=[7, 3]),
                      days=pd.Series([np.int64(3), np.nan], index=[7, 3]),
                      promised=pd.Series([date(2026, 11, 9), None], index=[7, 3]),
                      lost=pd.Series([True, False], index=[7, 3]))
    assert list(found.index) == [7, 3]
    assert json.loads(found[7]) == {"rule": "failed_attempt", "carrier_message": "No access",
                                    "at": "2026-11-20T14:00:00+00:00", "days": 3.0, "promised": "2026-11-09",
                                    "lost": True}
    assert json.loads(found[3]) == {"rule": "failed_attempt", "carrier_message": None, "at": None, "days": None,
                                    "promised": None, "lost": False}


def test_evidence_reads_each_fact_by_its_rows_label_and_names_the_rule_when_it_has_no_facts():
    from decimal import Decimal

    import numpy as np
    import pandas as pd

    from lastmile.core.detection import _evidence

    rows = pd.Index([9, 5, 2])
    assert list(_evidence(rows, "late")) == ['{"rule": "late"}'] * 3
    shuffled = pd.Series([30, 20, 10], index=[2, 5, 9])  # the same facts, in another order
    assert list(_evidence(rows, "late", days=shuffled)) == [
        '{"days": 10, "rule": "late"}', '{"days": 20, "rule": "late"}', '{"days": 30, "rule": "late"}']
    odd = pd.Series([Decimal("NaN"), np.float32("nan"), Decimal("1.5")], index=[9, 5, 2], dtype=object)
    assert list(_evidence(rows, "late", v=odd)) == [
        '{"rule": "late", "v": null}', '{"rule": "late", "v": null}', '{"rule": "late", "v": "1.5"}']


def test_a_detection_names_its_parcel_and_line_in_the_callers_own_id_type():
    """The ids come out as they went in (a "string" column stays one; one frame is built for every
    rule at the end, from the facts' own columns)."""
    ships, scans, estimates = frames([shipment(created=LABEL, promised="2026-11-05")],
                                     moving(until="2026-11-05T10:00:00+00:00"), ())
    ships = ships.astype({"shipment_id": "string", "order_line_id": "string"})
    scans = scans.astype({"shipment_id": "string"})
    result = detect(ships, scans, estimates, utc("2026-11-06T12:00:00+00:00"))
    assert list(result["shipment_id"]) == ["S1"] and str(result["shipment_id"].dtype) == "string"
    assert str(result["order_line_id"].dtype) == "string"
