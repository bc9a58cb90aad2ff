"""SendGrid's Event Webhook: signed bodies only, each event stored once, no address kept."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime, timedelta

import airflow  # noqa: F401  (puts the plugins folder on sys.path, as in every Airflow component)
import pandas as pd
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from lastmile.email.provider_events import (
    MAX_BODY_BYTES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    is_signed_by_sendgrid,
    sendgrid_event_rows,
)
from lastmile.store import schema
from lastmile.store.db import prepare, upsert

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def event(name: str, sg_id: str, key: str | None = "CASE-1/notice/late", **extra) -> dict:
    # The shape of SendGrid's Event Webhook reference; our custom args arrive as top-level keys.
    body = {"email": "zoe.obrien@example.com", "timestamp": 1795435200, "smtp-id": "<14c5d75ce93@ismtpd-555>",
            "event": name, "category": ["notice"], "sg_event_id": sg_id,
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", **extra}
    if key:
        body.update({"message_key": key, "case_id": "CASE-1"})
    return body


def signed(body: bytes, stamp: str = "1795435200") -> dict[str, str]:
    signature = KEY.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}


def test_events_become_rows_without_the_address_and_bad_ones_are_quarantined():
    batch = sendgrid_event_rows([
        event("delivered", "ev1", response="250 OK"),
        event("bounce", "ev2", reason="550 5.1.1 <zoe.obrien@example.com>: mailbox unavailable", type="bounce"),
        event("processed", "ev3", key=None),  # mail some other system sent through the account
        event("teleported", "ev4"),
        event("open", "ev5", timestamp="yesterday"),
    ])
    assert [(r["provider_event_id"], r["event"]) for r in batch.rows] == [("ev1", "delivered"), ("ev2", "bounce")]
    assert batch.rows[0]["at"] == datetime.fromtimestamp(1795435200, UTC)
    assert "zoe.obrien@example.com" not in str(batch.rows) and "z***@e***.com" in batch.rows[1]["reason"]
    assert batch.foreign == 1
    assert {(r.record_id, r.field) for r in batch.rejections} == {("ev4", "event"), ("ev5", "timestamp")}
    assert "zoe" not in str([r.payload for r in batch.rejections])


def test_only_sendgrids_signature_over_timestamp_and_body_is_accepted():
    body = json.dumps([event("delivered", "ev1")]).encode()
    headers = signed(body)
    assert is_signed_by_sendgrid(PUBLIC, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], body)
    assert not is_signed_by_sendgrid(PUBLIC, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], body + b" ")
    assert not is_signed_by_sendgrid(PUBLIC, headers[SIGNATURE_HEADER], "1795435201", body)
    assert not is_signed_by_sendgrid(PUBLIC, "bm90IGEgc2lnbmF0dXJl", headers[TIMESTAMP_HEADER], body)
    assert not is_signed_by_sendgrid(PUBLIC, "not base64 at all", headers[TIMESTAMP_HEADER], body)
    assert not is_signed_by_sendgrid("not a key", headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], body)
    latin1 = "Zoë".encode("latin-1")  # not UTF-8, so not JSON as SendGrid sends it: refused, no exception
    assert not is_signed_by_sendgrid(PUBLIC, signed(latin1)[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], latin1)


@pytest.fixture()
def history(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'lastmile.db'}"
    monkeypatch.setenv("LASTMILE_DB_URL", url)
    with prepare(url).begin() as conn:
        upsert(conn, schema.outbox, [{
            "message_key": k, "case_id": "CASE-1", "order_id": "O1", "kind": "notice", "state": "sent",
            "customer_id": "C1", "subject": "s", "body_text": "t", "body_html": "h", "planned_at": NOW,
            "planned_batch": "b", "sent_at": NOW, "attempts": 1} for k in ("CASE-1/notice/late", "CASE-2/notice/late")])
    return url


def test_the_webhook_endpoint_records_signed_events_once_and_analysts_see_them(history, monkeypatch):
    from lastmile_airflow.ops_view import receive_sendgrid_events

    body = json.dumps([event("delivered", "ev1"), event("open", "ev2"),
                       event("bounce", "ev3", key="CASE-2/notice/late", reason="550 mailbox unavailable")]).encode()
    assert receive_sendgrid_events(body, signed(body), NOW).status_code == 503  # no key configured yet
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID_DEFAULT", json.dumps(
        {"conn_type": "http", "password": "SG.x", "extra": {"event_webhook_public_key": PUBLIC}}))
    assert receive_sendgrid_events(body, {}, NOW).status_code == 403  # unsigned
    assert receive_sendgrid_events(body, signed(body + b"x"), NOW).status_code == 403  # signed for another body
    assert receive_sendgrid_events(b"not json", signed(b"not json"), NOW).status_code == 400
    first = receive_sendgrid_events(body, signed(body), NOW)
    again = receive_sendgrid_events(body, signed(body), NOW)  # SendGrid retries deliveries
    assert first.status_code == 200 and json.loads(first.body)["stored"] == 3
    assert (json.loads(again.body)["stored"], json.loads(again.body)["duplicates"]) == (0, 3)
    with prepare(history).connect() as conn:
        delivery = pd.read_sql(text("SELECT kind, sent, delivered, bounced, opened FROM v_message_delivery"), conn)
        status = dict(conn.execute(text("SELECT message_key, delivery_status FROM v_messages")).all())
    assert delivery.iloc[0][["sent", "delivered", "bounced", "opened"]].tolist() == [2, 1, 1, 1]
    assert status == {"CASE-1/notice/late": "opened", "CASE-2/notice/late": "bounced"}


def stamp_at(when: datetime) -> str:
    return str(int(when.timestamp()))


@pytest.fixture()
def webhook_key(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID_DEFAULT", json.dumps(
        {"conn_type": "http", "password": "SG.x", "extra": {"event_webhook_public_key": PUBLIC}}))


def test_a_body_signed_two_years_ago_is_refused_as_a_replay(history, webhook_key):
    from lastmile_airflow.ops_view import receive_sendgrid_events

    body = json.dumps([event("delivered", "ev1")]).encode()
    two_years_ago = stamp_at(NOW - timedelta(days=730))
    assert receive_sendgrid_events(body, signed(body, two_years_ago), NOW).status_code == 403
    assert receive_sendgrid_events(body, signed(body, stamp_at(NOW - timedelta(minutes=11))), NOW).status_code == 403
    for junk in ("yesterday", "1795435200.0", "-1", "１７９５４３５２００", "9" * 40):  # not whole Unix seconds
        assert receive_sendgrid_events(body, signed(body, junk), NOW).status_code == 403, junk
    # SendGrid signs each attempt when it posts it: a few minutes of network and clock drift is fine.
    assert receive_sendgrid_events(body, signed(body, stamp_at(NOW - timedelta(minutes=9))), NOW).status_code == 200


def test_a_timestamp_from_the_future_is_refused(history, webhook_key):
    from lastmile_airflow.ops_view import receive_sendgrid_events

    body = json.dumps([event("delivered", "ev1")]).encode()
    for ahead in (timedelta(minutes=6), timedelta(days=365), timedelta(days=365 * 9000)):  # last: past year 9999
        stamp = str(int(NOW.timestamp() + ahead.total_seconds()))
        assert receive_sendgrid_events(body, signed(body, stamp), NOW).status_code == 403, ahead
    assert receive_sendgrid_events(body, signed(body, stamp_at(NOW + timedelta(minutes=4))), NOW).status_code == 200


CHUNK = 64 * 1024


def post(chunks: list[bytes], headers: dict[str, str]) -> tuple[int, dict, int]:
    """POST to the real app at the ASGI level, the body arriving in `chunks` as a server delivers it.
    Returns the status, the JSON answer and how many chunks the app pulled from the client."""
    from lastmile_airflow.ops_view import create_app

    app = create_app()
    pulled = 0
    answer: dict[str, object] = {"body": b""}

    async def receive() -> dict:
        nonlocal pulled
        if pulled >= len(chunks):
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/sendgrid/events", "raw_path": b"/sendgrid/events", "root_path": "", "query_string": b"",
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
             "client": ("192.0.2.7", 40000), "server": ("lastmile", 80)}
    asyncio.run(app(scope, receive, send))
    return answer["status"], json.loads(answer["body"]), pulled


def fresh(body: bytes) -> dict[str, str]:
    """Headers as SendGrid sends them right now, signed for `body`."""
    return {"content-type": "application/json", **signed(body, str(int(time.time())))}


def test_an_oversize_body_announced_by_content_length_is_refused_unread(webhook_key):
    size = MAX_BODY_BYTES + 1
    chunks = [b"x" * CHUNK] * (size // CHUNK) + [b"x" * (size % CHUNK)]
    status, answer, pulled = post(chunks, {**fresh(b"[]"), "content-length": str(size)})
    assert (status, pulled) == (413, 0), answer
    status, _, pulled = post([b"[]"], {**fresh(b"[]"), "content-length": "2" + "0" * 40})  # absurd, no int() blowup
    assert (status, pulled) == (413, 0)


def test_an_oversize_streamed_body_without_content_length_is_cut_off_at_the_cap(webhook_key):
    chunks = [b"x" * CHUNK] * (2 * MAX_BODY_BYTES // CHUNK)  # chunked transfer: no Content-Length to go by
    status, answer, pulled = post(chunks, fresh(b"[]"))
    assert status == 413, answer
    assert pulled <= MAX_BODY_BYTES // CHUNK + 1  # the cap plus the one chunk that crossed it, never the rest


def test_a_post_without_signature_headers_is_refused_before_its_body_is_read(webhook_key):
    body = json.dumps([event("delivered", "ev1")]).encode()
    headers = fresh(body)
    for missing in (SIGNATURE_HEADER, TIMESTAMP_HEADER):
        unsigned = {k: v for k, v in headers.items() if k != missing}
        status, _, pulled = post([body], unsigned)
        assert (status, pulled) == (403, 0), missing
    status, _, pulled = post([body], {**headers, TIMESTAMP_HEADER: str(int(time.time()) - 2 * 365 * 86400)})
    assert (status, pulled) == (403, 0)  # stale: refused on the headers alone too


def test_a_fresh_signed_body_with_non_ascii_text_is_accepted(history, webhook_key):
    body = json.dumps([event("bounce", "ev1", reason="550 Empfänger unbekannt — 宛先不明 ✉"),
                       event("delivered", "ev2", key="CASE-2/notice/late")], ensure_ascii=False).encode()
    assert body != body.decode("utf-8").encode("ascii", "replace")  # really non-ASCII on the wire
    cut = body.index("ä".encode()) + 1  # the server may split a character across chunks
    status, answer, pulled = post([body[:cut], body[cut:]], {**fresh(body), "content-length": str(len(body))})
    assert (status, answer["stored"], pulled) == (200, 2, 2), answer
    with prepare(history).connect() as conn:
        reason = conn.execute(text("SELECT reason FROM message_events WHERE provider_event_id = 'ev1'")).scalar()
    assert reason == "550 Empfänger unbekannt — 宛先不明 ✉"
