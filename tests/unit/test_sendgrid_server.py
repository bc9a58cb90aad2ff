"""The local SendGrid server is faithful to SendGrid's v3 spec and to the official client, and can fail.

Everything goes over real HTTP on 127.0.0.1 through the official ``sendgrid`` library (6.12.5), so the
exceptions asserted here are the ones lastmile's transport code will see in production.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from python_http_client.exceptions import (
    BadRequestsError,
    HTTPError,
    InternalServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Category,
    Content,
    CustomArg,
    From,
    GroupId,
    Mail,
    MailSettings,
    Personalization,
    ReplyTo,
    SandBoxMode,
    SendAt,
    Subject,
    To,
)
from servers.fixtures import sendgrid_server  # noqa: F401 - pytest fixture
from servers.sendgrid import SUPPRESSION_KINDS, SendGridServer

SEND_AT = 1_900_000_000


def _client(server: SendGridServer, api_key: str | None = None) -> SendGridAPIClient:
    return SendGridAPIClient(api_key=api_key or server.api_key, host=server.url)


def _realistic_mail() -> Mail:
    mail = Mail(from_email=From("updates@shop.example", "Shop deliveries"))
    mail.reply_to = ReplyTo("care@shop.example", "Shop care team")
    personalization = Personalization()
    personalization.add_to(To("ana.lima@example.com", "Ana Lima"))
    personalization.add_custom_arg(CustomArg("message_key", "case-0042:delay:1"))
    personalization.add_custom_arg(CustomArg("case_id", "case-0042"))
    mail.add_personalization(personalization)
    mail.subject = Subject("Your parcel is running late")
    mail.add_content(Content("text/plain", "Hi Ana, your parcel 1Z999 is running late."))
    mail.add_content(Content("text/html", "<p>Hi Ana, your parcel <b>1Z999</b> is running late.</p>"))
    mail.add_category(Category("delivery-exception"))
    mail.add_category(Category("delay"))
    mail.add_custom_arg(CustomArg("pipeline_run", "2026-11-23T06:00"))
    mail.asm = Asm(GroupId(4242))
    settings = MailSettings()
    settings.sandbox_mode = SandBoxMode(True)
    mail.mail_settings = settings
    mail.send_at = SendAt(SEND_AT)
    return mail


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": {"email": "updates@shop.example"},
        "personalizations": [{"to": [{"email": "ana.lima@example.com"}]}],
        "subject": "Your parcel is running late",
        "content": [{"type": "text/plain", "value": "late"}],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def _errors(exc: HTTPError) -> list[dict[str, Any]]:
    payload = json.loads(exc.body)
    for entry in payload["errors"]:
        assert set(entry) == {"message", "field", "help"}
    return payload["errors"]


def _raw(server: SendGridServer, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


# ---------------------------------------------------------------------------------------- mail/send


def test_the_fixture_serves_on_localhost_only(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    assert sendgrid_server.url.startswith("http://127.0.0.1:")
    assert sendgrid_server.port > 0


def test_official_client_sends_a_realistic_message_and_gets_202(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    mail = _realistic_mail()
    response = _client(sendgrid_server).send(mail)

    assert response.status_code == 202
    assert response.body == b""
    [accepted] = sendgrid_server.accepted
    assert response.headers["X-Message-Id"] == accepted.message_id
    assert accepted.body == json.loads(json.dumps(mail.get()))
    body = accepted.body
    assert body["personalizations"][0]["custom_args"] == {"message_key": "case-0042:delay:1",
                                                          "case_id": "case-0042"}
    assert body["custom_args"] == {"pipeline_run": "2026-11-23T06:00"}  # an object: the spec quirk
    assert body["reply_to"]["email"] == "care@shop.example"
    assert body["asm"] == {"group_id": 4242}
    assert body["mail_settings"]["sandbox_mode"] == {"enable": True}
    assert body["send_at"] == SEND_AT
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert sorted(body["categories"]) == ["delay", "delivery-exception"]
    assert accepted.headers["authorization"] == f"Bearer {sendgrid_server.api_key}"
    assert accepted.headers["content-type"] == "application/json"
    assert accepted.headers["user-agent"].startswith("sendgrid/6.")
    assert [(r.path, r.status, r.outcome) for r in sendgrid_server.requests] == [
        ("/v3/mail/send", 202, "accepted")]


def test_message_ids_are_unique(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    client = _client(sendgrid_server)
    ids = {client.send(_body()).headers["X-Message-Id"] for _ in range(5)}
    assert len(ids) == 5
    assert ids == {m.message_id for m in sendgrid_server.accepted}


@pytest.mark.parametrize("example", ["MailSendNoTemplate", "MailSendDynamicTemplate"])
def test_the_specs_own_examples_are_accepted(sendgrid_server: SendGridServer, fixtures_dir: Path,  # noqa: F811
                                             example: str) -> None:
    spec = json.loads((fixtures_dir / "sendgrid" / "tsg_mail_v3.json").read_text())
    body = spec["components"]["requestBodies"]["PostMailSend"]["content"]["application/json"]["examples"]
    assert _client(sendgrid_server).send(body[example]["value"]).status_code == 202


@pytest.mark.parametrize(("body", "field"), [
    (_body(**{"from": ...}), "from"),
    (_body(personalizations=[]), "personalizations"),
    (_body(content=[{"value": "late"}]), "content.0.type"),
    (_body(subject=42), "subject"),
    (_body(personalizations=[{"to": [{"name": "no address"}]}]), "personalizations.0.to.0.email"),
    (_body(custom_args="not-an-object"), "custom_args"),
])
def test_invalid_bodies_get_400_naming_the_field(sendgrid_server: SendGridServer,  # noqa: F811
                                                 body: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequestsError) as caught:
        _client(sendgrid_server).send(body)

    assert caught.value.status_code == 400
    errors = _errors(caught.value)
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["message"] and errors[0]["help"] is None
    assert sendgrid_server.accepted.snapshot() == []
    assert sendgrid_server.requests[0].outcome == "rejected"


def test_every_violation_is_listed(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    with pytest.raises(BadRequestsError) as caught:
        _client(sendgrid_server).send(_body(**{"from": ...}, subject=42, content=[{"type": "text/plain"}]))
    assert sorted(e["field"] for e in _errors(caught.value)) == ["content.0.value", "from", "subject"]


def test_unauthenticated_mail_send_gets_sendgrids_401(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    with pytest.raises(UnauthorizedError) as caught:
        _client(sendgrid_server, api_key="SG.wrong.key").send(_body())
    assert caught.value.status_code == 401
    assert _errors(caught.value)[0]["field"] is None

    status, _, payload = _raw(sendgrid_server, "POST", "/v3/mail/send", json.dumps(_body()).encode(),
                              {"Content-Type": "application/json"})
    assert status == 401
    assert payload == {"errors": [{"message": "authorization required", "field": None, "help": None}]}
    assert sendgrid_server.accepted.snapshot() == []


def test_429_carries_retry_after_and_the_next_call_succeeds(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    sendgrid_server.script(("429", 7))
    client = _client(sendgrid_server)

    with pytest.raises(TooManyRequestsError) as caught:
        client.send(_realistic_mail())
    assert caught.value.status_code == 429
    assert caught.value.headers["Retry-After"] == "7"
    assert _errors(caught.value)[0]["message"] == "too many requests"
    assert sendgrid_server.accepted.snapshot() == []

    assert client.send(_realistic_mail()).status_code == 202
    assert len(sendgrid_server.accepted) == 1


@pytest.mark.parametrize(("status", "exception"), [
    (400, BadRequestsError),
    (401, UnauthorizedError),
    (500, InternalServerError),
    (503, ServiceUnavailableError),
])
def test_scripted_statuses_raise_the_official_clients_exceptions(sendgrid_server: SendGridServer,  # noqa: F811
                                                                 status: int, exception: type) -> None:
    sendgrid_server.script(status)
    with pytest.raises(exception) as caught:
        _client(sendgrid_server).send(_realistic_mail())
    assert caught.value.status_code == status
    assert _errors(caught.value)
    assert sendgrid_server.accepted.snapshot() == []


def test_scripted_400_can_name_a_field(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    sendgrid_server.script((400, "personalizations.0.to", "Does not contain a valid address."))
    with pytest.raises(BadRequestsError) as caught:
        _client(sendgrid_server).send(_body())
    assert _errors(caught.value) == [{"message": "Does not contain a valid address.",
                                      "field": "personalizations.0.to", "help": None}]


def test_fail_next_and_storm_drain_in_order(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    client = _client(sendgrid_server)
    sendgrid_server.fail_next(2, 503)
    sendgrid_server.storm([("429", 1), 500, 202], 3)
    assert sendgrid_server.pending == 5

    seen = []
    for _ in range(6):
        try:
            seen.append(client.send(_body()).status_code)
        except HTTPError as exc:
            seen.append(exc.status_code)
    assert seen == [503, 503, 429, 500, 202, 202]
    assert sendgrid_server.pending == 0
    assert len(sendgrid_server.accepted) == 2


def test_a_hang_makes_the_official_client_time_out(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    sendgrid_server.script(("hang", 5), ("hang", 5))
    client = _client(sendgrid_server)

    started = time.monotonic()
    with pytest.raises(TimeoutError):  # per call: python_http_client passes timeout= to urlopen
        client.client.mail.send.post(request_body=_body(), timeout=0.5)
    assert time.monotonic() - started < 2

    client.client.timeout = 0.5  # client-wide: every client.send(...) inherits it
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.send(_body())
    assert time.monotonic() - started < 2
    assert sendgrid_server.accepted.snapshot() == []  # still hanging; abandoned when the server stops


def test_a_slow_accept_lands_after_the_client_gave_up(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    sendgrid_server.script(("hang", 0.8))
    with pytest.raises(TimeoutError):
        _client(sendgrid_server).client.mail.send.post(request_body=_body(), timeout=0.2)
    [late] = sendgrid_server.accepted.wait_for(1, timeout=3)  # SendGrid took it; we never heard
    assert late.body == _body() and not late.dropped


def test_accept_then_drop_records_the_message_but_the_client_sees_a_connection_error(
        sendgrid_server: SendGridServer) -> None:  # noqa: F811
    sendgrid_server.script(("accept_then_drop",))
    mail = _realistic_mail()

    with pytest.raises(ConnectionError) as caught:
        _client(sendgrid_server).send(mail)
    assert isinstance(caught.value, RemoteDisconnected)
    [accepted] = sendgrid_server.accepted
    assert accepted.dropped
    assert accepted.body["personalizations"][0]["custom_args"]["message_key"] == "case-0042:delay:1"
    assert [(r.status, r.outcome) for r in sendgrid_server.requests] == [(None, "dropped")]


def test_reset_forgets_everything(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    client = _client(sendgrid_server)
    client.send(_body())
    sendgrid_server.suppress("bounces", "gone@example.com")
    sendgrid_server.fail_next(3)
    sendgrid_server.reset()

    assert (len(sendgrid_server.accepted), len(sendgrid_server.requests), sendgrid_server.pending) == (0, 0, 0)
    assert client.client.suppression.bounces.get().to_dict == []


# ------------------------------------------------------------------------------------- suppressions


def _response_validator(fixtures_dir: Path, path: str) -> Draft202012Validator:
    spec = json.loads((fixtures_dir / "sendgrid" / "tsg_suppressions_v3.json").read_text())
    uri = "urn:sendgrid:tsg_suppressions_v3"
    registry = Registry().with_resource(uri, Resource.from_contents(spec, default_specification=DRAFT202012))
    escaped = path.replace("~", "~0").replace("/", "~1")
    pointer = quote(f"/paths/{escaped}/get/responses/200/content/application~1json/schema", safe="/~")
    return Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def _deref(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local "#/components/..." refs inside the spec document."""
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


