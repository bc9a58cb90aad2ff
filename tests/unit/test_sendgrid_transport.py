"""The SendGrid path over real HTTP against the local, spec-validating SendGrid server."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime

import pytest

from lastmile.core.brand import load_brand
from lastmile.email.outgoing import Ambiguous, Outgoing, Rejected, TryLater, Unauthorized
from lastmile.email.sendgrid_client import SendGridConfig, SendGridSender, fetch_suppressions
from lastmile.email.transport import SendGridTransport

BRAND = load_brand()


def message(n: int = 1, kind: str = "notice", name: str = "Zoë O'Brien", send_at=None) -> Outgoing:
    return Outgoing(message_key=f"CASE-O{n}-1/{kind}/late", case_id=f"CASE-O{n}-1", kind=kind,
                    recipient=f"customer{n}@example.com", recipient_name=name, subject="Your order is running late",
                    body_text="We're sorry.", body_html="<p>We&#39;re sorry.</p>",
                    planned_at=datetime(2026, 11, 20, 14, tzinfo=UTC), send_at=send_at)


def transport(server, sleeps=None, **config) -> SendGridTransport:
    cfg = SendGridConfig(api_key=server.api_key, host=server.url, timeout=config.pop("timeout", 2.0),
                         max_wait=config.pop("max_wait", 5.0), **config)
    return SendGridTransport(SendGridSender(cfg, sleep=(sleeps.append if sleeps is not None else lambda s: None)),
                             BRAND)


def test_a_message_is_accepted_with_our_keys_category_and_reply_to(sendgrid_server):
    ref = transport(sendgrid_server).send(message())
    (accepted,) = sendgrid_server.accepted
    assert ref == f"sendgrid:{accepted.message_id}"
    body = accepted.body
    assert body["personalizations"][0]["custom_args"] == {"message_key": "CASE-O1-1/notice/late",
                                                           "case_id": "CASE-O1-1"}
    assert body["personalizations"][0]["to"] == [{"email": "customer1@example.com", "name": "Zoë O'Brien"}]
    assert body["categories"] == ["notice"] and body["reply_to"]["email"] == BRAND.reply_to
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "asm" not in body and "send_at" not in body and "mail_settings" not in body


def test_follow_ups_carry_the_unsubscribe_group_and_quiet_hours_become_send_at(sendgrid_server):
    wake = datetime(2026, 11, 21, 16, tzinfo=UTC)
    transport(sendgrid_server, asm_group_id=4242, sandbox_mode=True).send(message(kind="update", send_at=wake))
    body = sendgrid_server.accepted[0].body
    assert body["asm"] == {"group_id": 4242}
    assert body["send_at"] == int(wake.timestamp())
    assert body["mail_settings"]["sandbox_mode"] == {"enable": True}


def test_a_crlf_in_a_name_cannot_add_a_header_or_recipient(sendgrid_server):
    transport(sendgrid_server).send(message(name="Eve\r\nBcc: attacker@evil.example"))
    to = sendgrid_server.accepted[0].body["personalizations"][0]["to"]
    assert to == [{"email": "customer1@example.com", "name": "Eve Bcc: attacker@evil.example"}]


def test_429_waits_as_long_as_retry_after_says_then_sends_once(sendgrid_server):
    sendgrid_server.script(("429", 3), ("429", 1))
    sleeps: list[float] = []
    transport(sendgrid_server, sleeps).send(message())
    assert sleeps == [3.0, 1.0] and len(sendgrid_server.accepted) == 1


def test_a_429_with_only_x_ratelimit_reset_waits_until_then(sendgrid_server):
    # SendGrid's documented 429 carries X-RateLimit-Reset (the Unix time the limit resets), no Retry-After.
    sendgrid_server.script((429, "rate-limit-reset", "3"))
    sleeps: list[float] = []
    transport(sendgrid_server, sleeps).send(message())
    assert len(sleeps) == 1 and 2.0 <= sleeps[0] <= 3.0 and len(sendgrid_server.accepted) == 1


def test_5xx_is_retried_with_capped_backoff_then_gives_up_without_sending(sendgrid_server):
    sendgrid_server.script(500, 503)
    sleeps: list[float] = []
    transport(sendgrid_server, sleeps).send(message())
    assert len(sleeps) == 2 and all(0 <= s <= 5 for s in sleeps) and len(sendgrid_server.accepted) == 1
    sendgrid_server.script(*[500] * 5)
    with pytest.raises(TryLater, match="gave up after 5 attempts"):
        transport(sendgrid_server).send(message(2))
    assert len(sendgrid_server.accepted) == 1


def test_400_is_a_permanent_rejection_naming_the_field(sendgrid_server):
    sendgrid_server.script((400, "personalizations.0.to.0.email", "Does not contain a valid address."))
    with pytest.raises(Rejected) as err:
        transport(sendgrid_server).send(message())
    assert err.value.status == 400 and "personalizations.0.to.0.email" in err.value.detail


def test_a_wrong_key_is_unauthorized_and_never_logged(sendgrid_server, caplog):
    cfg = SendGridConfig(api_key="SG.wrong.key", host=sendgrid_server.url, timeout=2)
    with pytest.raises(Unauthorized):
        SendGridTransport(SendGridSender(cfg), BRAND).send(message())
    assert "SG.wrong.key" not in caplog.text and "SG.wrong.key" not in repr(cfg)


def test_no_answer_after_sending_is_ambiguous_not_retried(sendgrid_server):
    sendgrid_server.script(("hang", 3))
    with pytest.raises(Ambiguous, match="no answer"):
        transport(sendgrid_server, timeout=0.5).send(message())
    sendgrid_server.script(("accept_then_drop",))
    with pytest.raises(Ambiguous, match="dropped"):
        transport(sendgrid_server).send(message(2))
    # Both may have been accepted; neither was sent a second time.
    posts = [json.loads(r.raw_body) for r in sendgrid_server.requests if r.path == "/v3/mail/send"]
    assert [p["personalizations"][0]["custom_args"]["case_id"] for p in posts] == ["CASE-O1-1", "CASE-O2-1"]


def test_nothing_listening_is_try_later():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = SendGridConfig(api_key="SG.k", host=f"http://127.0.0.1:{port}", timeout=1, max_attempts=2)
    with pytest.raises(TryLater, match="cannot connect"):
        SendGridTransport(SendGridSender(cfg, sleep=lambda s: None), BRAND).send(message())


def test_a_batch_reuses_one_connection(sendgrid_server):
    t = transport(sendgrid_server)
    for n in range(20):
        t.send(message(n))
    pools = t.sender.api.client.session.get_adapter(sendgrid_server.url).poolmanager.pools
    assert sum(pool.num_connections for pool in pools._container.values()) == 1
    assert len(sendgrid_server.accepted) == 20


def test_suppression_lists_are_read_in_full_across_pages(sendgrid_server):
    for n in range(7):
        sendgrid_server.suppress("bounces", f"b{n}@example.com", reason="550 mailbox unavailable")
    sendgrid_server.suppress("spam_reports", "Spam@Example.com")
    sendgrid_server.suppress_in_group(4242, "follow@example.com")
    sender = transport(sendgrid_server, asm_group_id=4242).sender
    sender_rows = fetch_suppressions(sender)
    kinds = {(r["email"], r["kind"]) for r in sender_rows}
    assert ("spam@example.com", "spam_reports") in kinds and ("follow@example.com", "asm_group") in kinds
    assert sum(1 for r in sender_rows if r["kind"] == "bounces") == 7
    small = list(sender.get_all("suppression/bounces", page_size=3))
    assert len(small) == 7
