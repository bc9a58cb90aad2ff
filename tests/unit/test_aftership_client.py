"""The AfterShip Tracking client over real HTTP against the local AfterShip server (the SDK's shapes)."""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from servers.aftership import (
    CHECKPOINT_FIELDS,
    TRACKING_FIELDS,
    AfterShipServer,
    aftership_server,  # noqa: F401 - pytest fixture
    checkpoint,
)

from lastmile.carriers import aftership_client
from lastmile.carriers.aftership_client import (
    DEFAULT_BASE_URL,
    AfterShipClient,
    AfterShipClientError,
    AfterShipConfig,
    AfterShipMalformedResponse,
    AfterShipUnauthorized,
    AfterShipUnavailable,
    aftership_slug,
)
from lastmile.carriers.tracking import TrackingSource, parse_aftership
from lastmile.carriers.vendor_http import VendorClientError, VendorUnavailable
from lastmile.core.retry import retry_after_seconds

OBSERVED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def client_for(server: AfterShipServer, sleeps: list[float] | None = None, **overrides: Any) -> AfterShipClient:
    config = AfterShipConfig(api_key=overrides.pop("api_key", server.api_key), base_url=server.url,
                             timeout=overrides.pop("timeout", 2.0), max_attempts=overrides.pop("max_attempts", 5),
                             max_wait=overrides.pop("max_wait", 5.0))
    assert not overrides, overrides
    return AfterShipClient(config, sleep=sleeps.append if sleeps is not None else lambda s: None)


def shipment(n: int, code: str, carrier: str | None = "USPS") -> dict[str, Any]:
    return {"shipment_id": f"SHP-{n}", "tracking_code": code, "carrier": carrier}


def test_the_default_base_url_is_the_current_api_version() -> None:
    assert DEFAULT_BASE_URL == "https://api.aftership.com/tracking/2026-07"


# ------------------------------------------------------------------------------------- endpoints


def test_server_trackings_have_exactly_the_sdk_models_fields(aftership_server: AfterShipServer) -> None:  # noqa: F811
    added = aftership_server.add_tracking("9400100000000000000001", checkpoints=[
        checkpoint("InTransit", "InTransit_002", "2026-07-01T09:00:00-05:00")])
    with client_for(aftership_server) as client:
        got = client.get_tracking(added["id"])

    assert tuple(got) == TRACKING_FIELDS
    assert tuple(got["checkpoints"][0]) == CHECKPOINT_FIELDS
    assert (got["tag"], got["subtag"]) == ("InTransit", "InTransit_002")


def test_create_sends_the_flat_body_with_the_api_key_header(aftership_server: AfterShipServer) -> None:  # noqa: F811
    with client_for(aftership_server) as client:
        created = client.create_tracking("1Z0000000000000001", "ups")

    (request,) = aftership_server.requests
    assert (request.method, request.path) == ("POST", "/tracking/2026-07/trackings")
    assert request.body == {"tracking_number": "1Z0000000000000001", "slug": "ups"}
    assert request.headers["as-api-key"] == aftership_server.api_key
    assert "authorization" not in request.headers
    assert (created["tracking_number"], created["slug"], created["tag"]) == ("1Z0000000000000001", "ups", "Pending")
    assert request.status == 201


@pytest.mark.parametrize("reveals_id", [False, True])
def test_a_duplicate_create_returns_the_existing_tracking(aftership_server: AfterShipServer,  # noqa: F811
                                                          reveals_id: bool) -> None:
    aftership_server.duplicate_reveals_id = reveals_id
    with client_for(aftership_server) as client:
        first = client.create_tracking("1Z0000000000000002", "ups")
        again = client.create_tracking("1Z0000000000000002", "ups")

    assert again["id"] == first["id"]
    assert len(aftership_server.trackings()) == 1
    duplicate = aftership_server.requests[1]
    assert (duplicate.status, duplicate.method) == (400, "POST")
    follow_up = aftership_server.requests[2]
    if reveals_id:
        assert follow_up.path == f"/tracking/2026-07/trackings/{first['id']}"
    else:
        assert follow_up.query["tracking_numbers"] == ["1Z0000000000000002"] and follow_up.query["slug"] == ["ups"]


