"""The reconcile_outbox DAG: a person settles ambiguous and failed e-mails from Airflow's Required Actions.

The DAG runs with `dag.test()` on a small hand-made history (SQLite). A person answers each
Human-in-the-loop prompt the way the Airflow UI does: through the public REST API
(PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/{map_index}/hitlDetails) of an
in-process API server that shares the Airflow metadata database, signed in as a named ops user.
Then the outbox must have changed as chosen, and the send step must honour it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
import pytest
from sqlalchemy import select

from lastmile.__main__ import main as cli
from lastmile.config import Settings
from lastmile.email.transport import FileTransport
from lastmile.steps import pipeline
from lastmile.store import schema
from lastmile.store.db import engine_for, prepare, upsert

from conftest import ROOT

DAG_ID = "reconcile_outbox"
LOGICAL_DATE = pendulum.datetime(2026, 11, 21, 7, tz="UTC")
PLANNED = datetime(2026, 11, 20, 14, tzinfo=UTC)
OPS_USER = "ops-maya"
NAME, ADDRESS = "Zoë O'Brien", "zoe.obrien@example.com"  # must never reach a prompt, an XCom or a log
AMBIGUOUS, FAILED, DROPPED, LATER = ("CASE-L1/notice/late", "CASE-L2/notice/lost", "CASE-L3/update/late",
                                     "CASE-L6/notice/damaged")
SETTLED_MEANWHILE = "CASE-L7/notice/late"  # settled with the CLI while its question was open
ANSWERS = {AMBIGUOUS: "Mark sent", FAILED: "Resend", DROPPED: "Drop", LATER: "Decide later",
           SETTLED_MEANWHILE: "Resend"}


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / "reconcile_outbox.py"))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID]


def test_the_dag_parses_and_asks_one_question_per_message(dag):
    from airflow.providers.standard.operators.hitl import HITLOperator

    assert dag.dag_id == DAG_ID
    assert [t.task_id for t in dag.topological_sort()] == ["messages_needing_a_person", "settle.decide",
                                                           "settle.apply"]
    decide = dag.get_task("settle.decide")
    assert isinstance(decide, HITLOperator)
    assert decide.options == ["Resend", "Mark sent", "Drop", "Decide later"]
    assert decide.defaults == ["Decide later"] and decide.multiple is False and decide.response_timeout
    assert "settle.apply" in decide.downstream_task_ids


def history(url: str) -> Settings:
    """Five messages waiting for a person, one sent and one planned."""
    prepare(url)

    def message(key: str, state: str, reason: str | None, n: int) -> dict[str, Any]:
        case_id, kind, _ = key.split("/")
        return {"message_key": key, "case_id": case_id, "order_id": f"O-{n}", "kind": kind, "state": state,
                "state_reason": reason, "customer_id": f"CU-{n}", "recipient": ADDRESS, "recipient_name": NAME,
                "subject": f"Your order O-{n}", "body_text": f"Dear {NAME}", "body_html": f"<p>Dear {NAME}</p>",
                "planned_at": PLANNED, "planned_batch": "2026-11-20T14:00:00Z", "attempts": 1}

    with engine_for(url).begin() as conn:
        upsert(conn, schema.customers, [{"customer_id": f"CU-{n}", "name": NAME, "email": ADDRESS,
                                         "tz": "Europe/London", "country": "GB", "locale": "en-GB"} for n in range(8)])
        upsert(conn, schema.outbox, [
            message(AMBIGUOUS, "ambiguous", "no answer within 10 s after sending", 1),
            message(FAILED, "failed", f"550 5.1.1 <{ADDRESS}>: mailbox unavailable", 2),
            message(DROPPED, "ambiguous", "connection dropped after sending: ReadTimeout", 3),
            message("CASE-L4/notice/late", "sent", None, 4),
            message("CASE-L5/notice/late", "planned", None, 5),
            message(LATER, "failed", "HTTP 400: {\"errors\": [{\"message\": \"bad to.email\"}]}", 6),
            message(SETTLED_MEANWHILE, "ambiguous", "no answer within 10 s after sending", 7),
        ])
    return Settings.from_env()


class Person:
    """An ops user answering the Required Actions through the REST API, in the background."""

    def __init__(self, client, token: str, answers: dict[str, str]) -> None:
        self.client, self.answers = client, answers
        self.headers = {"Authorization": f"Bearer {token}"}
        self.prompts: dict[str, dict[str, Any]] = {}  # message key -> the HITL detail as the API showed it
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._answer, daemon=True)

    def __enter__(self) -> Person:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _answer(self) -> None:
        while not self.stop.is_set() and len(self.prompts) < len(self.answers):
            got = self.client.get(f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails",
                                  params={"response_received": False}, headers=self.headers)
            if got.status_code != 200:
                self.errors.append(f"GET hitlDetails: {got.status_code} {got.text[:300]}")
                return
            for detail in got.json()["hitl_details"]:
                ti = detail["task_instance"]
                key = next((k for k in self.answers if k in detail["subject"]), None)
                if key is None or key in self.prompts:
                    self.errors.append(f"unexpected prompt: {detail['subject']}")
                    return
                if key == SETTLED_MEANWHILE:  # someone else was quicker, on the command line
                    if cli(["outbox", "--mark-sent", key, "--by", "sam"]) != 0:
                        self.errors.append(f"the CLI could not mark {key} sent")
                url = (f"/api/v2/dags/{DAG_ID}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/"
                       f"{ti['map_index']}/hitlDetails")
                done = self.client.patch(url, json={"chosen_options": [self.answers[key]]}, headers=self.headers)
                if done.status_code != 200:
                    self.errors.append(f"PATCH {url}: {done.status_code} {done.text[:300]}")
                    return
                self.prompts[key] = detail
            time.sleep(0.3)


@pytest.fixture()
def api(airflow_db, monkeypatch):
    """The Airflow REST API in-process (simple auth manager), and a token for a named ops user."""
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER",
                       "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{OPS_USER}:admin")
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    with TestClient(create_app("core")) as client:
        yield client, get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=OPS_USER, role="admin"))


def outbox(settings: Settings) -> dict[str, dict[str, Any]]:
    with engine_for(settings.db_url).connect() as conn:
        return {r["message_key"]: dict(r) for r in conn.execute(select(schema.outbox)).mappings()}


@pytest.mark.slow
def test_a_persons_choices_in_airflow_change_the_outbox(dag, api, monkeypatch, tmp_path, caplog, capsys):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    monkeypatch.setenv("LASTMILE_DB_URL", f"sqlite:///{tmp_path / 'history.db'}")
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    settings = history(f"sqlite:///{tmp_path / 'history.db'}")
    client, token = api
    started = time.monotonic()
    with Person(client, token, ANSWERS) as person:
        run = dag.test(logical_date=LOGICAL_DATE)
    assert person.errors == []
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert time.monotonic() - started < 60
    states = Counter((ti.task_id, ti.state) for ti in run.get_task_instances())
    assert states == {("messages_needing_a_person", "success"): 1, ("settle.decide", "success"): 5,
                      ("settle.apply", "success"): 4, ("settle.apply", "skipped"): 1}
    assert outbox(settings)[SETTLED_MEANWHILE]["state_reason"] == "confirmed by sam"  # not resent

    # The REST API lists the DAG, and each question named its message with safe facts only.
    listed = client.get("/api/v2/dags", params={"dag_id_pattern": DAG_ID},
                        headers={"Authorization": f"Bearer {token}"})
    assert [d["dag_id"] for d in listed.json()["dags"]] == [DAG_ID]
    assert set(person.prompts) == set(ANSWERS)
    failed = person.prompts[FAILED]
    assert "failed" in failed["subject"] and "notice" in failed["subject"]
    assert "z***@e***.com" in failed["body"] and "Resend" in failed["body"]
    assert person.prompts[AMBIGUOUS]["options"] == ["Resend", "Mark sent", "Drop", "Decide later"]

    # The outbox changed as chosen, and the case history says what and who.
    rows = outbox(settings)
    assert (rows[AMBIGUOUS]["state"], rows[AMBIGUOUS]["state_reason"]) == ("sent", f"confirmed by {OPS_USER} (Airflow)")
    assert rows[FAILED]["state"] == "planned" and OPS_USER in rows[FAILED]["state_reason"]
    assert rows[DROPPED]["state"] == "dropped"
    assert rows[DROPPED]["state_reason"] == f"dropped by {OPS_USER} (Airflow); never to be sent (was ambiguous)"
    assert rows[LATER]["state"] == "failed"  # "Decide later": unchanged, asked again tomorrow
    assert [r["message_key"] for r in pipeline.reconcile(settings)] == [LATER]
    assert "`HTTP 400`" in person.prompts[LATER]["body"]  # the provider's answer, cut to its status
    with engine_for(settings.db_url).connect() as conn:
        events = sorted(conn.execute(select(schema.case_events.c.case_id, schema.case_events.c.event,
                                            schema.case_events.c.detail)).tuples())
    assert events == [("CASE-L1", "message_marked_sent", f"notice/late by {OPS_USER} (Airflow)"),
                      ("CASE-L2", "message_released", f"notice/lost by {OPS_USER} (Airflow)"),
                      ("CASE-L3", "message_dropped", f"update/late by {OPS_USER} (Airflow)"),
                      ("CASE-L7", "message_marked_sent", "notice/late by sam")]

    # The next sends: the resent message goes exactly once; the confirmed and the dropped never go.
    sends: Counter[str] = Counter()
    original = FileTransport.send

    def counting(self, message):
        sends[message.message_key] += 1
        return original(self, message)

    monkeypatch.setattr(FileTransport, "send", counting)
    for hours in (0, 1, 2):
        pipeline.send_messages(settings, PLANNED + timedelta(days=1, hours=hours))
    assert sends == {FAILED: 1, "CASE-L5/notice/late": 1}
    rows = outbox(settings)
    assert rows[FAILED]["state"] == "sent" and rows[FAILED]["attempts"] == 2
    assert (rows[AMBIGUOUS]["state"], rows[DROPPED]["state"]) == ("sent", "dropped")

    # Privacy: no name and no address in a prompt, an XCom or a log line of the run.
    with create_session() as session:
        xcoms = [str(x.value) for x in session.scalars(select(XComModel).where(XComModel.dag_id == DAG_ID,
                                                                              XComModel.run_id == run.run_id))]
    assert len(xcoms) == 10  # the list, five answers, four results (one skipped)
    seen = " ".join([*xcoms, *(str(p) for p in person.prompts.values()), caplog.text, capsys.readouterr().out])
    assert f"{FAILED}: failed -> planned by {OPS_USER} (Airflow)" in seen  # the task logs were read
    assert NAME not in seen and ADDRESS not in seen and "Dear" not in seen


@pytest.mark.slow
def test_with_nothing_waiting_the_run_succeeds_at_once(dag, monkeypatch, tmp_path):
    monkeypatch.setenv("LASTMILE_DB_URL", f"sqlite:///{tmp_path / 'history.db'}")
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    prepare(f"sqlite:///{tmp_path / 'history.db'}")
    run = dag.test(logical_date=LOGICAL_DATE.add(days=1))
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["messages_needing_a_person"] == "success"
    assert states["settle.decide"] == states["settle.apply"] == "skipped"


def test_the_command_line_drops_too_and_refuses_a_message_that_needs_no_person(db_url, monkeypatch, tmp_path,
                                                                                capsys):
    monkeypatch.setenv("LASTMILE_DB_URL", db_url)
    monkeypatch.setenv("LASTMILE_OUT_DIR", str(tmp_path))
    settings = history(db_url)
    assert cli(["outbox", "--drop", DROPPED, "--by", "maya"]) == 0
    listed = capsys.readouterr().out
    assert AMBIGUOUS in listed and FAILED in listed and DROPPED not in listed
    assert "<z***@e***.com>: mailbox unavailable" in listed and ADDRESS not in listed
    assert outbox(settings)[DROPPED]["state_reason"] == "dropped by maya; never to be sent (was ambiguous)"
    # already dropped, or sent: not waiting for a person -- refused, nothing changed
    assert cli(["outbox", "--mark-sent", DROPPED]) == 1
    assert cli(["outbox", "--resend", "CASE-L4/notice/late"]) == 1
    assert "is not an ambiguous or failed message" in capsys.readouterr().err
    rows = outbox(settings)
    assert (rows[DROPPED]["state"], rows["CASE-L4/notice/late"]["state"]) == ("dropped", "sent")
