"""Carrier payloads -> normalised scans: EasyPost and AfterShip shapes parse cleanly, bad input is quarantined."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from servers.aftership import canonical_tracking, checkpoint
from servers.easypost import recorded_trackers

from lastmile.carriers.tracking import PARSERS, parse, parse_aftership, parse_easypost
from lastmile.core import status

OBSERVED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def _recorded_trackers(fixtures_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every Tracker EasyPost returned in the recorded cassettes, plus the webhook event's result."""
    found = recorded_trackers(fixtures_dir / "easypost")
    event = json.loads((fixtures_dir / "easypost" / "webhook_event_body.json").read_text())
    return [*found, ("webhook_event_body", event["result"])]


def _detail(when: str, status_: str = "in_transit", detail: str = "arrived_at_facility",
            message: str = "Arrived at facility", city: str = "MEMPHIS") -> dict[str, Any]:
    return {"object": "TrackingDetail", "message": message, "status": status_, "status_detail": detail,
            "datetime": when, "source": "USPS",
            "tracking_location": {"object": "TrackingLocation", "city": city, "state": "TN", "country": "US"}}


def _tracker(code: str, details: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    last = details[-1] if details else {}
    return {"id": f"trk_{code}", "object": "Tracker", "tracking_code": code,
            "status": last.get("status", "pre_transit"), "status_detail": last.get("status_detail", ""),
            "carrier": "USPS", "tracking_details": details, **extra}


# --------------------------------------------------------------------------- real vendor payloads


def test_recorded_fixtures_are_present(fixtures_dir: Path) -> None:
    trackers = _recorded_trackers(fixtures_dir)
    # 5 cassette interactions (create, retrieve x2, batch x2) and the webhook event.
    assert len(trackers) >= 6
    assert sum(len(t["tracking_details"]) for _, t in trackers) > 10


def test_every_recorded_easypost_tracker_parses_without_rejections(fixtures_dir: Path) -> None:
    trackers = _recorded_trackers(fixtures_dir)
    parsed = parse_easypost(trackers, OBSERVED_AT)

    assert parsed.rejections == [], [r.message() for r in parsed.rejections]
    assert parsed.trackers_ok == len(trackers)
    assert len(parsed.scans) == sum(len(t["tracking_details"]) for _, t in trackers)


def test_recorded_scans_are_aware_utc_in_our_taxonomy_with_raw_kept(fixtures_dir: Path) -> None:
    trackers = _recorded_trackers(fixtures_dir)
    parsed = parse_easypost(trackers, OBSERVED_AT)
    originals = [d for _, t in trackers for d in t["tracking_details"]]

    assert len(parsed.scans) == len(originals)
    for scan, original in zip(parsed.scans, originals, strict=True):
        assert scan["occurred_at"].tzinfo is not None
        assert scan["occurred_at"].utcoffset() == timedelta(0)
        # "2024-07-31T15:00:00Z" -> the same instant, in UTC
        assert scan["occurred_at"] == datetime.fromisoformat(original["datetime"].replace("Z", "+00:00"))
        assert scan["utc_offset_minutes"] == 0
        assert scan["status"] in status.STATUSES
        # Real vendor codes are all known to the mapping: nothing in the fixtures is "unmapped".
        assert scan["status"] != "unmapped", (scan["carrier_status"], scan["carrier_status_detail"])
        assert json.loads(scan["raw"]) == original
        assert scan["carrier_status"] == original["status"]
        assert scan["message"] == (original["message"] or "")


def test_webhook_event_scans_keep_their_shipment_location_and_estimate(fixtures_dir: Path) -> None:
    event = json.loads((fixtures_dir / "easypost" / "webhook_event_body.json").read_text())
    parsed = parse_easypost([("shp_1", event["result"])], OBSERVED_AT)

    assert {s["shipment_id"] for s in parsed.scans} == {"shp_1"}
    first = parsed.scans[0]
    assert first["status"] == "pre_transit"
    assert first["occurred_at"] == datetime(2024, 7, 31, 15, 0, tzinfo=UTC)
    assert parsed.scans[1]["city"] == "ORLANDO"
    assert parsed.scans[1]["country"] == "US"
    assert parsed.estimates == [{"shipment_id": "shp_1", "est_delivery_date": datetime(2024, 8, 5).date(),
                                 "observed_at": OBSERVED_AT}]


# --------------------------------------------------------------------------- bad timestamps


def test_naive_scan_timestamp_is_rejected_and_the_other_scans_still_parse() -> None:
    code = "EZ1000000042"
    tracker = _tracker(code, [
        _detail("2026-11-02T18:00:00Z", "pre_transit", "label_created", "Label created"),
        _detail("2026-11-03T09:12:00"),  # no offset: which 09:12?
        _detail("2026-11-03T20:40:00-06:00", "in_transit", "departed_facility", "Departed facility"),
    ])
    parsed = parse_easypost([("shp_42", tracker)], OBSERVED_AT)

    assert len(parsed.rejections) == 1
    rejection = parsed.rejections[0]
    assert rejection.source == "easypost"
    assert rejection.record_id == f"{code}#1"
    assert rejection.field == "datetime"
    assert "offset" in rejection.reason
    assert "2026-11-03T09:12:00" in rejection.reason
    assert json.loads(rejection.payload)["datetime"] == "2026-11-03T09:12:00"

    assert [s["message"] for s in parsed.scans] == ["Label created", "Departed facility"]
    assert [s["occurred_at"] for s in parsed.scans] == [
        datetime(2026, 11, 2, 18, 0, tzinfo=UTC), datetime(2026, 11, 4, 2, 40, tzinfo=UTC)]
    assert parsed.trackers_ok == 1


@pytest.mark.parametrize("value", [None, "", "yesterday"])
def test_missing_or_garbled_scan_timestamp_is_rejected_not_raised(value: Any) -> None:
    tracker = _tracker("EZ7", [_detail("2026-11-03T09:12:00Z"), {**_detail("x"), "datetime": value},
                               _detail("2026-11-04T09:12:00Z")])
    # An older scan (not the newest) is broken, so no replacement scan is invented.
    parsed = parse_easypost([("shp_7", tracker)], OBSERVED_AT)

    assert [(r.record_id, r.field) for r in parsed.rejections] == [("EZ7#1", "datetime")]
    assert len(parsed.scans) == 2


def test_offsets_are_converted_to_utc_and_the_local_offset_is_kept() -> None:
    tracker = _tracker("EZ1000000043", [
        _detail("2026-11-03T09:12:00+01:00", city="PARIS"),
        _detail("2026-11-03T22:05:00-05:00", city="NEW YORK"),
    ])
    parsed = parse_easypost([("shp_43", tracker)], OBSERVED_AT)

    assert parsed.rejections == []
    paris, new_york = parsed.scans
    assert paris["occurred_at"] == datetime(2026, 11, 3, 8, 12, tzinfo=UTC)
    assert paris["occurred_at"].tzinfo == UTC
    assert paris["utc_offset_minutes"] == 60
    assert new_york["occurred_at"] == datetime(2026, 11, 4, 3, 5, tzinfo=UTC)
    assert new_york["utc_offset_minutes"] == -300


# --------------------------------------------------------------------------- bad trackers


@pytest.mark.parametrize("missing", ["status", "tracking_details"])
def test_tracker_missing_a_required_field_is_rejected_whole_and_others_still_parse(missing: str) -> None:
    broken = _tracker("EZ_BROKEN", [_detail("2026-11-03T09:12:00Z"), _detail("2026-11-03T10:00:00Z")])
    del broken[missing]
    good = _tracker("EZ_GOOD", [_detail("2026-11-03T09:12:00Z")])
    parsed = parse_easypost([("shp_broken", broken), ("shp_good", good)], OBSERVED_AT)

    assert len(parsed.rejections) == 1
    rejection = parsed.rejections[0]
    assert (rejection.source, rejection.record_id, rejection.field) == ("easypost", "EZ_BROKEN", missing)
    assert missing in rejection.reason
    assert missing in rejection.message()
    # Nothing of the broken tracker is half-stored.
    assert {s["shipment_id"] for s in parsed.scans} == {"shp_good"}
    assert parsed.trackers_ok == 1


def test_tracker_with_tracking_details_not_a_list_is_rejected() -> None:
    broken = _tracker("EZ_ODD", [])
    broken["tracking_details"] = {"0": _detail("2026-11-03T09:12:00Z")}
    parsed = parse_easypost([("shp_odd", broken), ("shp_ok", _tracker("EZ_OK", [_detail("2026-11-03T09:12:00Z")]))],
                            OBSERVED_AT)

    assert [(r.record_id, r.field) for r in parsed.rejections] == [("EZ_ODD", "tracking_details")]
    assert [s["shipment_id"] for s in parsed.scans] == ["shp_ok"]


# --------------------------------------------------------------------------- dedup across polls


def test_same_payload_parsed_twice_gives_identical_scan_ids(fixtures_dir: Path) -> None:
    trackers = _recorded_trackers(fixtures_dir)
    first = parse_easypost(copy.deepcopy(trackers), OBSERVED_AT)
    second = parse_easypost(copy.deepcopy(trackers), OBSERVED_AT + timedelta(hours=1))

    assert [s["scan_id"] for s in first.scans] == [s["scan_id"] for s in second.scans]


def test_a_new_poll_with_one_more_scan_repeats_the_old_ids_and_adds_one() -> None:
    older = [_detail("2026-11-02T18:00:00Z", "pre_transit", "label_created", "Label created"),
             _detail("2026-11-03T09:12:00+01:00")]
    newer = older + [_detail("2026-11-04T07:30:00Z", "out_for_delivery", "out_for_delivery", "Out for delivery")]
    poll1 = parse_easypost([("shp_9", _tracker("EZ9", older))], OBSERVED_AT)
    poll2 = parse_easypost([("shp_9", _tracker("EZ9", newer))], OBSERVED_AT + timedelta(hours=4))

    ids1 = [s["scan_id"] for s in poll1.scans]
    ids2 = [s["scan_id"] for s in poll2.scans]
    assert ids2[:2] == ids1
    assert len(set(ids2)) == 3


# --------------------------------------------------------------------------- newest scan unreadable


def test_unreadable_newest_scan_is_replaced_by_tracker_updated_at_with_same_status() -> None:
    tracker = _tracker("EZ_DELIVERED", [
        _detail("2026-11-03T09:12:00Z"),
        _detail("2026-11-04T07:30:00Z", "out_for_delivery", "out_for_delivery", "Out for delivery"),
        _detail("2026-11-04T15:02:00", "delivered", "arrived_at_destination", "Delivered, front door"),
    ], updated_at="2026-11-04T15:05:00Z")
    tracker["status"] = "delivered"
    parsed = parse_easypost([("shp_d", tracker)], OBSERVED_AT)

    # The bad scan is still quarantined...
    assert [(r.record_id, r.field) for r in parsed.rejections] == [("EZ_DELIVERED#2", "datetime")]
    # ...but the parcel does not look stuck at "out for delivery": it is delivered, at the tracker's time.
    assert [s["status"] for s in parsed.scans] == ["in_transit", "out_for_delivery", "delivered"]
    newest = parsed.scans[-1]
    assert newest["occurred_at"] == datetime(2026, 11, 4, 15, 5, tzinfo=UTC)
    assert newest["carrier_status"] == "delivered"
    assert newest["message"].startswith("Delivered, front door")


def test_replacement_scan_is_stable_across_polls() -> None:
    def payload() -> dict[str, Any]:
        t = _tracker("EZ_R", [_detail("2026-11-03T09:12:00Z"),
                              _detail("2026-11-04T15:02:00", "delivered", "", "Delivered")],
                     updated_at="2026-11-04T15:05:00Z")
        t["status"] = "delivered"
        return t

    first = parse_easypost([("shp_r", payload())], OBSERVED_AT)
    second = parse_easypost([("shp_r", payload())], OBSERVED_AT)
    assert [s["scan_id"] for s in first.scans] == [s["scan_id"] for s in second.scans]
    assert len(first.scans) == 2


def test_unreadable_older_scan_gets_no_replacement() -> None:
    tracker = _tracker("EZ_OLD", [_detail("2026-11-03T09:12:00"), _detail("2026-11-04T07:30:00Z")],
                       updated_at="2026-11-04T07:35:00Z")
    parsed = parse_easypost([("shp_o", tracker)], OBSERVED_AT)

    assert [r.record_id for r in parsed.rejections] == ["EZ_OLD#0"]
    assert [s["occurred_at"] for s in parsed.scans] == [datetime(2026, 11, 4, 7, 30, tzinfo=UTC)]


def test_unreadable_newest_scan_without_updated_at_is_only_rejected() -> None:
    tracker = _tracker("EZ_NOUPD", [_detail("2026-11-03T09:12:00Z"),
                                    _detail("2026-11-04T15:02:00", "delivered", "", "Delivered")])
    parsed = parse_easypost([("shp_n", tracker)], OBSERVED_AT)

    assert [r.record_id for r in parsed.rejections] == ["EZ_NOUPD#1"]
    assert [s["status"] for s in parsed.scans] == ["in_transit"]


# --------------------------------------------------------------------------- status mapping


@pytest.mark.parametrize(("carrier_status", "detail", "message", "expected"), [
    ("delivered", "arrived_at_destination", "Delivered", ("delivered", None)),
    ("delivered", "", "", ("delivered", None)),
    ("in_transit", "failed_attempt", "Notice left (no secure location)", ("exception", "failed_attempt")),
    ("in_transit", "held", "Held by customs authority", ("exception", "customs_hold")),
    ("in_transit", "held", "CUSTOMS clearance pending", ("exception", "customs_hold")),
    ("failure", "lost", "Unable to locate", ("failed", "lost")),
    ("return_to_sender", "return", "Returned to sender", ("returned", "return_to_sender")),
    ("in_transit", "arrived_at_facility", "Arrived", ("in_transit", None)),
    ("out_for_delivery", "out_for_delivery", "Out for delivery", ("out_for_delivery", None)),
    ("pre_transit", "label_created", "Label created", ("pre_transit", None)),
])
def test_from_easypost_maps_known_codes(carrier_status: str, detail: str, message: str,
                                        expected: tuple[str, str | None]) -> None:
    assert tuple(status.from_easypost(carrier_status, detail, message)) == expected


def test_held_without_customs_is_a_hold_not_customs() -> None:
    assert tuple(status.from_easypost("in_transit", "held", "Held at post office")) == ("exception", "held")


@pytest.mark.parametrize(("carrier_status", "detail"), [
    ("teleported", "arrived_at_facility"),  # unknown status
    ("in_transit", "sorted_by_robot"),  # known status, unknown detail
])
def test_unknown_codes_are_unmapped_with_the_raw_code_never_in_transit(carrier_status: str, detail: str) -> None:
    mapped = status.from_easypost(carrier_status, detail, "whatever")
    assert mapped.status == "unmapped"
    assert mapped.status != "in_transit"
    assert carrier_status in (mapped.reason or "")
    assert detail in (mapped.reason or "")


def test_unmapped_scan_is_kept_with_its_raw_codes() -> None:
    parsed = parse_easypost([("shp_u", _tracker("EZ_U", [_detail("2026-11-03T09:12:00Z", "in_transit",
                                                                  "sorted_by_robot", "Sorted")]))], OBSERVED_AT)
    assert parsed.rejections == []
    (scan,) = parsed.scans
    assert scan["status"] == "unmapped"
    assert "sorted_by_robot" in scan["reason"]
    assert scan["carrier_status_detail"] == "sorted_by_robot"


def test_a_moving_parcel_with_no_detail_stays_in_transit() -> None:
    # EasyPost sends ("in_transit", "unknown") for "On the way": the detail is absent, not alarming.
    assert status.from_easypost("in_transit", "unknown", "On the way").status == "in_transit"


# =========================================================================== AfterShip


def _tracking(number: str, checkpoints: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """An AfterShip Tracking with every field of the SDK model (the local server's builder)."""
    body = canonical_tracking(f"id{number}", number, "usps", "2026-11-01T10:00:00+00:00")
    body["checkpoints"] = checkpoints
    if checkpoints:
        body.update(tag=checkpoints[-1]["tag"], subtag=checkpoints[-1]["subtag"])
    body.update(fields)
    return body


def test_aftership_scans_have_exactly_the_keys_of_easypost_scans() -> None:
    easypost = parse_easypost([("shp_e", _tracker("EZ1", [_detail("2026-11-03T09:12:00Z")]))], OBSERVED_AT)
    aftership = parse_aftership([("shp_a", _tracking("AS1", [
        checkpoint("InTransit", "InTransit_003", "2026-11-03T09:12:00-06:00", "Arrival scan")]))], OBSERVED_AT)

    assert aftership.rejections == [] and aftership.trackers_ok == 1
    (scan,) = aftership.scans
    assert set(scan) == set(easypost.scans[0])
    assert (scan["status"], scan["reason"]) == ("in_transit", None)
    assert (scan["carrier_status"], scan["carrier_status_detail"]) == ("InTransit", "InTransit_003")
    assert (scan["message"], scan["city"]) == ("Arrival scan", "Memphis")
    assert scan["country"] == "US"  # AfterShip's ISO alpha-3 "USA", stored as alpha-2 like EasyPost's
    assert json.loads(scan["raw"])["checkpoint_time"] == "2026-11-03T09:12:00-06:00"


def test_aftership_out_of_order_checkpoints_get_their_own_utc_instants() -> None:
    # Listed out of order, each in its own local offset (Hong Kong, Anchorage, Berlin).
    tracking = _tracking("AS2", [
        checkpoint("InTransit", "InTransit_004", "2026-11-05T06:30:00-09:00", "Arrived in destination country",
                   city="Anchorage", country_region="USA"),
        checkpoint("InTransit", "InTransit_007", "2026-11-04T10:00:00+08:00", "Departed",
                   city="Hong Kong", country_region="HKG"),
        checkpoint("Delivered", "Delivered_001", "2026-11-07T09:15:00+01:00", "Delivered",
                   city="Berlin", country_region="DEU"),
    ])
    parsed = parse_aftership([("shp_2", tracking)], OBSERVED_AT)

    assert parsed.rejections == []
    by_city = {s["city"]: s for s in parsed.scans}
    assert by_city["Hong Kong"]["occurred_at"] == datetime(2026, 11, 4, 2, 0, tzinfo=UTC)
    assert by_city["Anchorage"]["occurred_at"] == datetime(2026, 11, 5, 15, 30, tzinfo=UTC)
    assert by_city["Berlin"]["occurred_at"] == datetime(2026, 11, 7, 8, 15, tzinfo=UTC)
    assert [by_city[c]["utc_offset_minutes"] for c in ("Hong Kong", "Anchorage", "Berlin")] == [480, -540, 60]
    assert [by_city[c]["country"] for c in ("Hong Kong", "Anchorage", "Berlin")] == ["HK", "US", "DE"]
    newest = max(parsed.scans, key=lambda s: s["occurred_at"])
    assert newest["status"] == "delivered"


def test_aftership_checkpoint_without_offset_is_quarantined_and_the_others_parse() -> None:
    tracking = _tracking("AS3", [
        checkpoint("InfoReceived", "InfoReceived_001", "2026-11-02T18:00:00+00:00", "Label created"),
        checkpoint("InTransit", "InTransit_003", "2026-11-03T09:12:00", "Arrival scan"),  # which 09:12?
        checkpoint("InTransit", "InTransit_007", "2026-11-03T20:40:00-06:00", "Departure scan"),
    ])
    parsed = parse_aftership([("shp_3", tracking)], OBSERVED_AT)

    (rejection,) = parsed.rejections
    assert (rejection.source, rejection.record_id, rejection.field) == ("aftership", "AS3#1", "checkpoint_time")
    assert "offset" in rejection.reason
    assert json.loads(rejection.payload)["message"] == "Arrival scan"
    assert [s["message"] for s in parsed.scans] == ["Label created", "Departure scan"]
    assert parsed.trackers_ok == 1


def test_aftership_newest_checkpoint_without_offset_stands_in_at_aftership_s_own_time() -> None:
    tracking = _tracking("AS4", [
        checkpoint("OutForDelivery", "OutForDelivery_001", "2026-11-04T07:30:00-05:00", "Out for delivery"),
        checkpoint("Delivered", "Delivered_003", "2026-11-04T15:02:00", "Delivered, signed by J",
                   created_at="2026-11-04T20:05:00+00:00"),
    ])
    parsed = parse_aftership([("shp_4", tracking)], OBSERVED_AT)

    assert [(r.record_id, r.field) for r in parsed.rejections] == [("AS4#1", "checkpoint_time")]
    # The parcel does not look stuck "out for delivery": it is delivered, at AfterShip's record time.
    assert [s["status"] for s in parsed.scans] == ["out_for_delivery", "delivered"]
    assert parsed.scans[-1]["occurred_at"] == datetime(2026, 11, 4, 20, 5, tzinfo=UTC)
    assert parsed.scans[-1]["message"] == "Delivered, signed by J (time from AfterShip)"


@pytest.mark.parametrize(("fields", "expected"), [
    # The courier's own date wins over AfterShip's prediction...
    ({"courier_estimated_delivery_date": {"estimated_delivery_date": "2026-11-26"},
      "aftership_estimated_delivery_date": {"estimated_delivery_date": "2026-11-25"}}, date(2026, 11, 26)),
    # ...AfterShip's is used when the courier gives none...
    ({"aftership_estimated_delivery_date": {"estimated_delivery_date": "2026-11-25",
                                            "confidence_code": 0.9}}, date(2026, 11, 25)),
    # ...a range counts as its last day, and a carrier datetime as its (recipient's local) date.
    ({"courier_estimated_delivery_date": {"estimated_delivery_date_min": "2026-11-24",
                                          "estimated_delivery_date_max": "2026-11-27"}}, date(2026, 11, 27)),
    ({"courier_estimated_delivery_date": {"estimated_delivery_date": "2026-11-28T20:00:00"}}, date(2026, 11, 28)),
    # Our own promise (custom / order EDD) is not an observation of the carrier.
    ({"custom_estimated_delivery_date": {"type": "specific", "datetime": "2026-11-22"}}, None),
])
def test_aftership_estimate_prefers_the_courier_then_aftership(fields: dict[str, Any],
                                                               expected: date | None) -> None:
    tracking = _tracking("AS5", [checkpoint("InTransit", "InTransit_001", "2026-11-20T10:00:00+00:00")], **fields)
    parsed = parse_aftership([("shp_5", tracking)], OBSERVED_AT)

    assert parsed.estimates == ([{"shipment_id": "shp_5", "est_delivery_date": expected, "observed_at": OBSERVED_AT}]
                                if expected else [])


def test_aftership_garbled_estimate_is_quarantined_not_raised() -> None:
    tracking = _tracking("AS6", [checkpoint("InTransit", "InTransit_001", "2026-11-20T10:00:00+00:00")],
                         courier_estimated_delivery_date={"estimated_delivery_date": "next week"})
    parsed = parse_aftership([("shp_6", tracking)], OBSERVED_AT)

    assert [(r.record_id, r.field) for r in parsed.rejections] == [("AS6", "est_delivery_date")]
    assert parsed.estimates == [] and len(parsed.scans) == 1


@pytest.mark.parametrize("missing", ["tag", "checkpoints"])
def test_aftership_tracking_missing_a_required_field_is_rejected_whole(missing: str) -> None:
    broken = _tracking("AS_BROKEN", [checkpoint("InTransit", "InTransit_001", "2026-11-20T10:00:00+00:00")])
    del broken[missing]
    good = _tracking("AS_GOOD", [checkpoint("InTransit", "InTransit_001", "2026-11-20T10:00:00+00:00")])
    parsed = parse_aftership([("shp_b", broken), ("shp_g", good)], OBSERVED_AT)

    assert [(r.source, r.record_id, r.field) for r in parsed.rejections] == [("aftership", "AS_BROKEN", missing)]
    assert {s["shipment_id"] for s in parsed.scans} == {"shp_g"}


def test_a_new_tracking_with_no_checkpoints_is_fine_and_has_no_scans() -> None:
    parsed = parse_aftership([("shp_new", _tracking("AS_NEW", []))], OBSERVED_AT)
    assert (parsed.rejections, parsed.scans, parsed.trackers_ok) == ([], [], 1)


def test_the_same_aftership_checkpoints_polled_twice_have_the_same_scan_ids() -> None:
    points = [checkpoint("InTransit", "InTransit_002", "2026-11-20T10:00:00+00:00", "Accepted"),
              checkpoint("Exception", "Exception_004", "2026-11-21T10:00:00+02:00", "Held at customs")]
    first = parse_aftership([("shp_7", _tracking("AS7", copy.deepcopy(points)))], OBSERVED_AT)
    second = parse_aftership([("shp_7", _tracking("AS7", copy.deepcopy(points)))], OBSERVED_AT + timedelta(hours=1))
    assert [s["scan_id"] for s in first.scans] == [s["scan_id"] for s in second.scans]
    assert len(set(s["scan_id"] for s in first.scans)) == 2


def test_parse_picks_the_vendor_s_parser() -> None:
    tracking = _tracking("AS8", [checkpoint("Exception", "Exception_013", "2026-11-20T10:00:00+00:00", "Lost")])
    parsed = parse("aftership", [("shp_8", tracking)], OBSERVED_AT)
    assert [(s["status"], s["reason"]) for s in parsed.scans] == [("failed", "lost")]
    assert set(PARSERS) == {"easypost", "aftership", "export"}
    assert parse("easypost", [("shp_e", _tracker("EZ8", [_detail("2026-11-03T09:12:00Z")]))],
                 OBSERVED_AT).trackers_ok == 1


# --------------------------------------------------------------------------- AfterShip status mapping


def test_every_documented_aftership_tag_and_subtag_maps_to_one_of_our_statuses() -> None:
    for tag in status.AFTERSHIP_TAGS:
        mapped = status.from_aftership(tag, None)
        assert mapped.status in status.STATUSES and mapped.status != "unmapped", tag
    documented = set(status.AFTERSHIP_SUBTAGS) | status.AFTERSHIP_SUBTAGS_BY_TAG
    assert len(documented) == 52  # 43 read in the table + 9 mapped by their tag (docs/status-taxonomy.md)
    for subtag in documented:
        tag = subtag.partition("_")[0]
        assert tag in status.AFTERSHIP_TAGS, subtag
        mapped = status.from_aftership(tag, subtag, "whatever the carrier said")
        assert mapped.status in status.STATUSES and mapped.status != "unmapped", subtag
        if tag in ("InTransit", "InfoReceived", "Pending", "OutForDelivery", "Delivered"):
            assert mapped.status != "exception", subtag  # routine codes never raise an alarm


@pytest.mark.parametrize(("tag", "subtag", "message", "expected"), [
    ("Delivered", "Delivered_005", "Left with neighbour at no. 12", ("delivered", None)),
    ("AvailableForPickup", "AvailableForPickup_001", "Ready at the post office", ("available_for_pickup", None)),
    ("AttemptFail", "AttemptFail_002", "Nobody home", ("exception", "failed_attempt")),
    ("Exception", "Exception_002", "Customer moved", ("exception", "address_problem")),
    ("Exception", "Exception_003", "Refused by recipient", ("exception", "refused")),
    ("Exception", "Exception_004", "Held by customs", ("exception", "customs_hold")),
    ("Exception", "Exception_005", "Delayed", ("exception", "delayed")),
    ("Exception", "Exception_006", "Awaiting payment", ("exception", "held")),
    ("Exception", "Exception_006", "Customs duties unpaid", ("exception", "customs_hold")),
    ("Exception", "Exception_007", "Incorrect address", ("exception", "address_problem")),
    ("Exception", "Exception_010", "Returning to sender", ("returned", "return_to_sender")),
    ("Exception", "Exception_011", "Returned to sender", ("returned", "return_to_sender")),
    ("Exception", "Exception_012", "Damaged", ("failed", "damaged")),
    ("Exception", "Exception_013", "Lost", ("failed", "lost")),
    ("Exception", "Exception_017", "Snow storm", ("exception", "delayed")),
    ("Exception", "Exception_018", "Missing commercial invoice", ("exception", "customs_hold")),
    ("Exception", "Exception_020", "Voided by shipper", ("cancelled", None)),
    ("InTransit", "InTransit_006", "Customs clearance started", ("in_transit", None)),
    ("InTransit", "InTransit_012", "A 2026-07 code", ("in_transit", None)),
    ("Pending", "Pending_001", "", ("pre_transit", "pending")),
    ("InfoReceived", "InfoReceived_001", "Label created", ("pre_transit", None)),
    ("Expired", "Expired_001", "", ("unknown", "expired")),
])
def test_from_aftership_follows_aftership_s_subtag_table(tag: str, subtag: str, message: str,
                                                         expected: tuple[str, str | None]) -> None:
    assert tuple(status.from_aftership(tag, subtag, message)) == expected


@pytest.mark.parametrize(("tag", "subtag"), [
    ("Teleported", "Teleported_001"),  # unknown tag
    ("Exception", "Exception_099"),  # known tag, unknown subtag
    ("Exception", "Exception_014"),  # in the numbering but unread: its meaning is in the subtag
    ("InTransit", "Delivered_001"),  # the tag and the subtag contradict each other
    (None, "InTransit_001"),
])
def test_unknown_aftership_codes_are_unmapped_with_the_raw_code_never_in_transit(tag: str | None,
                                                                                  subtag: str) -> None:
    mapped = status.from_aftership(tag, subtag, "whatever")
    assert mapped == status.Status("unmapped", f"aftership:{tag or ''}/{subtag}")