def test_paging_follows_the_cursor_over_several_pages(aftership_server: AfterShipServer) -> None:  # noqa: F811
    added = aftership_server.add_trackings(5)
    with client_for(aftership_server) as client:
        listed = list(client.list_trackings(limit=2))

    assert [t["id"] for t in listed] == [t["id"] for t in reversed(added)]  # all five, newest first, once
    gets = list(aftership_server.requests)
    assert len(gets) == 3
    assert [r.query["limit"] for r in gets] == [["2"]] * 3
    assert "cursor" not in gets[0].query
    assert gets[1].query["cursor"] != gets[2].query["cursor"]


def test_list_filters_by_tracking_numbers_and_caps_the_limit(aftership_server: AfterShipServer) -> None:  # noqa: F811
    aftership_server.add_trackings(3)
    with client_for(aftership_server) as client:
        listed = list(client.list_trackings(tracking_numbers=["AS9000000001", "AS9000000003"], limit=1000))

    assert sorted(t["tracking_number"] for t in listed) == ["AS9000000001", "AS9000000003"]
    (request,) = aftership_server.requests
    assert request.query["tracking_numbers"] == ["AS9000000001,AS9000000003"]
    assert request.query["limit"] == ["200"]


@pytest.mark.parametrize("cursor", ["same-cursor", None])
def test_paging_that_would_loop_forever_is_a_clear_error(aftership_server: AfterShipServer,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch, cursor: str | None) -> None:
    tracking = aftership_server.add_tracking("AS1")
    page = {"meta": {"code": 200}, "data": {"pagination": {"total": 9, "next_cursor": cursor, "has_next_page": True},
                                            "trackings": [tracking]}}
    monkeypatch.setattr(aftership_server, "_list", lambda query: (200, page))
    with client_for(aftership_server) as client, pytest.raises(AfterShipMalformedResponse, match="has_next_page"):
        list(client.list_trackings())
    assert len(aftership_server.requests) == (2 if cursor else 1)


def test_an_unknown_id_is_aftership_s_own_404(aftership_server: AfterShipServer) -> None:  # noqa: F811
    with client_for(aftership_server) as client, pytest.raises(AfterShipClientError) as caught:
        client.get_tracking("0123456789abcdef")
    assert (caught.value.status, caught.value.code, caught.value.message) == (404, "4004", "Tracking does not exist.")


# --------------------------------------------------------------------------------------- failures


def test_429_waits_exactly_retry_after_then_succeeds(aftership_server: AfterShipServer) -> None:  # noqa: F811
    added = aftership_server.add_tracking("AS2")
    aftership_server.script(("429", 2))
    sleeps: list[float] = []
    with client_for(aftership_server, sleeps) as client:
        got = client.get_tracking(added["id"])

    assert got["id"] == added["id"]
    assert sleeps == [2.0]
    assert [r.status for r in aftership_server.requests] == [429, 200]


def test_429_without_retry_after_waits_until_the_rate_limit_window_resets(
        aftership_server: AfterShipServer) -> None:  # noqa: F811
    added = aftership_server.add_tracking("AS2")
    aftership_server.send_retry_after = False
    aftership_server.script(("429", 3))
    sleeps: list[float] = []
    with client_for(aftership_server, sleeps) as client:
        client.get_tracking(added["id"])

    (waited,) = sleeps
    # Until X-RateLimit-Reset (whole Unix seconds); a first backoff would be at most 0.5 s.
    assert 1.9 <= waited <= 3.0


def test_retry_after_as_an_http_date_is_read_as_seconds_from_now() -> None:
    in_30s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (retry_after_seconds(in_30s) or 0) <= 30
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("soon") is None