@pytest.mark.parametrize("kind", SUPPRESSION_KINDS)
def test_suppression_items_have_the_specs_shape(sendgrid_server: SendGridServer, fixtures_dir: Path,  # noqa: F811
                                                kind: str) -> None:
    sendgrid_server.suppress(kind, "first@example.com", created=1_700_000_000)
    sendgrid_server.suppress(kind, "second@example.com", created=1_700_000_100)

    items = _client(sendgrid_server).client.suppression._(kind).get().to_dict

    assert [i["email"] for i in items] == ["first@example.com", "second@example.com"]
    validator = _response_validator(fixtures_dir, f"/v3/suppression/{kind}")
    assert [e.message for e in validator.iter_errors(items)] == []
    # and exact: each item carries every property the spec's item schema declares, and nothing else
    spec = json.loads((fixtures_dir / "sendgrid" / "tsg_suppressions_v3.json").read_text())
    schema = _deref(spec, spec["paths"][f"/v3/suppression/{kind}"]["get"]["responses"]["200"]["content"]
                    ["application/json"]["schema"])
    item_schema = _deref(spec, schema["items"])
    assert set(items[0]) == set(item_schema["properties"])


def test_bounces_page_by_limit_and_offset_and_filter_by_time(sendgrid_server: SendGridServer) -> None:  # noqa: F811
    for n in range(7):
        sendgrid_server.suppress("bounces", f"user{n}@example.com", created=1_700_000_000 + n * 60,
                                 reason=f"550 5.1.1 user{n} unknown")
    bounces = _client(sendgrid_server).client.suppression.bounces

    pages = [bounces.get(query_params={"limit": 3, "offset": offset}).to_dict for offset in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [i["email"] for p in pages for i in p] == [f"user{n}@example.com" for n in range(7)]
    assert pages[0][0] == {"created": 1_700_000_000, "email": "user0@example.com",
                           "reason": "550 5.1.1 user0 unknown", "status": "5.1.1"}

    window = bounces.get(query_params={"start_time": 1_700_000_060, "end_time": 1_700_000_180}).to_dict
    assert [i["email"] for i in window] == ["user1@example.com", "user2@example.com", "user3@example.com"]
    windowed_page = bounces.get(query_params={"start_time": 1_700_000_060, "limit": 2, "offset": 2}).to_dict
    assert [i["email"] for i in windowed_page] == ["user3@example.com", "user4@example.com"]
    assert [i["email"] for i in bounces.get(query_params={"email": "user6"}).to_dict] == ["user6@example.com"]


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"start_time": "yesterday"}])
def test_out_of_range_paging_is_a_400(sendgrid_server: SendGridServer, query: dict[str, Any]) -> None:  # noqa: F811
    with pytest.raises(BadRequestsError) as caught:
        _client(sendgrid_server).client.suppression.blocks.get(query_params=query)
    assert _errors(caught.value)[0]["field"] == next(iter(query))


