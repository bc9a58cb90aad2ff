"""The KPI report as an analyst reads it: trends per carrier as static SVG charts, shares as percentages.

A small history (two carriers over four weeks) goes into the real tables; the report reads it through
the real v_* views, on SQLite and on Postgres.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from lastmile.reporting.report import write
from lastmile.store import schema
from lastmile.store.db import prepare, upsert

AS_OF = datetime(2026, 11, 20, 14, tzinfo=UTC)
BATCH = "2026-11-20T14:00:00Z"
SINCE = date(2026, 10, 1)
MONDAYS = [date(2026, 10, 5), date(2026, 10, 12), date(2026, 10, 19), date(2026, 10, 26)]
CUSTOMER = {"customer_id": "C001", "name": "Zoë O'Brien", "email": "zoe.obrien@example.com",
            "tz": "Europe/London", "country": "GB", "locale": "en_GB"}
LATE_TITLE = "Late rate per carrier, by week shipped"
KEPT_TITLE = "Promises kept per carrier, by week the window ended"


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def fill(url: str) -> None:
    """Parcelforce and Evri, two parcels a week each, every one delivered on its promised day.

    Late: Evri one a week (4 of 8), Parcelforce one in each of the last two weeks (2 of 8).
    Windows: Parcelforce 2, both kept (100%); Evri 8, one of them broken (7 of 8: 87.5%)."""
    shipments, scans, detections, cases, outbox = [], [], [], [], []
    for carrier, late_weeks, windows in (("Parcelforce", {2, 3}, 2), ("Evri", {0, 1, 2, 3}, 8)):
        n = 0
        for w, monday in enumerate(MONDAYS):
            for k in range(2):
                sid = f"{carrier}-{w}-{k}"
                line = f"O{sid}-1"
                promised = monday + timedelta(days=3)
                shipments.append({
                    "shipment_id": sid, "order_line_id": line, "order_id": f"O{sid}", "customer_id": "C001",
                    "carrier": carrier, "service": "48", "tracking_code": f"TC-{sid}",
                    "created_at": _at(monday, 9), "promised_date": promised, "origin": "Bristol",
                    "destination": "Leeds", "dest_tz": "Europe/London", "sequence": 1})
                scans.append({
                    "scan_id": f"scan-{sid}", "shipment_id": sid, "occurred_at": _at(promised, 12),
                    "utc_offset_minutes": 0, "status": "delivered", "carrier_status": "delivered",
                    "carrier_status_detail": "", "message": "Delivered", "raw": "{}",
                    "first_seen_at": _at(promised, 13)})
                if w in late_weeks and k == 0:
                    detections.append({
                        "batch_key": BATCH, "shipment_id": sid, "exception_type": "late", "order_line_id": line,
                        "severity": 1, "open": False, "first_evidence_at": _at(promised, 6), "evidence": "{}"})
                if n < windows:
                    broken = carrier == "Evri" and n == 0
                    latest = promised - timedelta(days=1) if broken else promised + timedelta(days=1)
                    n += 1
                    cases.append({
                        "case_id": f"CASE-{sid}", "order_line_id": line, "order_id": f"O{sid}",
                        "customer_id": "C001", "shipment_id": sid, "exception_type": "late", "severity": 1,
                        "state": "resolved", "shipments_in_chain": 1, "opened_at": _at(monday, 10),
                        "first_evidence_at": _at(monday, 10), "evidence": "{}", "owner": "Care team",
                        "last_batch": BATCH})
                    outbox.append({
                        "message_key": f"CASE-{sid}/notice/late", "case_id": f"CASE-{sid}", "order_id": f"O{sid}",
                        "kind": "notice", "state": "sent", "customer_id": "C001", "recipient": CUSTOMER["email"],
                        "recipient_name": CUSTOMER["name"], "subject": "Running late",
                        "body_text": f"Dear {CUSTOMER['name']}", "body_html": f"<p>Dear {CUSTOMER['name']}</p>",
                        "window_earliest": promised - timedelta(days=2), "window_latest": latest,
                        "planned_at": _at(monday, 11), "planned_batch": BATCH, "sent_at": _at(monday, 11),
                        "attempts": 1})
    with prepare(url).begin() as conn:
        upsert(conn, schema.customers, [CUSTOMER])
        upsert(conn, schema.shipments, shipments)
        upsert(conn, schema.scans, scans)
        upsert(conn, schema.detections, detections)
        upsert(conn, schema.cases, cases)
        upsert(conn, schema.outbox, outbox)
        upsert(conn, schema.run_steps, [{"batch_key": BATCH, "step": "send_messages", "as_of": AS_OF,
                                         "counts": '{"sent": 10, "failed": 1}'}])


class Page(HTMLParser):
    """What a reader sees in each section: the charts' text, the table's rows, and the notes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, list]] = {}
        self._section: dict[str, list] | None = None
        self._svg: list[str] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._note: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._section = self.sections.setdefault(dict(attrs)["id"] or "", {"charts": [], "rows": [], "notes": []})
        elif tag == "svg":
            self._svg = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "p" and dict(attrs).get("class") == "empty":
            self._note = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg" and self._svg is not None and self._section is not None:
            self._section["charts"].append(" ".join(self._svg))
            self._svg = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._section is not None:
            self._section["rows"].append(self._row)
            self._row = None
        elif tag == "p" and self._note is not None and self._section is not None:
            self._section["notes"].append("".join(self._note))
            self._note = None

    def handle_data(self, data: str) -> None:
        for part in (self._svg, self._cell, self._note):
            if part is not None:
                part.append(data)

    def table(self, section: str) -> pd.DataFrame:
        header, *rows = self.sections[section]["rows"]
        return pd.DataFrame(rows, columns=header)