def test_5xx_are_retried_with_capped_jittered_backoff_then_succeed(aftership_server: AfterShipServer) -> None:  # noqa: F811
    added = aftership_server.add_tracking("AS3")
    aftership_server.script(500, 502, 503)
    sleeps: list[float] = []
    with client_for(aftership_server, sleeps) as client:
        got = client.get_tracking(added["id"])

    assert got["id"] == added["id"]
    assert len(sleeps) == 3
    assert all(0 <= wait <= cap for wait, cap in zip(sleeps, (0.5, 1.0, 2.0), strict=True))
    assert [r.status for r in aftership_server.requests] == [500, 502, 503, 200]


def test_5xx_outlasting_the_retries_is_unavailable_with_aftership_s_code(aftership_server: AfterShipServer) -> None:  # noqa: F811
    aftership_server.script(*[503] * 3)
    sleeps: list[float] = []
    with client_for(aftership_server, sleeps, max_attempts=3) as client, \
            pytest.raises(AfterShipUnavailable) as caught:
        client.get_tracking("abc")

    assert (caught.value.status, caught.value.code) == (503, "503")
    assert "gave up after 3 attempts" in str(caught.value)
    assert isinstance(caught.value, VendorUnavailable)
    assert len(sleeps) == 2  # no pointless wait after the last attempt


def test_a_timeout_is_retried_then_unavailable_without_hanging(aftership_server: AfterShipServer) -> None:  # noqa: F811
    aftership_server.script(("hang", 2.0), ("hang", 2.0))
    sleeps: list[float] = []
    started = time.monotonic()
    with client_for(aftership_server, sleeps, timeout=0.2, max_attempts=2) as client, \
            pytest.raises(AfterShipUnavailable, match="no answer within 0.2 s"):
        client.get_tracking("abc")
    assert time.monotonic() - started < 1.5
    assert len(aftership_server.requests) == 2 and len(sleeps) == 1


def test_a_dropped_connection_is_retried(aftership_server: AfterShipServer) -> None:  # noqa: F811
    added = aftership_server.add_tracking("AS4")
    aftership_server.script("drop")
    with client_for(aftership_server) as client:
        assert client.get_tracking(added["id"])["id"] == added["id"]
    assert [r.outcome for r in aftership_server.requests] == ["dropped", "ok"]


def test_no_connection_is_unavailable_after_retries() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = AfterShipConfig(api_key="asat_notakey", base_url=f"http://127.0.0.1:{port}/tracking/2026-07",
                             timeout=0.5, max_attempts=2)
    sleeps: list[float] = []
    with AfterShipClient(config, sleep=sleeps.append) as client, \
            pytest.raises(AfterShipUnavailable, match="connection failed") as caught:
        client.get_tracking("abc")
    assert len(sleeps) == 1 and "asat_notakey" not in str(caught.value)


def test_malformed_json_is_a_clear_error_naming_the_path(aftership_server: AfterShipServer) -> None:  # noqa: F811
    aftership_server.script("malformed")
    with client_for(aftership_server) as client, pytest.raises(AfterShipMalformedResponse) as caught:
        list(client.list_trackings(tracking_numbers=["AS5"]))

    assert "GET /trackings" in str(caught.value) and "not valid JSON" in str(caught.value)
    assert "AS5" not in str(caught.value)  # the query string stays out of errors
    assert len(aftership_server.requests) == 1  # a broken body is not retried


def test_a_body_without_the_envelope_is_malformed(aftership_server: AfterShipServer,  # noqa: F811
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aftership_server, "_get", lambda tracking_id: (200, {"id": tracking_id}))
    with client_for(aftership_server) as client, pytest.raises(AfterShipMalformedResponse, match="no data object"):
        client.get_tracking("abc")


