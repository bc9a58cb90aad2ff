"""Cases: one per order line, opened once, updated as the parcel's story changes."""

from __future__ import annotations

import pandas as pd

from lastmile.core.cases import build_cases
from lastmile.core.detection import detect

from builders import frames, scan, shipment, utc

LABEL = "2026-11-02T14:00:00+00:00"


def run(ships, scans, as_of, existing=None, delivered=None):
    s, sc, est = frames(ships, scans)
    dets = detect(s, sc, est, utc(as_of)).assign(window_earliest=None, window_latest=None, window_basis=None)
    return build_cases(dets, s, delivered or {}, existing or {}, utc(as_of), as_of, "Care team", "Dana (lead)")


def moving(sid="S1"):
    return [scan(sid, LABEL, "pre_transit"), scan(sid, "2026-11-02T22:00:00+00:00")]


def test_a_case_opens_once_and_a_rerun_changes_nothing():
    ships = [shipment(created=LABEL, promised="2026-11-05")]
    scans = moving() + [scan("S1", "2026-11-05T20:00:00+00:00")]
    first = run(ships, scans, "2026-11-06T12:00:00+00:00")
    assert [u.events for u in first] == [[("opened", "late"), ("open", "late")]]
    existing = {u.case["case_id"]: u.case for u in first}
    assert run(ships, scans, "2026-11-06T12:00:00+00:00", existing) == []


def test_lost_goes_to_a_person_and_delivery_resolves_it():
    ships = [shipment(created=LABEL, promised="2026-11-05")]
    lost = run(ships, moving(), "2026-11-13T16:00:00+00:00")[0].case
    assert lost["exception_type"] == "lost" and lost["state"] == "escalated" and lost["owner"] == "Dana (lead)"
    delivered_at = utc("2026-11-16T15:00:00+00:00")
    later = moving() + [scan("S1", "2026-11-16T15:00:00+00:00", "delivered")]
    update = run(ships, later, "2026-11-16T16:00:00+00:00", {lost["case_id"]: lost}, {"S1": delivered_at})[0]
    assert update.case["state"] == "resolved" and update.case["resolution"] == "delivered"
    assert ("resolved", "delivered") in update.events
    assert update.case["opened_at"] == lost["opened_at"]


def test_third_shipment_case_counts_the_chain_and_is_graver():
    ships = [shipment("S1", created=LABEL, promised="2026-11-06"),
             shipment("S2", created="2026-11-12T14:00:00+00:00", promised="2026-11-17", sequence=2, replaces="S1"),
             shipment("S3", created="2026-11-19T14:00:00+00:00", promised="2026-11-24", sequence=3, replaces="S2")]
    scans = moving("S1") + [scan("S2", "2026-11-13T09:00:00+00:00", "failed", "damaged", "Damaged"),
                            scan("S3", "2026-11-19T14:00:00+00:00", "pre_transit")]
    (update,) = run(ships, scans, "2026-11-19T16:00:00+00:00")
    case = update.case
    assert case["shipments_in_chain"] == 3 and case["exception_type"] == "reshipped"
    assert case["shipment_id"] == "S3" and case["severity"] == 4
    assert case["state"] == "escalated" and case["owner"] == "Dana (lead)"  # flagged for a person
    assert set(pd.read_json(__import__("io").StringIO(case["evidence"]), typ="series").index) >= {"lost", "damaged"}


def test_a_refunded_or_cancelled_order_resolves_its_case_without_a_delivery():
    ships = [shipment(created=LABEL, promised="2026-11-05")]
    lost = run(ships, moving(), "2026-11-13T16:00:00+00:00")[0].case
    s, sc, est = frames(ships, moving())
    dets = detect(s, sc, est, utc("2026-11-14T16:00:00+00:00")).assign(window_earliest=None, window_latest=None,
                                                                        window_basis=None)
    (update,) = build_cases(dets, s, {}, {lost["case_id"]: lost}, utc("2026-11-14T16:00:00+00:00"), "b2",
                            "Care team", "Dana (lead)", {"L1": "refunded"})
    assert (update.case["state"], update.case["resolution"]) == ("resolved", "refunded")
    assert update.case["resolved_at"] == utc("2026-11-14T16:00:00+00:00")
    assert ("resolved", "refunded") in update.events
