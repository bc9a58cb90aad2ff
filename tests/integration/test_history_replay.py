"""`backtest --history`: a shop's own export replayed through the production steps, as of each day.

A small export in the documented format (the files-source tables plus scans.csv): one parcel on
time, one late, one that never arrives. The replay must call the late one late before it arrives
(not the on-time one), give it a window that holds, never see a scan before it happened, and write
calls.csv and windows.csv that anyone can score.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd

from tiny_shop import TinyShop, day


def _export(folder: Path) -> TinyShop:
    shop = TinyShop(folder, lines=3)
    for n, sid in enumerate(("SO1-1-1", "SO2-1-1", "SO3-1-1")):
        shop.scan(sid, "in_transit", day(-2) + timedelta(hours=n))
    shop.scan("SO1-1-1", "delivered", day(0))      # promised day(1): on time
    shop.scan("SO2-1-1", "in_transit", day(1))
    shop.scan("SO2-1-1", "delivered", day(4))      # late by three days
    # SO3-1-1 is never heard of again
    with (folder / "scans.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["shipment_id", "occurred_at", "status", "reason", "message"])
        writer.writeheader()
        for s in shop.scans:
            writer.writerow({"shipment_id": s["shipment_id"], "occurred_at": s["occurred_at"].isoformat(),
                             "status": s["status"], "reason": s["reason"] or "", "message": s["message"]})
    return shop


def test_a_history_export_is_replayed_day_by_day_and_scored(tmp_path):
    _export(tmp_path / "export")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "lastmile", "backtest", "--history", str(tmp_path / "export"),
                           "--out", str(out), "--step-hours", "24"], capture_output=True, text=True,
                          env={"LASTMILE_OUT_DIR": str(tmp_path / "lastmile"), "PATH": "/usr/bin:/bin"}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "first window per parcel" in done.stdout and "calls (before delivery)" in done.stdout

    calls = pd.read_csv(out / "calls.csv")
    assert list(calls.columns) == ["shipment_id", "exception_type", "first_called_at"]
    late = calls[(calls["shipment_id"] == "SO2-1-1") & (calls["exception_type"] == "late")]
    assert len(late) == 1 and pd.Timestamp(late["first_called_at"].iloc[0]) < pd.Timestamp(day(4)), \
        "called late before it arrived"
    assert calls[calls["shipment_id"] == "SO1-1-1"].empty, "nothing said about the parcel that came on time"
    assert set(calls.loc[calls["shipment_id"] == "SO3-1-1", "exception_type"]) >= {"late"}

    windows = pd.read_csv(out / "windows.csv")
    assert list(windows.columns) == ["shipment_id", "as_of", "exception_type", "earliest", "latest", "basis"]
    first = windows[windows["shipment_id"] == "SO2-1-1"].sort_values("as_of").iloc[0]
    assert first["earliest"] <= day(4).date().isoformat() <= first["latest"], "the first window held"
    assert (out / "report.txt").read_text().startswith("history replay:")


def _replay(tmp_path, folder, *args):
    return subprocess.run([sys.executable, "-m", "lastmile", "backtest", "--history", str(folder),
                           "--out", str(tmp_path / "out"), *args], capture_output=True, text=True,
                          env={"LASTMILE_OUT_DIR": str(tmp_path / "lastmile"), "PATH": "/usr/bin:/bin"}, timeout=600)


def test_one_bad_row_is_quarantined_with_its_place_and_the_replay_goes_on(tmp_path):
    folder = tmp_path / "export"
    _export(folder)
    scans = (folder / "scans.csv").read_bytes()
    at = scans.rfind(b"Delivered")  # the late parcel's delivery scan, in bytes that are not UTF-8
    (folder / "scans.csv").write_bytes(scans[:at] + b"Entr\xe9gue" + scans[at + len(b"Delivered"):])
    ships = (folder / "shipments.csv").read_text().replace(day(1).date().isoformat(), "", 1)  # a promise lost
    (folder / "shipments.csv").write_text(ships)
    done = _replay(tmp_path, folder)
    assert done.returncode == 0, done.stderr
    assert "quarantined records" in done.stdout and "export 1" in done.stdout and "shipments 1" in done.stdout
    assert "Traceback" not in done.stderr


def test_what_no_run_could_read_fails_at_once_in_one_line_naming_the_file(tmp_path):
    folder = tmp_path / "export"
    _export(folder)
    (folder / "scans.csv").unlink()
    done = _replay(tmp_path, folder)
    assert done.returncode == 1 and "no scans.csv" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    _export(folder)
    assert _replay(tmp_path, folder, "--step-hours", "0").returncode == 1
