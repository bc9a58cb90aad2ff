"""The whole DAG through Airflow (`dag.test()`) on SQLite and on the real local Postgres.

What a user notices: exceptions found and scored against the simulator's ground truth, e-mails in
the outbox, bad records in quarantine with their reason, and a rerun that changes nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pendulum
import pytest
from sqlalchemy import create_engine, func, select

from lastmile.evaluation.scoring import score
from lastmile.sim import simulator
from lastmile.store import schema
from lastmile.store.db import prepare

from conftest import ROOT
from tally_check import kept

LOGICAL_DATE = pendulum.datetime(2026, 11, 20, 14, tz="UTC")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "delivery_exceptions.py"))
    return bag.dags["delivery_exceptions"]


def table_counts(url: str) -> dict[str, object]:
    """Rows per table; of tally_deltas, the counts it keeps (its rows are folded as runs go on)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        counts: dict[str, object] = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                                     for t in schema.metadata.sorted_tables if t is not schema.tally_deltas}
        counts["tally_deltas"] = kept(conn)
    engine.dispose()
    return counts


def outbox_fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def run_twice(dag, monkeypatch, tmp_path: Path, sim_dir: Path, db_url: str) -> None:
    monkeypatch.setenv("LASTMILE_DB_URL", db_url)
    prepare(db_url)  # what `python -m lastmile migrate` does before a deployment's first run
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    monkeypatch.setenv("LASTMILE_SIM_DIR", str(sim_dir))
    first = dag.test(logical_date=LOGICAL_DATE)
    assert first.state == "success"
    counts = table_counts(db_url)
    outbox = tmp_path / "outbox"
    files = outbox_fingerprint(outbox)

    # E-mails were written, each readable from the index, and every one is in the outbox table.
    engine = create_engine(db_url)
    with engine.connect() as conn:
        messages = pd.read_sql(select(schema.outbox), conn)
        quarantine = pd.read_sql(select(schema.quarantine), conn)
        dets = pd.read_sql(select(schema.detections), conn)
        cases = pd.read_sql(select(schema.cases), conn)
    engine.dispose()
    sent = messages[messages["state"] == "sent"]
    assert len(sent) >= 30
    assert len([f for f in files if f.endswith(".eml")]) == len(sent)
    index = (outbox / "index.html").read_text()
    assert f"{len(sent)} sent" in index
    assert all(f"{key.replace('/', '__')}.html" in index for key in sent["message_key"])
    assert not any(addr in index for addr in sent["recipient"])  # masked on the ops page

    # Every injected bad record is in quarantine with its id, field and reason.
    faults = simulator.read_faults(sim_dir)
    q = {(r.source, r.record_id.split("#")[0], r.field): r.reason for r in quarantine.itertuples()}
    assert ("orders", faults["duplicate_order_id"][0], "order_id") in q
    for cid in faults["customer_email_missing"] + faults["customer_email_invalid"]:
        assert ("customers", cid, "email") in q
    shipments = pd.read_csv(sim_dir / "shipments.csv", dtype=str).set_index("shipment_id")
    for sid in faults["tracker_missing_fields"]:
        assert ("easypost", shipments.loc[sid, "tracking_code"], "status") in q
    for sid in faults["scan_naive_timestamp"]:
        assert "no UTC offset" in q[("easypost", shipments.loc[sid, "tracking_code"], "datetime")]
    # A customer without a usable address is not e-mailed, but the case is kept for ops.
    no_email = set(faults["customer_email_missing"] + faults["customer_email_invalid"])
    assert not set(sent["customer_id"]) & no_email

    # Detection against the simulator's ground truth.
    truth = pd.read_csv(sim_dir / "ground_truth.csv", dtype=str, keep_default_na=False)
    scores = {s.exception_type: s for s in score(truth, dets, LOGICAL_DATE)}
    for kind in ("late", "lost", "reshipped", "failed_attempt", "returned", "damaged", "customs_hold"):
        assert scores[kind].recall >= 0.9, (kind, scores[kind])
        assert scores[kind].precision >= 0.9, (kind, scores[kind])
    assert scores["stalled"].recall >= 0.9 and scores["stalled"].precision >= 0.85
    assert (cases["shipments_in_chain"] >= 3).any()

    # The same logical date again: nothing new anywhere.
    second = dag.test(logical_date=LOGICAL_DATE)
    assert second.state == "success"
    assert table_counts(db_url) == counts
    assert outbox_fingerprint(outbox) == files


def test_dag_end_to_end_on_sqlite(dag, monkeypatch, tmp_path, sim_dir):
    run_twice(dag, monkeypatch, tmp_path, sim_dir, f"sqlite:///{tmp_path / 'history.db'}")


@pytest.mark.postgres
def test_dag_end_to_end_on_postgres(dag, monkeypatch, tmp_path, sim_dir, postgres_url):
    run_twice(dag, monkeypatch, tmp_path, sim_dir, postgres_url)
