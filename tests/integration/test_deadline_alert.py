"""The Deadline Alert of delivery_exceptions through Airflow's own machinery, on the metadata DB.

A run queued 50 minutes ago and still not finished: Airflow set its deadline at queued + 45 minutes
when it created the run; one loop of the real scheduler marks the deadline missed and queues the
callback as a trigger; the trigger runs as the triggerer runs it, and ops get one alert through the
Connection lastmile_ops_webhook (here a local webhook behind an Apprise json:// URL). A run that
succeeded within its 45 minutes has no deadline left to miss; one that failed within them is still
called back by Airflow, but its failure alerted already: neither alerts again.

Waiting 50 minutes is replaced by creating the runs with Airflow's clock set 50 minutes back
(`timezone.utcnow`, which stamps `queued_at` and `end_date`); everything else runs at the real time.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from unittest import mock

import pendulum
import pytest
from servers.webhook import WebhookServer

from conftest import ROOT

SECRET = "s3cr3t-pw"
HELD = pendulum.datetime(2026, 10, 5, 9, tz="UTC")  # logical dates of the two runs
IN_TIME = pendulum.datetime(2026, 10, 5, 10, tz="UTC")
FAILED_IN_TIME = pendulum.datetime(2026, 10, 5, 11, tz="UTC")


@pytest.fixture(scope="module")
def scheduler_dag(airflow_db):
    """delivery_exceptions parsed and written to the metadata DB as the dag-processor does."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.serialized_dag import SerializedDagModel

    DagBundlesManager().sync_bundles_to_db()
    saved = os.environ.pop("LASTMILE_RUN_DEADLINE_MINUTES", None)  # the deployed default: 45 minutes
    try:
        bag = DagBag(dag_folder=str(ROOT / "dags" / "delivery_exceptions.py"))
    finally:
        if saved is not None:
            os.environ["LASTMILE_RUN_DEADLINE_MINUTES"] = saved
    assert not bag.import_errors
    sync_bag_to_db(bag, "dags-folder", None)
    return SerializedDagModel.get_dag("delivery_exceptions")


def airflow_clock(at):
    """Airflow's clock (what stamps queued_at, start_date, end_date) set to `at`."""
    from airflow._shared.timezones import timezone

    return mock.patch.object(timezone, "utcnow", lambda: at)


def create_queued_run(dag, logical_date, session, conf=None):
    """A scheduled run, queued: what the scheduler creates at the top of the hour."""
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    return dag.create_dagrun(
        run_id=f"scheduled__{logical_date.isoformat()}", logical_date=logical_date,
        data_interval=(logical_date.subtract(hours=1), logical_date), run_after=logical_date,
        run_type=DagRunType.SCHEDULED, state=DagRunState.QUEUED, conf=conf or {},
        triggered_by=DagRunTriggeredByType.TIMETABLE, session=session)


def run_scheduler_loop_once() -> None:
    """One loop of the real scheduler (SchedulerJobRunner), which ends with its deadline check:
    every deadline past and not yet missed gets `Deadline.handle_miss` (its callback queued)."""
    from airflow.jobs.job import Job, run_job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    job = Job()
    run_job(job=job, execute_callable=SchedulerJobRunner(job=job, num_runs=1)._execute)


def run_callback_triggers(session) -> list:
    """What the triggerer does with a deadline's callback: build the trigger from its row, run it,
    and hand each event back (Trigger.submit_event → the callback's state)."""
    from airflow._shared.module_loading import import_string
    from airflow.models.trigger import Trigger
    from sqlalchemy import select

    rows = session.scalars(select(Trigger).where(Trigger.callback.has())).all()

    async def run(row) -> list:
        trigger = import_string(row.classpath)(**row.kwargs)
        return [event async for event in trigger.run()]

    for row in rows:
        for event in asyncio.run(run(row)):
            Trigger.submit_event(row.id, event, session=session)
    session.flush()
    return rows


