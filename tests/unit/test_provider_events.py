"""SendGrid's Event Webhook: signed bodies only, each event stored once, no address kept."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import airflow  # noqa: F401  (puts the plugins folder on sys.path, as in every Airflow component)
import pandas as pd
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from lastmile import schema
from lastmile.db import engine_for, upsert
from lastmile.provider_events import SIGNATURE_HEADER, TIMESTAMP_HEADER, sendgrid_event_rows, verify_signature

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
    assert verify_signature(PUBLIC, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], body)
    assert not verify_signature(PUBLIC, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], body + b" ")
    assert not verify_signature(PUBLIC, headers[SIGNATURE_HEADER], "1795435201", body)
    assert not verify_signature(PUBLIC, "bm90IGEgc2lnbmF0dXJl", headers[TIMESTAMP_HEADER], body)


@pytest.fixture()
def history(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'lastmile.db'}"
    monkeypatch.setenv("LASTMILE_DB_URL", url)
    with engine_for(url).begin() as conn:
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
    first = receive_sendgrid_events(body, signed(body), NOW)
    again = receive_sendgrid_events(body, signed(body), NOW)  # SendGrid retries deliveries
    assert first.status_code == 200 and json.loads(first.body)["stored"] == 3
    assert (json.loads(again.body)["stored"], json.loads(again.body)["duplicates"]) == (0, 3)
    with engine_for(history).connect() as conn:
        delivery = pd.read_sql(text("SELECT kind, sent, delivered, bounced, opened FROM v_message_delivery"), conn)
        status = dict(conn.execute(text("SELECT message_key, delivery_status FROM v_messages")).all())
    assert delivery.iloc[0][["sent", "delivered", "bounced", "opened"]].tolist() == [2, 1, 1, 1]
    assert status == {"CASE-1/notice/late": "opened", "CASE-2/notice/late": "bounced"}
