"""The incremental core gives exactly what re-detecting everything gives, run after run.

The same simulated shop is run hour by hour (crossing local midnights in New York, Los Angeles,
London and Berlin) twice: once re-detecting only what changed (the default), once re-detecting
every shipment every run (LASTMILE_FULL_DETECT=1). Detections, windows, cases and e-mails agree.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from lastmile.config import Settings
from lastmile.steps import pipeline
from lastmile.store import schema
from lastmile.store.db import prepare

START = datetime(2026, 11, 18, 20, tzinfo=UTC)
RUNS = [START + timedelta(hours=3 * n) for n in range(14)]  # 20:00Z to 11:00Z two days later


@pytest.fixture(scope="module")
def sim_400(tmp_path_factory) -> Path:
    from lastmile.sim import simulator

    folder = tmp_path_factory.mktemp("sim-400")
    simulator.ensure(folder, seed=7, n_orders=400)
    return folder


def _state(settings: Settings) -> dict[str, object]:
    cd, ca, ob = schema.current_detections.c, schema.cases.c, schema.outbox.c
    with prepare(settings.db_url).connect() as conn:
        return {
            "detections": sorted(conn.execute(select(
                cd.shipment_id, cd.exception_type, cd.open, cd.window_earliest, cd.window_latest)).tuples()),
            "cases": sorted(conn.execute(select(
                ca.case_id, ca.state, ca.exception_type, ca.shipment_id, ca.window_earliest, ca.window_latest,
                ca.resolution)).tuples()),
            "outbox": sorted(conn.execute(select(ob.message_key, ob.state)).tuples()),
        }


def test_changed_only_equals_everything_every_run(tmp_path, sim_400):
    base = Settings(db_url="", source="simulated", email_transport="file", out_dir=tmp_path, sim_dir=sim_400,
                    sim_seed=7, sim_orders=400)
    incremental = dataclasses.replace(base, db_url=f"sqlite:///{tmp_path / 'incremental.db'}",
                                      out_dir=tmp_path / "incremental")
    full = dataclasses.replace(base, db_url=f"sqlite:///{tmp_path / 'full.db'}", out_dir=tmp_path / "full",
                               full_detect=True)
    prepare(incremental.db_url), prepare(full.db_url)
    checked: list[int] = []
    for as_of in RUNS:
        pipeline.run_all(incremental, as_of)
        pipeline.run_all(full, as_of)
        assert _state(incremental) == _state(full), f"differs after the run at {as_of.isoformat()}"
        with prepare(incremental.db_url).connect() as conn:
            checked.append(conn.execute(select(schema.run_steps.c.counts).where(
                schema.run_steps.c.step == "detect_exceptions",
                schema.run_steps.c.as_of == as_of)).scalar_one().count('"mode": "changed"'))
    assert sum(checked) == len(RUNS) - 1, "every run after the first re-detected only what changed"
    assert _state(full)["outbox"], "the shop produced e-mails to compare"
