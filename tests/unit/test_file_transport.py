"""The file transport names every message's files safely, whatever its key holds."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime

import pytest

from lastmile.core.brand import load_brand
from lastmile.email.outgoing import Outgoing
from lastmile.email.transport import MAX_STEM, FileTransport, file_stem, write_index

BRAND = load_brand()


def message(key: str) -> Outgoing:
    return Outgoing(message_key=key, case_id=key.split("/")[0], kind="notice", recipient="zoe@example.com",
                    recipient_name="Zoë", subject="Your order is running late", body_text="We're sorry.",
                    body_html="<p>We&#39;re sorry.</p>", planned_at=datetime(2026, 11, 20, 14, tzinfo=UTC))


def row(msg: Outgoing) -> dict:
    return {"message_key": msg.message_key, "case_id": msg.case_id, "kind": msg.kind, "state": "sent",
            "recipient": msg.recipient, "subject": msg.subject, "planned_at": msg.planned_at}


def test_short_safe_keys_keep_their_readable_name():
    assert file_stem("CASE-O1-1/notice/late") == "CASE-O1-1__notice__late"
    assert file_stem("CASE-O1-1/update/out_for_delivery@S-9") == "CASE-O1-1__update__out_for_delivery@S-9"
    assert file_stem("preview/escalated-window-passed") == "preview__escalated-window-passed"


def test_a_300_character_key_is_written_readable_and_linked_from_the_index(tmp_path):
    key = f"CASE-{'L' * 300}/notice/late"
    folder = tmp_path / "outbox"
    ref = FileTransport(folder, BRAND).send(message(key))
    stem = file_stem(key)
    assert len(stem) <= MAX_STEM and stem.startswith("CASE-LLL") and ref == f"file:{stem}.eml"
    parsed = email.message_from_bytes((folder / f"{stem}.eml").read_bytes(), policy=email.policy.default)
    assert parsed["X-Lastmile-Message-Key"] == key
    assert (folder / f"{stem}.html").read_text(encoding="utf-8") == "<p>We&#39;re sorry.</p>"
    page = write_index(folder, [row(message(key))]).read_text(encoding="utf-8")
    assert f'href="{stem}.html"' in page and f'href="{stem}.eml"' in page
    assert file_stem(key) == stem  # stable: the same key always names the same files


def test_long_keys_sharing_a_200_character_prefix_get_different_files(tmp_path):
    shared = "CASE-" + "x" * 200
    keys = [f"{shared}A/notice/late", f"{shared}B/notice/late", f"{shared}A/notice/lost"]
    transport = FileTransport(tmp_path, BRAND)
    for key in keys:
        transport.send(message(key))
    stems = {file_stem(k) for k in keys}
    assert len(stems) == 3
    assert {p.stem for p in tmp_path.glob("*.eml")} == stems


@pytest.mark.parametrize("key", [
    "CASE-../../etc/passwd/notice/late",
    "CASE-a\\b/notice/late",
    "CASE-nul\x00byte/notice/late",
    "CASE-line\r\nbreak\x1b[31m/notice/late",
    "CASE-ünïcødé-😀/notice/late",
    "CASE-what?#%20 x/notice/late",
    "..",
    "",
])
def test_unsafe_characters_never_reach_the_file_name(key, tmp_path):
    stem = file_stem(key)
    assert re.fullmatch(r"[A-Za-z0-9._@+=,~-]{1,120}", stem), stem
    assert stem not in (".", "..")
    FileTransport(tmp_path, BRAND).send(message(key or "x"))  # writes inside the folder, nowhere else
    assert all(p.parent == tmp_path for p in tmp_path.rglob("*"))


def test_keys_that_the_readable_form_would_confuse_stay_apart():
    pairs = [("CASE-a__b/notice/late", "CASE-a/b/notice/late"), ("CASE-a_/b", "CASE-a/_b"),
             ("CASE-a/notice/late", "CASE-a~x/notice/late")]
    for one, other in pairs:
        assert file_stem(one) != file_stem(other)


def test_the_outbox_page_lists_the_newest_messages_and_counts_them_all(tmp_path):
    from lastmile.email.transport import write_index

    newest = [{"message_key": f"CASE-{i}/notice/late", "planned_at": f"2026-11-20 14:{i:02d}", "case_id": f"CASE-{i}",
               "kind": "notice", "state": "sent", "recipient": "a@example.com", "subject": "Late"} for i in range(3)]
    page = write_index(tmp_path, newest, {"sent": 4998, "failed": 2}).read_text(encoding="utf-8")
    assert "4998 sent, 2 not sent, 5000 in all. The newest 3 are listed." in page
    assert page.count("<tr>") == 1 + 3