def test_the_page_charts_each_carrier_over_time_with_titles_axes_and_percentages(db_url, tmp_path):
    fill(db_url)
    text = write(prepare(db_url), SINCE, tmp_path / "report.html").read_text(encoding="utf-8")
    page = Page(text)

    (late_chart,) = page.sections["late_rate_monthly"]["charts"]
    (kept_chart,) = page.sections["promises_kept"]["charts"]
    for chart, title in ((late_chart, LATE_TITLE), (kept_chart, KEPT_TITLE)):
        assert title in chart
        assert "Parcelforce" in chart and "Evri" in chart  # one line per carrier, named in the legend
        assert "5 Oct" in chart and "26 Oct" in chart  # over time: a tick per week
        assert "0%" in chart and not re.search(r"\b0\.\d", chart)  # the value axis in percentages, not 0.5
    assert "Week shipped (from Monday)" in late_chart and "Shipments late" in late_chart
    assert "Week the window ended (from Monday)" in kept_chart and "Windows kept" in kept_chart
    (exception_chart,) = page.sections["exceptions_by_carrier"]["charts"]
    assert "Shipments with an exception per carrier, by week shipped" in exception_chart
    assert "Parcelforce" in exception_chart and "Evri" in exception_chart
    (emails_chart,) = page.sections["runs_per_day"]["charts"]
    assert "E-mails sent and failed per day" in emails_chart and "sent" in emails_chart

    # static and private: no script, nothing fetched, no customer anywhere (charts hold aggregates only)
    assert "<script" not in text and not re.search(r'(?:src|href)="(?!#)', text)
    for personal in (CUSTOMER["name"], "O&#x27;Brien", "O'Brien", CUSTOMER["email"]):
        assert personal not in text


def test_shares_read_as_percentages_on_the_page_and_stay_raw_numbers_in_the_csv(db_url, tmp_path):
    fill(db_url)
    engine = prepare(db_url)
    page = Page(write(engine, SINCE, tmp_path / "report.html").read_text(encoding="utf-8"))

    # Of all the carrier's shipments, not only of the lanes and weeks that had the exception.
    exceptions = page.table("exceptions_by_carrier").set_index("carrier")
    assert exceptions.loc["Evri", "shipments"] == "8" and exceptions.loc["Evri", "exception_rate"] == "50%"
    assert exceptions.loc["Parcelforce", "shipments"] == "8" and exceptions.loc["Parcelforce", "exception_rate"] == "25%"
    kept = page.table("promises_kept").set_index("carrier")
    assert kept.loc["Parcelforce", "share_kept"] == "100%"  # every promise kept: not "1"
    assert kept.loc["Evri", "share_kept"] == "87.5%"  # 7 of 8: not "0.875"
    late = page.table("late_rate_monthly").set_index("carrier")
    assert late.loc["Evri", "late_rate"] == "50%" and late.loc["Parcelforce", "late_rate"] == "25%"
    assert late.loc["Evri", "previous_late_rate"] == "–"  # no month before: nothing to compare

    folder = write(engine, SINCE, tmp_path / "csv", "csv")
    csv = pd.read_csv(folder / "promises_kept.csv").set_index("carrier")
    assert list(csv.reset_index().columns) == ["carrier", "month", "windows_sent", "kept", "broken", "pending",
                                               "share_kept"]
    assert csv.loc["Parcelforce", "share_kept"] == 1.0 and csv.loc["Evri", "share_kept"] == 0.875
    assert pd.read_csv(folder / "late_rate_monthly.csv").set_index("carrier").loc["Evri", "late_rate"] == 0.5


@pytest.mark.parametrize("history", ["empty", "nothing since"])
def test_a_period_without_data_gets_a_note_instead_of_each_chart(history, tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    if history == "nothing since":
        fill(url)
    else:
        prepare(url)
    since = date(2027, 1, 1) if history == "nothing since" else SINCE
    text = write(prepare(url), since, tmp_path / "report.html").read_text(encoding="utf-8")
    page = Page(text)

    assert "<svg" not in text
    late = page.sections["late_rate_monthly"]
    assert late["charts"] == []
    assert late["notes"] == [f"No data in this period for the chart “{LATE_TITLE}”.", "Nothing in this period."]
    assert f"No data in this period for the chart “{KEPT_TITLE}”." in page.sections["promises_kept"]["notes"]
    assert all(s["charts"] == [] for s in page.sections.values())
    assert (write(prepare(url), since, tmp_path / "csv", "csv") / "promises_kept.csv").exists()


def test_importing_the_report_leaves_the_charting_library_for_when_a_page_is_drawn():
    code = "import sys, lastmile.reporting.report; print(sorted({'altair', 'vl_convert'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