def test_asm_group_suppressions_are_a_list_of_addresses(sendgrid_server: SendGridServer,  # noqa: F811
                                                        fixtures_dir: Path) -> None:
    sendgrid_server.suppress_in_group(4242, "ana.lima@example.com", "bo@example.com")
    sendgrid_server.suppress("asm_group", "other@example.com", group_id=7)
    groups = _client(sendgrid_server).client.asm.groups

    emails = groups._(4242).suppressions.get().to_dict
    assert emails == ["ana.lima@example.com", "bo@example.com"]
    validator = _response_validator(fixtures_dir, "/v3/asm/groups/{group_id}/suppressions")
    assert [e.message for e in validator.iter_errors(emails)] == []
    assert groups._(1).suppressions.get().to_dict == []


@pytest.mark.parametrize("path", [f"/v3/suppression/{k}" for k in SUPPRESSION_KINDS]
                         + ["/v3/asm/groups/4242/suppressions"])
def test_suppression_endpoints_need_the_key(sendgrid_server: SendGridServer, path: str) -> None:  # noqa: F811
    status, _, payload = _raw(sendgrid_server, "GET", path)
    assert status == 401
    assert payload["errors"][0]["field"] is None

    status, _, _ = _raw(sendgrid_server, "GET", path, headers={"Authorization": "Bearer SG.wrong"})
    assert status == 401
    status, _, _ = _raw(sendgrid_server, "GET", path,
                        headers={"Authorization": f"Bearer {sendgrid_server.api_key}"})
    assert status == 200


def test_suppress_rejects_fields_the_list_does_not_have() -> None:
    server = SendGridServer()
    with pytest.raises(ValueError):
        server.suppress("unsubscribes", "x@example.com", reason="no such field")
    with pytest.raises(ValueError):
        server.suppress("complaints", "x@example.com")
