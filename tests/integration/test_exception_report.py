"""The daily exception_report DAG through Airflow: clean history passes, a broken one alerts ops."""

from __future__ import annotations

import json

import pandas as pd
import pendulum
import pytest
from servers.webhook import WebhookServer
from sqlalchemy import create_engine, text

from lastmile.config import Settings
from lastmile.steps import pipeline
from lastmile.store.db import prepare

from conftest import ROOT

AS_OF = pendulum.datetime(2026, 11, 20, 14, tz="UTC")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / "exception_report.py")).dags["exception_report"]


def test_quality_checks_pass_on_a_real_history_and_alert_ops_when_it_breaks(report_dag, monkeypatch, tmp_path,
                                                                           sim_dir):
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    monkeypatch.setenv("LASTMILE_SIM_DIR", str(sim_dir))
    settings = Settings.from_env()
    prepare(settings.db_url)
    pipeline.run_all(settings, AS_OF)
    # The checks run as common-sql operators against the history's Connection.
    monkeypatch.setenv("AIRFLOW_CONN_LASTMILE_HISTORY",
                       json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "lastmile.db")}))

    with WebhookServer() as ops:
        monkeypatch.setenv("AIRFLOW_CONN_LASTMILE_OPS_WEBHOOK", json.dumps({"conn_type": "http", "host": ops.url}))
        run = report_dag.test(logical_date=AS_OF)
        assert run.state == "success"
        assert ops.texts() == []
        # the KPI report was built from the views: HTML with charts, and one CSV per KPI
        page = (tmp_path / "report" / "2026-11-20" / "report.html").read_text()
        assert "Did we keep our promises?" in page and "<svg" in page and "<script" not in page
        late = pd.read_csv(tmp_path / "report" / "2026-11-20" / "csv" / "late_rate_monthly.csv")
        assert set(late.columns) >= {"carrier", "month", "late_rate", "change"} and len(late) > 0
        assert late["late_rate"].between(0, 1).all()

        engine = create_engine(settings.db_url)
        with engine.begin() as conn:
            case_id = conn.execute(text("SELECT case_id FROM cases LIMIT 1")).scalar_one()
            conn.execute(text("UPDATE cases SET evidence = '{}' WHERE case_id = :c"), {"c": case_id})
        engine.dispose()
        run = report_dag.test(logical_date=AS_OF.add(days=1))
        states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
        # Only the broken check fails, at once (no retry: data does not heal); the others and the report pass.
        assert states.pop("quality_checks.case_without_evidence") == ("failed", 1)
        assert {state for state, _ in states.values()} == {"success"} and len(states) == 6
        (alert,) = ops.texts()
        assert "exception_report.quality_checks.case_without_evidence" in alert
        assert "FAIL case_without_evidence: 1 offending rows - a case must keep the scans" in alert
