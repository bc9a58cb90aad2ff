"""The EasyPost Trackers client over real HTTP against the local EasyPost server (recorded shapes)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from servers.easypost import (
    PARAMETER_REQUIRED,
    EasyPostServer,
    canonical_tracker,
    easypost_server,  # noqa: F401 - pytest fixture
    recorded_exchanges,
    recorded_trackers,
)

from lastmile.carriers import easypost_client
from lastmile.carriers.easypost_client import (
    EasyPostClient,
    EasyPostClientError,
    EasyPostConfig,
    EasyPostError,
    EasyPostMalformedResponse,
    EasyPostUnauthorized,
    EasyPostUnavailable,
)
from lastmile.carriers.tracking import TrackingSource, parse_easypost

OBSERVED_AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def client_for(server: EasyPostServer, sleeps: list[float] | None = None, **overrides: Any) -> EasyPostClient:
    config = EasyPostConfig(api_key=overrides.pop("api_key", server.api_key), base_url=server.url,
                            timeout=overrides.pop("timeout", 2.0), max_attempts=overrides.pop("max_attempts", 5),
                            max_wait=overrides.pop("max_wait", 5.0))
    assert not overrides, overrides
    return EasyPostClient(config, sleep=sleeps.append if sleeps is not None else lambda s: None)


def shipment(n: int, code: str, carrier: str | None = "USPS") -> dict[str, Any]:
    return {"shipment_id": f"SHP-{n}", "tracking_code": code, "carrier": carrier}


# ------------------------------------------------------------------------------- recorded shapes


def test_every_recorded_tracker_parses_with_zero_rejections(fixtures_dir: Path) -> None:
    trackers = recorded_trackers(fixtures_dir / "easypost")
    event = json.loads((fixtures_dir / "easypost" / "webhook_event_body.json").read_text())
    trackers.append(("webhook_event_body", event["result"]))
    assert len(trackers) >= 5  # create, retrieve (create + get), batch (create + list), webhook

    parsed = parse_easypost(((where, tracker) for where, tracker in trackers), OBSERVED_AT)

    assert parsed.rejections == []
    assert parsed.trackers_ok == len(trackers)
    assert len(parsed.scans) == sum(len(t["tracking_details"]) for _, t in trackers)


def test_the_cassettes_hold_the_exchanges_the_server_replays(fixtures_dir: Path) -> None:
    seen = {(ex.method, ex.uri.removeprefix("https://api.easypost.com"), ex.status)
            for ex in recorded_exchanges(fixtures_dir / "easypost")}
    assert ("POST", "/v2/trackers", 201) in seen
    assert ("POST", "/v2/trackers/batch", 200) in seen
    assert any(method == "GET" and uri.startswith("/v2/trackers/trk_") for method, uri, _ in seen)


def test_server_trackers_have_exactly_the_recorded_shape(easypost_server: EasyPostServer) -> None:  # noqa: F811
    added = easypost_server.add_tracker("EZ4000000004", status="delivered", status_detail="arrived_at_destination")
    with client_for(easypost_server) as client:
        got = client.retrieve(added["id"])

    template = canonical_tracker()
    assert set(got) == set(template)
    assert set(got["tracking_details"][0]) == set(template["tracking_details"][0])
    assert got["id"].startswith("trk_") and got["id"] != template["id"]
    assert (got["status"], got["tracking_details"][-1]["status_detail"]) == ("delivered", "arrived_at_destination")


# -------------------------------------------------------------------------------------- endpoints


def test_create_sends_the_documented_body_with_basic_auth(easypost_server: EasyPostServer) -> None:  # noqa: F811
    with client_for(easypost_server) as client:
        created = client.create_tracker("EZ1000000001", "USPS")
        again = client.retrieve(created["id"])

    request = easypost_server.requests[0]
    assert (request.method, request.path, request.status) == ("POST", "/v2/trackers", 201)
    assert request.body == {"tracker": {"tracking_code": "EZ1000000001", "carrier": "USPS"}}
    # EasyPost's documented scheme: Basic, the key as username, no password.
    expected = base64.b64encode(f"{easypost_server.api_key}:".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert again == created and created["tracking_code"] == "EZ1000000001"


def test_a_duplicate_create_returns_the_original_tracker(easypost_server: EasyPostServer) -> None:  # noqa: F811
    with client_for(easypost_server) as client:
        first = client.create_tracker("EZ1000000001", "USPS")
        second = client.create_tracker("EZ1000000001", "USPS")
    assert second["id"] == first["id"]
    assert [r.status for r in easypost_server.requests] == [201, 200]


def test_paging_returns_every_tracker_once_newest_first(easypost_server: EasyPostServer) -> None:  # noqa: F811
    added = easypost_server.add_trackers(7)
    with client_for(easypost_server) as client:
        listed = list(client.list_trackers(page_size=3))

    assert [t["id"] for t in listed] == [t["id"] for t in reversed(added)]
    gets = easypost_server.requests.snapshot()
    assert len(gets) == 3  # 3 + 3 + 1
    assert [r.query.get("before_id") for r in gets] == [None, [listed[2]["id"]], [listed[5]["id"]]]
    assert all(r.query["page_size"] == ["3"] for r in gets)


def test_list_filters_by_tracking_codes_and_caps_the_page_size(easypost_server: EasyPostServer) -> None:  # noqa: F811
    a, _, c = easypost_server.add_trackers(3)
    with client_for(easypost_server) as client:
        listed = list(client.list_trackers(tracking_codes=[a["tracking_code"], c["tracking_code"]],
                                           page_size=500))

    assert [t["id"] for t in listed] == [c["id"], a["id"]]
    query = easypost_server.requests[0].query
    assert query["tracking_codes[]"] == [a["tracking_code"], c["tracking_code"]]  # the official client's encoding
    assert query["page_size"] == ["100"]  # EasyPost's documented maximum


def test_paging_that_would_loop_forever_is_a_clear_error(easypost_server: EasyPostServer,  # noqa: F811
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tracker,) = easypost_server.add_trackers(1)
    monkeypatch.setattr(easypost_server, "_list", lambda query: (200, {"trackers": [tracker], "has_more": True}))
    with client_for(easypost_server) as client, pytest.raises(EasyPostMalformedResponse, match="has_more"):
        list(client.list_trackers())
    assert len(easypost_server.requests) == 2


# --------------------------------------------------------------------------------------- failures


def test_429_waits_exactly_retry_after_then_succeeds(easypost_server: EasyPostServer) -> None:  # noqa: F811
    added = easypost_server.add_tracker("EZ2000000002")
    easypost_server.script(("429", 2))
    sleeps: list[float] = []
    with client_for(easypost_server, sleeps) as client:
        got = client.retrieve(added["id"])

    assert got["id"] == added["id"]
    assert sleeps == [2.0]
    assert [r.status for r in easypost_server.requests] == [429, 200]


def test_retry_after_is_capped_by_max_wait(easypost_server: EasyPostServer) -> None:  # noqa: F811
    added = easypost_server.add_tracker("EZ2000000002")
    easypost_server.script(("429", 3600))
    sleeps: list[float] = []
    with client_for(easypost_server, sleeps, max_wait=5.0) as client:
        client.retrieve(added["id"])
    assert sleeps == [5.0]


def test_5xx_are_retried_with_capped_jittered_backoff(easypost_server: EasyPostServer) -> None:  # noqa: F811
    added = easypost_server.add_tracker("EZ2000000002")
    easypost_server.script(500, 503, 500)
    sleeps: list[float] = []
    with client_for(easypost_server, sleeps) as client:
        got = client.retrieve(added["id"])

    assert got["id"] == added["id"]
    assert len(sleeps) == 3
    assert all(0 <= wait <= cap for wait, cap in zip(sleeps, (0.5, 1.0, 2.0), strict=True))


def test_5xx_outlasting_the_retries_is_unavailable(easypost_server: EasyPostServer) -> None:  # noqa: F811
    easypost_server.script(*[503] * 3)
    sleeps: list[float] = []
    with client_for(easypost_server, sleeps, max_attempts=3) as client, \
            pytest.raises(EasyPostUnavailable) as caught:
        client.retrieve("trk_0")

    assert (caught.value.status, caught.value.code) == (503, "SERVICE_UNAVAILABLE")
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(sleeps) == 2  # no pointless wait after the last attempt


def test_a_hang_longer_than_the_timeout_ends_classified_without_hanging(
        easypost_server: EasyPostServer) -> None:  # noqa: F811
    easypost_server.script(("hang", 2.0), ("hang", 2.0))
    started = time.monotonic()
    with client_for(easypost_server, timeout=0.2, max_attempts=2) as client, \
            pytest.raises(EasyPostUnavailable, match="no answer within 0.2 s"):
        client.retrieve("trk_0")
    assert time.monotonic() - started < 1.5
    assert len(easypost_server.requests) == 2


def test_no_connection_is_unavailable_after_retries() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = EasyPostConfig(api_key="EZTKnotakey", base_url=f"http://127.0.0.1:{port}/v2", timeout=0.5,
                            max_attempts=2)
    sleeps: list[float] = []
    with EasyPostClient(config, sleep=sleeps.append) as client, \
            pytest.raises(EasyPostUnavailable, match="connection failed") as caught:
        client.retrieve("trk_0")
    assert len(sleeps) == 1 and "EZTKnotakey" not in str(caught.value)


def test_malformed_json_is_a_clear_error_naming_the_path(easypost_server: EasyPostServer) -> None:  # noqa: F811
    easypost_server.script("malformed")
    with client_for(easypost_server) as client, pytest.raises(EasyPostMalformedResponse) as caught:
        client.retrieve("trk_123")

    text = str(caught.value)
    assert "GET /trackers/trk_123" in text and "not valid JSON" in text
    assert easypost_server.api_key not in text
    assert len(easypost_server.requests) == 1  # not retried


def test_422_raises_at_once_with_easyposts_own_message(easypost_server: EasyPostServer) -> None:  # noqa: F811
    easypost_server.script(422)
    sleeps: list[float] = []
    with client_for(easypost_server, sleeps) as client, pytest.raises(EasyPostClientError) as caught:
        client.create_tracker("EZ1000000001", "USPS")

    err = caught.value
    assert not isinstance(err, EasyPostUnauthorized)
    assert (err.status, err.code, err.message) == (422, "PARAMETER.REQUIRED", "Missing required parameter.")
    assert err.errors == PARAMETER_REQUIRED["error"]["errors"]
    assert sleeps == [] and len(easypost_server.requests) == 1


def test_the_servers_own_validation_answers_422_for_a_blank_code(easypost_server: EasyPostServer) -> None:  # noqa: F811
    with client_for(easypost_server) as client, pytest.raises(EasyPostClientError, match="PARAMETER.REQUIRED"):
        client.create_tracker("   ")


def test_a_wrong_key_is_unauthorized_at_once_and_never_shown(easypost_server: EasyPostServer,  # noqa: F811
                                                              caplog: pytest.LogCaptureFixture) -> None:
    wrong = "EZTKwrongwrongwrong"
    sleeps: list[float] = []
    caplog.set_level(logging.DEBUG)
    client = client_for(easypost_server, sleeps, api_key=wrong)
    with client, pytest.raises(EasyPostUnauthorized) as caught:
        list(client.list_trackers())

    assert caught.value.status == 401 and caught.value.code == "APIKEY.REQUIRED"
    assert sleeps == [] and len(easypost_server.requests) == 1
    shown = " ".join([str(caught.value), repr(caught.value), repr(client), repr(client.config), caplog.text])
    assert wrong not in shown
    assert base64.b64encode(f"{wrong}:".encode()).decode() not in shown


# ------------------------------------------------------------------------------------ status codes


def test_an_unknown_status_code_parses_as_unmapped_with_the_raw_code_kept(
        easypost_server: EasyPostServer) -> None:  # noqa: F811
    easypost_server.add_tracker("EZ7000000007", status="teleported", status_detail="beamed_up",
                                message="Beamed to destination")
    with client_for(easypost_server) as client:
        pairs = list(client.trackers_for([shipment(7, "EZ7000000007")], OBSERVED_AT))

    parsed = parse_easypost(pairs, OBSERVED_AT)
    assert parsed.rejections == [] and parsed.trackers_ok == 1
    newest = max(parsed.scans, key=lambda s: s["occurred_at"])
    assert newest["status"] == "unmapped"
    assert (newest["carrier_status"], newest["carrier_status_detail"]) == ("teleported", "beamed_up")
    assert newest["reason"] == "easypost:teleported/beamed_up"


# ------------------------------------------------------------------------------------ trackers_for


def test_trackers_for_lists_known_codes_and_registers_unknown_ones(easypost_server: EasyPostServer) -> None:  # noqa: F811
    known = easypost_server.add_tracker("EZ1111111111", status="out_for_delivery", status_detail="out_for_delivery")
    shipments = [shipment(1, "EZ1111111111"), shipment(2, "EZ2222222222", carrier="UPS"),
                 shipment(3, "EZ3333333333", carrier=None)]
    with client_for(easypost_server) as client:
        source: TrackingSource = client  # the client stands in for the simulator
        pairs = dict(source.trackers(shipments, OBSERVED_AT))
        requests_first_run = len(easypost_server.requests)
        again = dict(client.trackers_for(shipments, OBSERVED_AT))

    assert set(pairs) == {"SHP-1", "SHP-2", "SHP-3"}
    assert pairs["SHP-1"]["id"] == known["id"]
    assert (pairs["SHP-2"]["tracking_code"], pairs["SHP-2"]["carrier"]) == ("EZ2222222222", "UPS")
    creates = [r.body for r in easypost_server.requests if r.method == "POST"]
    assert creates == [{"tracker": {"tracking_code": "EZ2222222222", "carrier": "UPS"}},
                       {"tracker": {"tracking_code": "EZ3333333333"}}]
    assert requests_first_run == 3  # one list + two creates
    # Next run: everything is known, so one list request and nothing registered twice.
    assert {k: v["id"] for k, v in again.items()} == {k: v["id"] for k, v in pairs.items()}
    assert len(easypost_server.requests) == requests_first_run + 1
    parsed = parse_easypost(pairs.items(), OBSERVED_AT)
    assert parsed.rejections == [] and parsed.trackers_ok == 3


def test_trackers_for_asks_in_chunks_and_matches_the_carrier(easypost_server: EasyPostServer,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(easypost_client, "CODES_PER_REQUEST", 2)
    for n in range(1, 6):
        easypost_server.add_tracker(f"EZ50000000{n:02d}", carrier="USPS")
    recycled = easypost_server.add_tracker("EZ5000000001", carrier="FedEx")  # same code, other carrier
    shipments = [shipment(n, f"EZ50000000{n:02d}") for n in range(1, 6)]
    with client_for(easypost_server) as client:
        pairs = dict(client.trackers_for(shipments, OBSERVED_AT))

    lists = [r for r in easypost_server.requests if r.method == "GET"]
    assert [len(r.query["tracking_codes[]"]) for r in lists] == [2, 2, 1]
    assert not [r for r in easypost_server.requests if r.method == "POST"]
    assert set(pairs) == {f"SHP-{n}" for n in range(1, 6)}
    assert pairs["SHP-1"]["carrier"] == "USPS" and pairs["SHP-1"]["id"] != recycled["id"]


def test_trackers_for_skips_a_code_easypost_refuses_and_carries_on(easypost_server: EasyPostServer,  # noqa: F811
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    easypost_server.add_tracker("EZ1111111111")
    # Request order: the list, then one create per unknown code (sorted by code).
    easypost_server.script(200, (422, "TRACKER.CREATE.ERROR", "Invalid tracking code for carrier"))
    caplog.set_level(logging.INFO, logger="lastmile.carriers.easypost_client")
    shipments = [shipment(1, "EZ1111111111"), shipment(2, "BAD0000000"), shipment(3, "EZ3333333333")]
    with client_for(easypost_server) as client:
        pairs = dict(client.trackers_for(shipments, OBSERVED_AT))

    assert set(pairs) == {"SHP-1", "SHP-3"}
    assert "could not register tracking code BAD0000000: HTTP 422 TRACKER.CREATE.ERROR" in caplog.text
    assert easypost_server.api_key not in caplog.text


def test_trackers_for_stops_on_a_wrong_key(easypost_server: EasyPostServer) -> None:  # noqa: F811
    with client_for(easypost_server, api_key="EZTKwrong") as client, pytest.raises(EasyPostUnauthorized):
        list(client.trackers_for([shipment(1, "EZ1")], OBSERVED_AT))


# ------------------------------------------------------------------------------------- the server


def test_server_pages_upwards_with_after_id_and_answers_the_batch_endpoint(
        easypost_server: EasyPostServer) -> None:  # noqa: F811
    added = easypost_server.add_trackers(5)
    with client_for(easypost_server) as client:
        up = client._request("GET", "/trackers", params={"after_id": added[0]["id"], "page_size": 2})
        batch = client._request("POST", "/trackers/batch",
                                body={"tracking_codes": [added[1]["tracking_code"], added[3]["tracking_code"]]})
    assert [t["id"] for t in up["trackers"]] == [added[2]["id"], added[1]["id"]] and up["has_more"] is True
    assert [t["id"] for t in batch["trackers"]] == [added[3]["id"], added[1]["id"]]
    assert batch["has_more"] is False


def test_config_and_errors_never_show_the_key() -> None:
    config = EasyPostConfig(api_key="EZAKsecret123")
    assert "EZAKsecret123" not in repr(config) and "EZAKsecret123" not in str(config)
    assert "EZAKsecret123" not in repr(EasyPostClient(config))
    err = EasyPostError("GET /trackers: HTTP 500", status=500)
    assert err.message == "GET /trackers: HTTP 500" and err.code is None