def test_a_4xx_raises_at_once_with_aftership_s_own_code_and_message(aftership_server: AfterShipServer) -> None:  # noqa: F811
    aftership_server.script((400, 4010, "The value of slug is invalid."))
    sleeps: list[float] = []
    with client_for(aftership_server, sleeps) as client, pytest.raises(AfterShipClientError) as caught:
        client.create_tracking("AS6", "teleport")

    assert (caught.value.status, caught.value.code) == (400, "4010")
    assert caught.value.message == "The value of slug is invalid."
    assert "HTTP 400 4010: The value of slug is invalid." in str(caught.value)
    assert isinstance(caught.value, VendorClientError)
    assert sleeps == [] and len(aftership_server.requests) == 1


def test_a_wrong_key_is_unauthorized_at_once_and_never_shown(aftership_server: AfterShipServer,  # noqa: F811
                                                              caplog: pytest.LogCaptureFixture) -> None:
    wrong = "asat_wrongwrongwrong"
    sleeps: list[float] = []
    caplog.set_level(logging.DEBUG)
    client = client_for(aftership_server, sleeps, api_key=wrong)
    with client, pytest.raises(AfterShipUnauthorized) as caught:
        list(client.list_trackings())

    assert (caught.value.status, caught.value.code, caught.value.message) == (401, "401", "The API Key is invalid.")
    assert sleeps == [] and len(aftership_server.requests) == 1
    shown = " ".join([str(caught.value), repr(caught.value), repr(client), repr(client.config), caplog.text])
    assert wrong not in shown


def test_config_and_client_never_show_the_key() -> None:
    config = AfterShipConfig(api_key="asat_secret123")
    assert "asat_secret123" not in repr(config) and "asat_secret123" not in str(config)
    assert "asat_secret123" not in repr(AfterShipClient(config))


# ---------------------------------------------------------------------------------- TrackingSource


@pytest.mark.parametrize(("carrier", "slug"), [
    ("USPS", "usps"), ("UPS", "ups"), ("FedEx", "fedex"), ("DHL", "dhl"), ("fed ex", "fedex"),
    ("Royal Mail", "royal-mail"), ("DPD", "dpd"), (None, None), ("", None),
])
def test_our_carrier_names_become_aftership_slugs(carrier: str | None, slug: str | None) -> None:
    assert aftership_slug(carrier) == slug


def test_trackers_lists_known_numbers_and_registers_unknown_ones(aftership_server: AfterShipServer) -> None:  # noqa: F811
    known = aftership_server.add_tracking("9400100000000000000011", slug="usps", checkpoints=[
        checkpoint("OutForDelivery", "OutForDelivery_001", "2026-11-23T08:10:00-05:00", "Out for delivery")])
    shipments = [shipment(1, "9400100000000000000011"), shipment(2, "1Z0000000000000022", carrier="UPS"),
                 shipment(3, "AS0000000033", carrier=None)]
    with client_for(aftership_server) as client:
        source: TrackingSource = client  # the client stands in for the simulator
        pairs = dict(source.trackers(shipments, OBSERVED_AT))
        requests_first_run = len(aftership_server.requests)
        again = dict(client.trackers_for(shipments, OBSERVED_AT))

    assert set(pairs) == {"SHP-1", "SHP-2", "SHP-3"}
    assert pairs["SHP-1"]["id"] == known["id"]
    assert (pairs["SHP-2"]["tracking_number"], pairs["SHP-2"]["slug"]) == ("1Z0000000000000022", "ups")
    creates = [r.body for r in aftership_server.requests if r.method == "POST"]
    assert creates == [{"tracking_number": "1Z0000000000000022", "slug": "ups"},
                       {"tracking_number": "AS0000000033"}]  # no slug: AfterShip detects the courier
    assert requests_first_run == 3  # one list + two creates
    # Next run: everything is known, so one list request and nothing registered twice.
    assert {k: v["id"] for k, v in again.items()} == {k: v["id"] for k, v in pairs.items()}
    assert len(aftership_server.requests) == requests_first_run + 1

    parsed = parse_aftership(pairs.items(), OBSERVED_AT)
    assert parsed.rejections == [] and parsed.trackers_ok == 3
    assert [(s["shipment_id"], s["status"]) for s in parsed.scans] == [("SHP-1", "out_for_delivery")]