def test_a_run_held_past_its_deadline_alerts_ops_and_one_finished_in_time_does_not(
        scheduler_dag, monkeypatch, caplog, capsys):
    from airflow.models import DagModel, DagRun
    from airflow.models.deadline import Deadline
    from airflow.utils.session import create_session
    from airflow.utils.state import CallbackState, DagRunState, TaskInstanceState
    from sqlalchemy import select, update

    now = pendulum.now("UTC")
    with create_session() as session:
        # Nothing else may start meanwhile: every DAG paused (a paused DAG's queued run stays queued,
        # which is also how a run gets held in real life), put back as it was at the end.
        paused = dict(session.execute(select(DagModel.dag_id, DagModel.is_paused)).all())
        session.execute(update(DagModel).values(is_paused=True))

        with airflow_clock(now.subtract(minutes=50)):
            held = create_queued_run(scheduler_dag, HELD, session, conf={"requested_by": "zoe@example.com"})
            in_time = create_queued_run(scheduler_dag, IN_TIME, session)
            failed = create_queued_run(scheduler_dag, FAILED_IN_TIME, session)
            session.flush()
        # Airflow set each deadline from the DAG's DeadlineAlert: queued_at + 45 minutes.
        for run in (held, in_time, failed):
            (deadline,) = run.deadlines
            assert deadline.deadline_time - run.queued_at == timedelta(minutes=45)
            assert not deadline.missed
        in_time_deadline = in_time.deadlines[0].id

        # The other two end 8 minutes after they were queued: one succeeds (its deadline is pruned
        # as kept), one fails (its deadline stays: Airflow prunes only on success).
        with airflow_clock(now.subtract(minutes=42)):
            for run, outcome in ((in_time, TaskInstanceState.SUCCESS), (failed, TaskInstanceState.FAILED)):
                run.state = DagRunState.RUNNING
                for ti in run.get_task_instances(session=session):
                    ti.state = outcome
                session.flush()
                run.dag = scheduler_dag
                run.update_state(session=session)
        assert (in_time.state, failed.state) == (DagRunState.SUCCESS, DagRunState.FAILED)
        assert session.get(Deadline, in_time_deadline) is None
        assert len(failed.deadlines) == 1
        session.commit()

    try:
        run_scheduler_loop_once()
        with create_session() as session, WebhookServer() as ops:
            held = session.scalar(select(DagRun).where(DagRun.run_id == held.run_id))
            assert held.state == DagRunState.QUEUED and held.end_date is None
            (deadline,) = held.deadlines
            assert deadline.missed and deadline.callback.state == CallbackState.QUEUED

            monkeypatch.setenv("AIRFLOW_CONN_LASTMILE_OPS_WEBHOOK", json.dumps({
                "conn_type": "apprise",
                "extra": {"config": {"path": ops.apprise_url(f"ops:{SECRET}"), "tag": "ops"}}}))
            failed = session.scalar(select(DagRun).where(DagRun.run_id == failed.run_id))
            assert failed.deadlines[0].missed  # Airflow calls back for the failed run too
            triggers = run_callback_triggers(session)
            assert len(triggers) == 2
            assert {t.kwargs["callback_path"] for t in triggers} == {"lastmile_airflow.alerts.DeadlineMissedAlert"}
            assert deadline.callback.state == failed.deadlines[0].callback.state == CallbackState.SUCCESS
            alerts = ops.alerts()
    finally:
        with create_session() as session:
            for dag_id, was_paused in paused.items():
                session.execute(update(DagModel).where(DagModel.dag_id == dag_id).values(is_paused=was_paused))

    # What ops see: one alert, for the held run only, naming the DAG, the run and the deadline.
    (alert,) = alerts
    queued = now.subtract(minutes=50)
    assert alert["type"] == "warning" and alert["title"] == "lastmile: run late"
    assert alert["message"] == (
        "lastmile: delivery_exceptions run scheduled__2026-10-05T09:00:00+00:00 missed its 45-minute deadline: "
        f"not finished (queued {queued:%Y-%m-%d %H:%M} UTC, due {queued.add(minutes=45):%Y-%m-%d %H:%M} UTC, "
        "state queued)")
    logged = caplog.text + "".join(capsys.readouterr())
    assert f"ALERT {alert['message']}" in logged
    for seen in (json.dumps(alert), logged):
        assert SECRET not in seen
        assert "zoe@example.com" not in seen  # the run's conf is never part of an alert


@pytest.mark.xfail(strict=True, raises=TypeError, reason=(
    "apache/airflow#70368 (fix: PR #70370), Airflow 3.3.0-3.3.2: clearing a run whose queued-at deadline is "
    "still pending (failed, or running, within its 45 minutes) fails in _recalculate_dagrun_queued_at_deadlines "
    "(the UI answers HTTP 500). When this starts passing, drop the test and the note in docs/ops-alerts.md."))
def test_clearing_a_run_within_its_deadline(scheduler_dag):
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    with create_session() as session:
        run = create_queued_run(scheduler_dag, pendulum.datetime(2026, 10, 5, 12, tz="UTC"), session)
        session.flush()
        run.state = DagRunState.FAILED
        tis = run.get_task_instances(session=session)
        for ti in tis:
            ti.state = TaskInstanceState.FAILED
        session.flush()
        clear_task_instances(tis, session)  # what "Clear" in the UI does
        session.flush()
        assert run.deadlines[0].deadline_time == run.queued_at + timedelta(minutes=45)
