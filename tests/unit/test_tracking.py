"""Carrier payloads -> normalised scans: real EasyPost shapes parse cleanly, bad input is quarantined."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from lastmile import status
from lastmile.tracking import parse_easypost

OBSERVED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def _recorded_trackers(fixtures_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every Tracker EasyPost returned in the recorded cassettes, plus the webhook event's result."""
    found: list[tuple[str, dict[str, Any]]] = []
    for cassette in sorted((fixtures_dir / "easypost").glob("*.yaml")):
        for number, interaction in enumerate(yaml.safe_load(cassette.read_text())["interactions"]):
            body = json.loads(interaction["response"]["body"]["string"])
            for tracker in body["trackers"] if "trackers" in body else [body]:
                found.append((f"{cassette.stem}#{number}", tracker))
    event = json.loads((fixtures_dir / "easypost" / "webhook_event_body.json").read_text())
    found.append(("webhook_event_body", event["result"]))
    return found


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