def test_trackers_ask_in_chunks_and_match_the_carrier(aftership_server: AfterShipServer,  # noqa: F811
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aftership_client, "CODES_PER_REQUEST", 2)
    for n in range(1, 6):
        aftership_server.add_tracking(f"AS50000000{n:02d}", slug="usps")
    other_courier = aftership_server.add_tracking("AS5000000001", slug="fedex")  # same number, other courier
    shipments = [shipment(n, f"AS50000000{n:02d}") for n in range(1, 6)]
    with client_for(aftership_server) as client:
        pairs = dict(client.trackers_for(shipments, OBSERVED_AT))

    lists = [r for r in aftership_server.requests if r.method == "GET"]
    assert [len(r.query["tracking_numbers"][0].split(",")) for r in lists] == [2, 2, 1]
    assert not [r for r in aftership_server.requests if r.method == "POST"]
    assert set(pairs) == {f"SHP-{n}" for n in range(1, 6)}
    assert pairs["SHP-1"]["slug"] == "usps" and pairs["SHP-1"]["id"] != other_courier["id"]


def test_trackers_skip_a_number_aftership_refuses_and_carry_on(aftership_server: AfterShipServer,  # noqa: F811
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lastmile.carriers.aftership_client")
    shipments = [shipment(1, "AS0000000001"), shipment(2, "AS0000000002", carrier="Teleport Express"),
                 shipment(3, "AS0000000003", carrier="FedEx")]
    with client_for(aftership_server) as client:
        pairs = dict(client.trackers_for(shipments, OBSERVED_AT))

    assert set(pairs) == {"SHP-1", "SHP-3"}
    assert "aftership: could not register tracking code AS0000000002: HTTP 400 4010" in caplog.text
    assert aftership_server.api_key not in caplog.text


def test_trackers_stop_on_a_wrong_key(aftership_server: AfterShipServer) -> None:  # noqa: F811
    with client_for(aftership_server, api_key="asat_wrong") as client, pytest.raises(AfterShipUnauthorized):
        list(client.trackers_for([shipment(1, "AS1")], OBSERVED_AT))


def test_an_unknown_subtag_from_the_api_parses_as_unmapped_with_the_raw_code(
        aftership_server: AfterShipServer) -> None:  # noqa: F811
    aftership_server.add_tracking("AS7000000007", checkpoints=[
        checkpoint("InTransit", "InTransit_002", "2026-11-20T09:00:00-05:00", "Accepted"),
        checkpoint("Exception", "Exception_099", "2026-11-21T10:00:00-05:00", "Parcel teleported")])
    with client_for(aftership_server) as client:
        pairs = list(client.trackers_for([shipment(7, "AS7000000007")], OBSERVED_AT))

    parsed = parse_aftership(pairs, OBSERVED_AT)
    assert parsed.rejections == [] and parsed.trackers_ok == 1
    newest = max(parsed.scans, key=lambda s: s["occurred_at"])
    assert (newest["status"], newest["reason"]) == ("unmapped", "aftership:Exception/Exception_099")
    assert (newest["carrier_status"], newest["carrier_status_detail"]) == ("Exception", "Exception_099")


@pytest.mark.parametrize(("given", "used"), [
    ("https://api.aftership.com", "https://api.aftership.com/tracking/2026-07"),
    ("http://127.0.0.1:8025/", "http://127.0.0.1:8025/tracking/2026-07"),
    ("https://api.aftership.com/tracking/2026-07", "https://api.aftership.com/tracking/2026-07"),
])
def test_a_base_url_without_the_version_path_gets_it(given: str, used: str) -> None:
    assert AfterShipConfig(api_key="k", base_url=given).base_url == used
