"""The history schema's migrations and analyst views, on SQLite and on the real Postgres.

The data set at the bottom is small enough to check by hand: two carriers over two months, a few
promises, e-mails and provider events, one reshipment chain and one run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    UniqueConstraint,
    create_engine,
    insert,
    inspect,
    select,
    text,
)

from lastmile.store import migrate, schema, tallies
from lastmile.store.db import engine_for, prepare, upsert, utc
from lastmile.store.schema import metadata

from conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]
VIEWS = {"v_shipment_outcomes", "v_exceptions_weekly", "v_late_rate_monthly", "v_promises", "v_promises_kept",
         "v_time_to_email", "v_time_to_resolution", "v_reshipment_chains", "v_messages", "v_message_delivery",
         "v_runs", "v_open_cases", "v_check_ins"}
# Objects schema.py gained after the baseline: the old create_all never built them.
ADDED_AFTER_BASELINE = {"tables": {"message_events", "current_detections", "transit_samples", "estimate_samples",
                                   "batch_changes", "tracking_state", "source_rows",
                                   "exception_samples", "learned_statistics", "tally_deltas", "tracker_events"},
                        "indexes": {"ix_detections_shipment_type", "ix_scans_shipment_status_occurred", "ix_scans_first_seen_at", "ix_scans_occurred_at", "ix_scans_status_occurred",
                                    "ix_shipments_created_at", "ix_estimates_observed_at", "ix_outbox_planned_at_key",
                                    "ix_shipments_dest_tz", "ix_outbox_state_case_promise", "ix_outbox_planned_batch",
                                    "ix_cases_state_type_case", "ix_cases_last_batch", "ix_tally_deltas_name_key",
                                    "ix_outbox_state_kind"},
                        "columns": {("orders", "status"), ("quarantine", "file"), ("quarantine", "row_no"),
                                    ("shipments", "dest_country"), ("outbox", "check_in_by"), ("outbox", "handed_at")},
                        "constraints": {"uq_case_event_batch": ("uq_case_event", ("case_id", "event", "detail"))}}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    # A reader's session far east of UTC: months, weeks and dates must not move with it.
    return request.getfixturevalue("postgres_url").replace(
        "options=", "options=-ctimezone%3DPacific/Kiritimati%20", 1)


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    eng = create_engine(db_url)
    yield eng
    eng.dispose()


def schema_diff(engine: Engine, target: MetaData = metadata) -> list[Any]:
    """What `alembic revision --autogenerate` would write: schema.py against the live database."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "version_table": migrate.VERSION_TABLE, "compare_type": True, "compare_server_default": True})
        return compare_metadata(context, target)


def revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return migrate.current_revision(conn)


def views(engine: Engine) -> set[str]:
    return set(inspect(engine).get_view_names())


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


# -- migrations ------------------------------------------------------------------------------------

def test_upgrade_from_empty_builds_exactly_schema_py(engine: Engine) -> None:
    assert migrate.upgrade(engine) is None
    assert revision(engine) == migrate.head_revision() == "0017"
    assert schema_diff(engine) == []
    assert tables(engine) == set(metadata.tables) | {migrate.VERSION_TABLE}
    assert views(engine) == VIEWS
    with engine.connect() as conn:
        for view in sorted(VIEWS):
            assert conn.execute(text(f"SELECT * FROM {view}")).all() == []
    assert migrate.upgrade(engine) == "0017"  # a second start finds nothing to do


def test_the_drift_check_is_not_vacuous(engine: Engine) -> None:
    migrate.upgrade(engine)
    drifted = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["cases"].append_column(Column("goodwill_cents", Integer))
    diff = schema_diff(engine, drifted)
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "goodwill_cents")]


def _legacy_metadata() -> MetaData:
    old = MetaData()
    for table in metadata.sorted_tables:
        if table.name not in ADDED_AFTER_BASELINE["tables"]:
            copy = table.to_metadata(old)
            copy.indexes = {i for i in copy.indexes if i.name not in ADDED_AFTER_BASELINE["indexes"]}
            for column in [c for c in copy.columns if (table.name, c.name) in ADDED_AFTER_BASELINE["columns"]]:
                copy._columns.remove(column)
                if column.primary_key:
                    copy.append_constraint(PrimaryKeyConstraint(*[c.name for c in copy.columns if c.primary_key]))
            for constraint in [c for c in copy.constraints if c.name in ADDED_AFTER_BASELINE["constraints"]]:
                name, cols = ADDED_AFTER_BASELINE["constraints"][constraint.name]
                copy.constraints.remove(constraint)
                copy.append_constraint(UniqueConstraint(*cols, name=name))
    return old


def test_a_database_from_the_old_create_all_is_stamped_then_upgraded(engine: Engine) -> None:
    _legacy_metadata().create_all(engine)
    row = {"case_id": "CASE-L1", "order_line_id": "L1", "order_id": "O1", "customer_id": "C1", "shipment_id": "S1",
           "exception_type": "late", "severity": 1, "state": "told", "shipments_in_chain": 1,
           "opened_at": _t("2026-11-02 10:00"), "first_evidence_at": _t("2026-11-02 05:00"), "evidence": "{}",
           "owner": "Care team", "last_batch": "2026-11-02T10:00:00Z"}
    with engine.begin() as conn:
        conn.execute(insert(schema.cases), [row])
    assert revision(engine) is None and "message_events" not in tables(engine)

    assert migrate.upgrade(engine) is None
    assert revision(engine) == migrate.head_revision()
    assert schema_diff(engine) == []
    assert views(engine) == VIEWS
    with engine.connect() as conn:
        assert conn.execute(select(schema.cases.c.case_id, schema.cases.c.state)).all() == [("CASE-L1", "told")]
        assert conn.execute(text("SELECT case_id, state FROM v_open_cases")).all() == [("CASE-L1", "told")]


def test_downgrade_to_base_and_up_again(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "0002")
    assert views(engine) == set() and "message_events" in tables(engine)
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    assert tables(engine) == {migrate.VERSION_TABLE} and revision(engine) is None
    migrate.upgrade(engine)
    assert revision(engine) == migrate.head_revision()
    assert schema_diff(engine) == [] and views(engine) == VIEWS


def test_a_failing_migration_leaves_the_database_as_it_was(engine: Engine, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / "0099_broken.py").write_text(
        'import sqlalchemy as sa\nfrom alembic import op\nrevision = "0099"\ndown_revision = "0017"\n'
        "branch_labels = None\ndepends_on = None\n\n"
        "def upgrade():\n    op.create_table('half_done', sa.Column('id', sa.Integer, primary_key=True))\n"
        "    raise RuntimeError('the disk filled up')\n\ndef downgrade():\n    pass\n")
    monkeypatch.setattr(migrate, "MIGRATIONS", folder)
    with pytest.raises(RuntimeError, match="disk filled up"):
        migrate.upgrade(engine)
    # One transaction: not even 0001..0017 stayed (SQLite too, through BEGIN IMMEDIATE).
    assert tables(engine) == set() and views(engine) == set()


def test_prepare_migrates_and_keeps_the_sqlite_pragmas(tmp_path: Path) -> None:
    engine = prepare(f"sqlite:///{tmp_path / 'nested' / 'history.db'}")
    assert revision(engine) == migrate.head_revision() == migrate.shipped_head()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_no_process_migrates_on_first_use_it_names_the_command(db_url: str) -> None:
    """A task, the api-server or a report against a database not yet migrated fails at once, saying
    what to run, without touching the schema; after the explicit step it works."""
    with pytest.raises(migrate.SchemaNotReady, match=r"not migrated; .*needs migration \d{4}: run "
                                                     r"`python -m lastmile migrate`") as err:
        engine_for(db_url)
    assert "postgres@" not in str(err.value) and "history.db" not in str(err.value)  # no URL, no password
    assert tables(create_engine(db_url)) == set()
    prepare(db_url)
    assert revision(engine_for(db_url)) == migrate.shipped_head()


def test_a_database_one_migration_behind_is_refused_until_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    engine = create_engine(url)
    previous = f"{int(migrate.shipped_head()) - 1:04d}"
    command.upgrade(migrate.alembic_config(url=url), previous)
    with pytest.raises(migrate.SchemaNotReady, match=f"at migration {previous}; this code needs"):
        engine_for(url)
    assert revision(engine) == previous
    prepare(url)
    assert revision(engine) == migrate.shipped_head()


def test_0008_counts_messages_confirmed_by_hand_before_it(db_url: str) -> None:
    """Before 0008, "Mark sent" left sent_at empty and the case open: no view counted the message."""
    url = db_url
    cfg = migrate.alembic_config(url=url)
    command.upgrade(cfg, "0007")
    engine = create_engine(url)
    planned, scheduled = datetime(2026, 11, 20, 14, tzinfo=UTC), datetime(2026, 11, 21, 9, tzinfo=UTC)
    with engine.begin() as conn:
        for n, (case_id, state) in enumerate((("C-open", "open"), ("C-escalated", "escalated"),
                                              ("C-resolved", "resolved"))):
            conn.execute(insert(schema.cases).values(
                case_id=case_id, order_line_id=f"L{n}", order_id="O1", customer_id="C1", shipment_id=f"S{n}",
                exception_type="late", severity=1, state=state, shipments_in_chain=1, opened_at=planned,
                first_evidence_at=planned, evidence="{}", owner="ops", last_batch="b"))
            conn.execute(insert(schema.outbox).values(
                message_key=f"{case_id}/notice/late", case_id=case_id, order_id="O1", kind="notice", state="sent",
                state_reason="confirmed by ops", customer_id="C1", subject="s", body_text="t", body_html="h",
                planned_at=planned, planned_batch="b", send_at=scheduled if case_id == "C-open" else None,
                attempts=1))
    command.upgrade(cfg, "0008")
    with engine.connect() as conn:
        sent = dict(conn.execute(select(schema.outbox.c.case_id, schema.outbox.c.sent_at)).all())
        states = dict(conn.execute(select(schema.cases.c.case_id, schema.cases.c.state)).all())
    assert utc(sent["C-open"]) == scheduled and utc(sent["C-resolved"]) == planned
    assert states == {"C-open": "told", "C-escalated": "escalated", "C-resolved": "resolved"}  # never backwards
    engine.dispose()


def test_0014_copies_what_a_carrier_is_asked_by_into_tracking_state(db_url: str) -> None:
    cfg = migrate.alembic_config(url=db_url)
    command.upgrade(cfg, "0013")
    engine = create_engine(db_url)
    created = datetime(2026, 11, 16, 15, tzinfo=UTC)
    with engine.begin() as conn:
        for n, account in enumerate(("easypost_eu", None)):
            conn.execute(insert(schema.shipments).values(
                shipment_id=f"S{n}", order_line_id=f"L{n}", order_id="O1", customer_id="C1", carrier="DHL",
                service="Express", tracking_code=f"JD{n:010d}", created_at=created, promised_date=created.date(),
                origin="DE-BERLIN", destination="FR-PARIS", dest_tz="Europe/Paris", sequence=1,
                tracking_account=account))
            conn.execute(text("INSERT INTO tracking_state (shipment_id, finished_at) VALUES (:s, NULL)"), {"s": f"S{n}"})
    command.upgrade(cfg, "0014")
    with engine.connect() as conn:
        copied = {r.shipment_id: r for r in conn.execute(select(schema.tracking_state))}
    assert [copied[s].tracking_code for s in ("S0", "S1")] == ["JD0000000000", "JD0000000001"]
    assert [copied[s].tracking_account for s in ("S0", "S1")] == ["easypost_eu", None]
    assert {(r.carrier, r.service, r.origin, r.destination, utc(r.created_at)) for r in copied.values()} == {
        ("DHL", "Express", "DE-BERLIN", "FR-PARIS", created)}
    assert all(r.finished_at is None for r in copied.values())
    engine.dispose()


def test_0015_counts_what_the_history_already_holds_then_keeps_counting(db_url: str) -> None:
    from tally_check import case, detection, kept, message, recounted, reject

    cfg = migrate.alembic_config(url=db_url)
    command.upgrade(cfg, "0014")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(insert(schema.outbox), [message(n, ("planned", "sent", "failed")[n % 3]) for n in range(9)])
        conn.execute(insert(schema.cases), [case(n, ("open", "told", "resolved")[n % 3]) for n in range(7)])
        conn.execute(insert(schema.current_detections), [detection(n, "late", n % 2 == 0) for n in range(5)])
        conn.execute(insert(schema.quarantine), [reject(n) for n in range(2)])
    command.upgrade(cfg, "0015")
    with engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET state = 'sent' WHERE state = 'planned'"))
        conn.execute(text("DELETE FROM cases WHERE state = 'open'"))
    with engine.connect() as conn:
        found = kept(conn)
        assert found == recounted(conn)
    assert found[tallies.OUTBOX_BY_STATE] == {"failed": 3, "sent": 6}
    assert found[tallies.CASES_BY_STATE] == {"resolved": 2, "told": 2}
    assert found[tallies.OPEN_DETECTIONS_BY_TYPE] == {"late": 3}
    command.downgrade(cfg, "0014")  # the triggers go with their table: writes go on without them
    with engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET state = 'planned'"))
        conn.execute(insert(schema.quarantine), [reject(9)])
    assert "tally_deltas" not in tables(engine)
    engine.dispose()


@pytest.mark.postgres
def test_0016_makes_a_history_migrated_by_0015_count_with_static_sql_pinned_to_its_schema(postgres_url: str) -> None:
    """A history upgraded to 0015 has trigger functions that EXECUTE their SQL anew at every call.
    0016 replaces them, in the history's schema, with static SQL pinned to that schema: also when
    the upgrade runs from a session whose search_path now finds a newer schema first, which gets
    no copy. The counts go on following the rows."""
    from tally_check import kept, message, recounted

    mine = postgres_url.rsplit("%3D", 1)[1]
    other = f"lastmile_other_{uuid.uuid4().hex[:8]}"
    path = f"{POSTGRES_URL}?options=-csearch_path%3D{other},{mine}"
    command.upgrade(migrate.alembic_config(url=postgres_url), "0015")
    admin = create_engine(POSTGRES_URL)

    def functions() -> dict[str, tuple[bool, list[str] | None]]:
        """The counting functions in either schema: whether each EXECUTEs its SQL, and its settings."""
        with admin.connect() as conn:
            return {f"{where}.{name}": ("EXECUTE" in source, config)
                    for where, name, source, config in conn.execute(text(
                        "SELECT n.nspname, p.proname, p.prosrc, p.proconfig FROM pg_proc p "
                        "JOIN pg_namespace n ON n.oid = p.pronamespace "
                        "WHERE p.proname LIKE 'tally_%' AND n.nspname IN (:a, :b)"), {"a": mine, "b": other})}

    before = functions()
    assert len(before) == 4 and all(dynamic and config is None for dynamic, config in before.values())
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{other}"'))
    try:
        command.upgrade(migrate.alembic_config(url=path), "0016")
        after = functions()
        assert set(after) == set(before)  # replaced where they were; nothing in `other`
        assert all(not dynamic and config == [f"search_path={mine}"] for dynamic, config in after.values())
        engine = create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(insert(schema.outbox), [message(n, ("planned", "sent")[n % 2]) for n in range(6)])
            conn.execute(text("UPDATE outbox SET state = 'failed' WHERE state = 'planned'"))
        with engine.connect() as conn:
            assert kept(conn) == recounted(conn)
            assert tallies.counts(conn, tallies.OUTBOX_BY_STATE) == {"failed": 3, "sent": 3}
        engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{other}" CASCADE'))
        admin.dispose()


def counting_triggers(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())
        return set(conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                                     "AND tgrelid::regclass::text IN ('outbox', 'cases', 'quarantine', "
                                     "'current_detections')")).scalars())


def test_every_counted_table_keeps_its_triggers_at_head(engine: Engine) -> None:
    """A later migration that rebuilds a counted table (SQLite's batch operations copy it into a new
    one) would drop its triggers without a word, and the counts would stop following the rows."""
    migrate.upgrade(engine)
    assert counting_triggers(engine) == {f"tally_{table}_{event}" for table in ("outbox", "cases", "quarantine",
                                                                                "current_detections")
                                         for event in ("insert", "update", "delete",
                                                       *(("truncate",) if engine.dialect.name == "postgresql" else ()))}


STARTER = """
import logging, sys, time
from lastmile.store.db import prepare as engine_for
from lastmile.store.migrate import current_revision
logging.basicConfig(level=logging.INFO, format="%(message)s")
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
with engine_for(sys.argv[1]).connect() as conn:
    print(current_revision(conn))
"""


def test_tasks_starting_at_once_migrate_once(db_url: str) -> None:
    """Airflow starts several tasks together: one migrates, the others wait and find it done."""
    start_at = str(time.time() + 2.5)
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, db_url, start_at], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "include")})
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _out, err in results]
    assert [out.strip() for out, _err in results] == [migrate.head_revision()] * 4
    assert sum(err.count("migrating history database") for _out, err in results) == 1
    eng = create_engine(db_url)
    assert schema_diff(eng) == [] and views(eng) == VIEWS
    eng.dispose()


def test_package_data_ships_every_migration_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["lastmile"]
    package = ROOT / "include" / "lastmile"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    files = {p for p in migrate.MIGRATIONS.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert files and files <= shipped, sorted(str(f) for f in files - shipped)


# -- the analyst views on a hand-made history -----------------------------------------------------

LATEST_RUN = "2026-11-20 14:00"


def _t(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


def _d(text_: str) -> date:
    return date.fromisoformat(text_)


def _shipment(sid: str, carrier: str, promised: str, created: str, line: str | None = None, sequence: int = 1,
              replaces: str | None = None, service: str = "Ground") -> dict[str, Any]:
    line = line or f"L-{sid}"
    return {"shipment_id": sid, "order_line_id": line, "order_id": f"O-{line}", "customer_id": "C1",
            "carrier": carrier, "service": service, "tracking_code": f"TC{sid}", "created_at": _t(created),
            "promised_date": _d(promised), "origin": "US-HOUSTON", "destination": "US-BROOKLYN",
            "dest_tz": "America/New_York", "sequence": sequence, "replaces_shipment_id": replaces,
            "tracking_account": None}


def _delivered(sid: str, at: str, offset: int = -300) -> dict[str, Any]:
    return {"scan_id": f"D-{sid}", "shipment_id": sid, "occurred_at": _t(at), "utc_offset_minutes": offset,
            "status": "delivered", "reason": None, "carrier_status": "delivered", "carrier_status_detail": "arrived",
            "message": "Delivered", "city": "Brooklyn", "country": "US", "raw": "{}", "first_seen_at": _t(at)}


def _detection(sid: str, kind: str, batch: str, evidence_at: str, window: tuple[str, str] | None = None,
               basis: str | None = None) -> dict[str, Any]:
    return {"batch_key": batch, "shipment_id": sid, "exception_type": kind, "order_line_id": f"L-{sid}",
            "severity": 1, "open": True, "first_evidence_at": _t(evidence_at), "evidence": "{}",
            "window_earliest": _d(window[0]) if window else None, "window_latest": _d(window[1]) if window else None,
            "window_basis": basis}


def _case(line: str, sid: str, kind: str, state: str, evidence_at: str, opened_at: str,
          resolved_at: str | None = None, chain: int = 1, window: tuple[str, str] | None = None) -> dict[str, Any]:
    return {"case_id": f"CASE-{line}", "order_line_id": line, "order_id": f"O-{line}", "customer_id": "C1",
            "shipment_id": sid, "exception_type": kind, "severity": 1, "state": state,
            "resolution": "delivered" if resolved_at else None, "shipments_in_chain": chain,
            "opened_at": _t(opened_at), "first_evidence_at": _t(evidence_at),
            "resolved_at": _t(resolved_at) if resolved_at else None,
            "window_earliest": _d(window[0]) if window else None, "window_latest": _d(window[1]) if window else None,
            "window_basis": "lane" if window else None, "evidence": "{}", "owner": "Care team",
            "last_batch": "2026-11-20T14:00:00Z"}


def _message(line: str, kind: str, detail: str, sent_at: str | None, window: tuple[str, str] | None = None,
             send_at: str | None = None, state: str = "sent") -> dict[str, Any]:
    planned = _t(sent_at) if sent_at else _t(LATEST_RUN)
    return {"message_key": f"CASE-{line}/{kind}/{detail}", "case_id": f"CASE-{line}", "order_id": f"O-{line}",
            "kind": kind, "state": state, "state_reason": None, "customer_id": "C1", "recipient": "ana@example.com",
            "recipient_name": "Ana", "subject": "About your order", "body_text": "...", "body_html": "...",
            "window_earliest": _d(window[0]) if window else None, "window_latest": _d(window[1]) if window else None,
            "planned_at": planned, "planned_batch": planned.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sent_at": _t(sent_at) if sent_at else None, "send_at": _t(send_at) if send_at else None,
            "transport_ref": None, "attempts": 1}


def _event(key: str, event: str, at: str, n: int, reason: str | None = None) -> dict[str, Any]:
    return {"provider_event_id": f"sg-{n}", "message_key": key, "event": event, "at": _t(at), "reason": reason}


def seed(engine: Engine) -> None:
    """UPS: late 1/4 in October, 2/4 in November (rose). USPS: 1/2 then 1/4 (fell)."""
    shipments = [
        _shipment("U1", "UPS", "2026-10-10", "2026-10-05"), _shipment("U2", "UPS", "2026-10-12", "2026-10-06"),
        _shipment("U3", "UPS", "2026-10-15", "2026-10-08"), _shipment("U4", "UPS", "2026-10-20", "2026-10-14"),
        _shipment("U5", "UPS", "2026-11-03", "2026-10-27 09:00"),
        _shipment("U6", "UPS", "2026-11-03", "2026-10-28 09:00"),
        _shipment("U7", "UPS", "2026-11-04", "2026-10-29 09:00"),
        # U6 was lost; U9 replaced it on the same order line and arrived.
        _shipment("U9", "UPS", "2026-11-12", "2026-11-08 09:00", line="L-U6", sequence=2, replaces="U6"),
        _shipment("P1", "USPS", "2026-10-09", "2026-10-03"), _shipment("P2", "USPS", "2026-10-21", "2026-10-15"),
        _shipment("P3", "USPS", "2026-11-14", "2026-11-09"), _shipment("P4", "USPS", "2026-11-02", "2026-10-28"),
        _shipment("P5", "USPS", "2026-11-18", "2026-11-12"), _shipment("P6", "USPS", "2026-11-19", "2026-11-13"),
    ]
    scans = [
        _delivered("U1", "2026-10-12 15:00"), _delivered("U2", "2026-10-11 15:00"),
        _delivered("U5", "2026-11-09 18:00"),  # local 2026-11-09: inside its window
        _delivered("U9", "2026-11-12 16:00"),  # local 2026-11-12: after the window sent for U6
        _delivered("P4", "2026-11-06 03:00"),  # 22:00 on 2026-11-05 in New York: the window's last day
    ]
    b1, b2 = "2026-11-05T10:00:00Z", "2026-11-17T07:00:00Z"
    detections = [
        _detection("U1", "late", "2026-10-11T10:00:00Z", "2026-10-11 04:00"),
        _detection("U5", "late", "2026-11-04T06:00:00Z", "2026-11-04 05:00"),
        _detection("U5", "late", "2026-11-04T11:00:00Z", "2026-11-04 05:00", ("2026-11-08", "2026-11-10"),
                   "carrier+service+lane"),
        _detection("U6", "late", b1, "2026-11-03 10:00"), _detection("U6", "lost", b1, "2026-11-03 10:00"),
        _detection("U7", "stalled", "2026-11-08T04:00:00Z", "2026-11-08 00:00"),
        _detection("U7", "stalled", "2026-11-09T04:00:00Z", "2026-11-08 00:00"),
        _detection("U9", "reshipped", "2026-11-08T10:00:00Z", "2026-11-08 09:00"),
        _detection("P1", "late", "2026-10-10T10:00:00Z", "2026-10-10 04:00"),
        _detection("P3", "late", b2, "2026-11-17 05:00", ("2026-11-18", "2026-11-21"), "carrier"),
        _detection("P4", "failed_attempt", "2026-11-02T12:00:00Z", "2026-11-02 10:00"),
    ]
    cases = [
        _case("L-U5", "U5", "late", "resolved", "2026-11-04 05:00", "2026-11-04 06:00", "2026-11-09 18:00"),
        _case("L-U6", "U9", "reshipped", "resolved", "2026-11-03 10:00", "2026-11-03 11:00", "2026-11-12 16:00",
              chain=2),
        _case("L-U7", "U7", "stalled", "escalated", "2026-11-08 00:00", "2026-11-08 04:00"),
        _case("L-P3", "P3", "late", "told", "2026-11-17 05:00", "2026-11-17 06:00",
              window=("2026-11-18", "2026-11-21")),
        _case("L-P4", "P4", "failed_attempt", "resolved", "2026-11-02 10:00", "2026-11-02 11:00", "2026-11-06 03:00"),
    ]
    messages = [
        _message("L-U5", "notice", "late", "2026-11-04 11:00", ("2026-11-08", "2026-11-10")),
        _message("L-U5", "update", "out_for_delivery@U5", "2026-11-06 09:00", ("2026-11-08", "2026-11-10")),
        _message("L-U6", "notice", "lost", "2026-11-05 10:00", ("2026-11-06", "2026-11-07")),
        _message("L-U7", "notice", "stalled", "2026-11-08 04:00", ("2026-11-10", "2026-11-12")),
        _message("L-P3", "notice", "late", "2026-11-17 07:00", ("2026-11-18", "2026-11-21"),
                 send_at="2026-11-17 13:00"),  # held for quiet hours: it reached the customer at 13:00
        _message("L-P4", "notice", "failed_attempt", "2026-11-02 12:00", ("2026-11-03", "2026-11-05")),
        _message("L-P4", "resolved", "delivered", None, state="planned"),
    ]
    events = [
        _event("CASE-L-U5/notice/late", "processed", "2026-11-04 11:00", 1),
        _event("CASE-L-U5/notice/late", "delivered", "2026-11-04 11:01", 2),
        _event("CASE-L-U5/notice/late", "open", "2026-11-04 12:30", 3),
        _event("CASE-L-U5/notice/late", "open", "2026-11-05 08:00", 4),
        _event("CASE-L-U5/update/out_for_delivery@U5", "delivered", "2026-11-06 09:01", 5),
        _event("CASE-L-U6/notice/lost", "delivered", "2026-11-05 10:01", 6),
        _event("CASE-L-U6/notice/lost", "spamreport", "2026-11-05 11:00", 7),
        _event("CASE-L-U7/notice/stalled", "deferred", "2026-11-08 04:01", 8, "mailbox busy"),
        _event("CASE-L-U7/notice/stalled", "delivered", "2026-11-08 04:30", 9),
        _event("CASE-L-P4/notice/failed_attempt", "delivered", "2026-11-02 12:01", 10),
        _event("CASE-L-P4/notice/failed_attempt", "unsubscribe", "2026-11-02 13:00", 11),
        _event("CASE-L-P3/notice/late", "bounce", "2026-11-17 13:01", 12, "550 5.1.1 mailbox unavailable"),
    ]
    as_of = _t(LATEST_RUN)
    batch = "2026-11-20T14:00:00Z"
    run_steps = [{"batch_key": batch, "step": step, "as_of": as_of, "counts": json.dumps(counts)} for step, counts in (
        ("load_orders", {"orders": 12, "quarantined": 1}),
        ("fetch_tracking[easypost-main]", {"scans_new": 40}), ("fetch_tracking[easypost-eu]", {"scans_new": 2}),
        ("detect_exceptions", {"shipments_checked": 14, "detections": 3}), ("compute_windows", {"windows_given": 1}),
        ("record_history", {"cases_changed": 2}), ("plan_messages", {"planned": 1}),
        ("send_messages", {"sent": 0, "failed": 0, "ambiguous": 0}))]
    run_steps.append({"batch_key": "2026-11-20T13:00:00Z", "step": "load_orders", "as_of": _t("2026-11-20 13:00"),
                      "counts": json.dumps({"orders": 11, "quarantined": 0})})
    health = [{"account": account, "batch_key": batch, "vendor": "easypost", "as_of": as_of, "ok": ok,
               "shipments_asked": 5, "trackers_received": 5 if ok else 0, "trackers_updated": 1, "scans_new": 2,
               "error": None if ok else "503"} for account, ok in (("easypost-main", True), ("easypost-eu", False))]
    with engine.begin() as conn:
        for table, rows in ((schema.shipments, shipments), (schema.scans, scans), (schema.detections, detections),
                            (schema.cases, cases), (schema.outbox, messages), (schema.message_events, events),
                            (schema.run_steps, run_steps), (schema.feed_health, health)):
            conn.execute(insert(table), rows)
        # The provider redelivers webhook batches: the event id keeps the second copy out.
        assert upsert(conn, schema.message_events, events[:2]) == 0


@pytest.fixture()
def history(engine: Engine) -> Engine:
    migrate.upgrade(engine)
    seed(engine)
    return engine


def rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    """Rows as plain Python: Postgres numerics as floats, dates as ISO text, like SQLite gives them."""
    def plain(v: Any) -> Any:
        if isinstance(v, Decimal):
            return float(v)
        if isinstance(v, datetime):
            return v.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        if isinstance(v, date):
            return v.isoformat()
        if isinstance(v, str) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?", v):
            return v[:16]  # SQLite's UTC text
        return v
    with engine.connect() as conn:
        return [{k: plain(v) for k, v in r.items()} for r in conn.execute(text(sql)).mappings()]


def test_late_rate_monthly_says_which_carrier_got_worse(history: Engine) -> None:
    got = rows(history, "SELECT carrier, month, shipments, delivered, late, late_rate, previous_month, "
                        "previous_late_rate, change FROM v_late_rate_monthly ORDER BY carrier, month")
    assert [(r["carrier"], r["month"], r["shipments"], r["late"], r["late_rate"]) for r in got] == [
        ("UPS", "2026-10", 4, 1, 0.25), ("UPS", "2026-11", 4, 2, 0.5),
        ("USPS", "2026-10", 2, 1, 0.5), ("USPS", "2026-11", 4, 1, 0.25)]
    november = {r["carrier"]: r for r in got if r["month"] == "2026-11"}
    assert november["UPS"]["previous_month"] == "2026-10"
    assert (november["UPS"]["previous_late_rate"], november["UPS"]["change"]) == (0.25, 0.25)
    assert (november["USPS"]["previous_late_rate"], november["USPS"]["change"]) == (0.5, -0.25)
    assert november["UPS"]["delivered"] == 2  # U5 and U9 arrived; U6 was lost, U7 is still out
    assert [r["change"] for r in got if r["month"] == "2026-10"] == [None, None]


def test_promises_kept_per_carrier_and_month(history: Engine) -> None:
    kept = rows(history, "SELECT * FROM v_promises_kept ORDER BY carrier, month")
    assert kept == [
        {"carrier": "UPS", "month": "2026-11", "windows_sent": 3, "kept": 1, "broken": 2, "pending": 0,
         "share_kept": 0.3333},
        {"carrier": "USPS", "month": "2026-11", "windows_sent": 2, "kept": 1, "broken": 0, "pending": 1,
         "share_kept": 1.0}]
    promises = {r["case_id"]: r for r in rows(history, "SELECT * FROM v_promises")}
    u5 = promises["CASE-L-U5"]
    # The update repeated the notice's window: one promise, sent twice, judged once.
    assert (u5["message_key"], u5["times_sent"], u5["outcome"], u5["basis"]) == (
        "CASE-L-U5/notice/late", 2, "kept", "carrier+service+lane")
    # U6's window was kept neither by U6 (lost) nor by its replacement U9, which came on the 12th.
    assert (promises["CASE-L-U6"]["shipment_id"], promises["CASE-L-U6"]["delivered_local_date"],
            promises["CASE-L-U6"]["outcome"]) == ("U6", "2026-11-12", "broken")
    assert promises["CASE-L-U7"]["outcome"] == "broken"  # never delivered; the 12th is over everywhere
    assert (promises["CASE-L-P3"]["outcome"], promises["CASE-L-P3"]["kept"]) == ("pending", None)
    # Delivered at 03:00 UTC on the 6th, which was still the 5th, the window's last day, in New York.
    assert (promises["CASE-L-P4"]["delivered_local_date"], promises["CASE-L-P4"]["outcome"]) == (
        "2026-11-05", "kept")


def test_exceptions_weekly_by_carrier_service_lane(history: Engine) -> None:
    got = rows(history, "SELECT * FROM v_exceptions_weekly WHERE carrier = 'UPS' AND iso_week = '2026-W44' "
                        "ORDER BY exception_type")
    assert {r["lane"] for r in got} == {"US-HOUSTON → US-BROOKLYN"}
    assert {r["week"] for r in got} == {"2026-10-26"}
    assert [(r["exception_type"], r["shipments"], r["exceptions"], r["rate"]) for r in got] == [
        ("any", 3, 3, 1.0), ("late", 3, 2, 0.6667), ("lost", 3, 1, 0.3333), ("stalled", 3, 1, 0.3333)]
    # A reshipment is counted as its own type; it does not make the new parcel an "exception".
    w45 = rows(history, "SELECT exception_type, shipments, exceptions FROM v_exceptions_weekly "
                        "WHERE carrier = 'UPS' AND iso_week = '2026-W45' ORDER BY exception_type")
    assert w45 == [{"exception_type": "any", "shipments": 1, "exceptions": 0},
                   {"exception_type": "reshipped", "shipments": 1, "exceptions": 1}]


def test_time_to_email_and_to_resolution(history: Engine) -> None:
    email = {r["case_id"]: r for r in rows(history, "SELECT * FROM v_time_to_email")}
    assert {k: v["hours_to_email"] for k, v in email.items()} == {
        "CASE-L-U5": 6.0, "CASE-L-U6": 48.0, "CASE-L-U7": 4.0, "CASE-L-P3": 8.0, "CASE-L-P4": 2.0}
    assert email["CASE-L-P3"]["first_notice_at"] == "2026-11-17 13:00"  # the quiet-hours delivery time
    assert email["CASE-L-U5"]["hours_to_detect"] == 1.0
    resolution = {r["case_id"]: r for r in rows(history, "SELECT * FROM v_time_to_resolution")}
    assert resolution["CASE-L-U5"]["hours_to_resolution"] == 133.0  # 4th 05:00 -> 9th 18:00
    assert resolution["CASE-L-U6"]["hours_open"] == 221.0
    assert resolution["CASE-L-U7"]["hours_to_resolution"] is None
    assert resolution["CASE-L-P4"]["resolved_month"] == "2026-11"


def test_reshipment_chains(history: Engine) -> None:
    assert rows(history, "SELECT order_line_id, case_id, shipments_in_chain, first_shipment_id, last_shipment_id, "
                         "delivered, resolved, days_first_shipment_to_delivery FROM v_reshipment_chains") == [
        {"order_line_id": "L-U6", "case_id": "CASE-L-U6", "shipments_in_chain": 2, "first_shipment_id": "U6",
         "last_shipment_id": "U9", "delivered": 1, "resolved": 1, "days_first_shipment_to_delivery": 15.29}]


def test_message_delivery_per_kind_and_week(history: Engine) -> None:
    got = rows(history, "SELECT * FROM v_message_delivery ORDER BY kind, week")
    assert got == [
        {"kind": "notice", "week": "2026-11-02", "iso_week": "2026-W45", "sent": 4, "delivered": 4, "bounced": 0,
         "dropped": 0, "opened": 1, "unsubscribed": 1, "spam_reports": 1, "delivery_rate": 1.0,
         "bounce_rate": 0.0, "open_rate": 0.25, "unsubscribe_rate": 0.25, "spam_rate": 0.25},
        {"kind": "notice", "week": "2026-11-16", "iso_week": "2026-W47", "sent": 1, "delivered": 0, "bounced": 1,
         "dropped": 0, "opened": 0, "unsubscribed": 0, "spam_reports": 0, "delivery_rate": 0.0,
         "bounce_rate": 1.0, "open_rate": None, "unsubscribe_rate": None, "spam_rate": None},
        {"kind": "update", "week": "2026-11-02", "iso_week": "2026-W45", "sent": 1, "delivered": 1, "bounced": 0,
         "dropped": 0, "opened": 0, "unsubscribed": 0, "spam_reports": 0, "delivery_rate": 1.0,
         "bounce_rate": 0.0, "open_rate": 0.0, "unsubscribe_rate": 0.0, "spam_rate": 0.0}]
    status = dict((r["message_key"], r["delivery_status"]) for r in rows(
        history, "SELECT message_key, delivery_status, failure_reason FROM v_messages"))
    assert status == {"CASE-L-U5/notice/late": "opened", "CASE-L-U5/update/out_for_delivery@U5": "delivered",
                      "CASE-L-U6/notice/lost": "spam_report", "CASE-L-U7/notice/stalled": "delivered",
                      "CASE-L-P3/notice/late": "bounced", "CASE-L-P4/notice/failed_attempt": "unsubscribed",
                      "CASE-L-P4/resolved/delivered": "planned"}


def test_runs_and_open_cases(history: Engine) -> None:
    runs = rows(history, "SELECT * FROM v_runs ORDER BY as_of DESC")
    assert runs[0] == {
        "batch_key": "2026-11-20T14:00:00Z", "as_of": "2026-11-20 14:00", "month": "2026-11", "iso_week": "2026-W47",
        "steps_recorded": 8, "complete": 1, "feeds": 2, "feeds_down": 1, "orders_loaded": 12,
        "orders_quarantined": 1, "scans_new": 42, "shipments_checked": 14, "detections": 3, "windows_given": 1,
        "cases_changed": 2, "messages_planned": 1, "messages_sent": 0, "messages_failed": 0,
        "messages_ambiguous": 0}
    assert (runs[1]["complete"], runs[1]["feeds"], runs[1]["orders_loaded"]) == (0, 0, 11)
    open_cases = rows(history, "SELECT case_id, state, carrier, messages_sent, age_days FROM v_open_cases "
                               "ORDER BY case_id")
    assert open_cases == [
        {"case_id": "CASE-L-P3", "state": "told", "carrier": "USPS", "messages_sent": 1, "age_days": 3.33},
        {"case_id": "CASE-L-U7", "state": "escalated", "carrier": "UPS", "messages_sent": 1, "age_days": 12.42}]


# -- the cookbook -----------------------------------------------------------------------------------

def cookbook_queries() -> list[tuple[str, str]]:
    """(title, sql) for every ```sql block in docs/analyst-cookbook.md, titled by the heading above it."""
    text_ = (ROOT / "docs" / "analyst-cookbook.md").read_text()
    out, heading = [], ""
    for part in re.split(r"(^#+ [^\n]*$|```sql\n.*?```)", text_, flags=re.M | re.S):
        if part.startswith("#"):
            heading = part.lstrip("# ").strip()
        elif part.startswith("```sql"):
            out.append((heading, part.removeprefix("```sql\n").removesuffix("```").strip().rstrip(";")))
    return out


def test_the_cookbook_has_the_promised_questions() -> None:
    titles = " | ".join(t for t, _ in cookbook_queries()).lower()
    for question in ("late rate rose", "keep our promises", "p50", "bounce rate", "reshipment chains",
                     "open cases by age"):
        assert question in titles, question


def test_every_cookbook_query_runs_and_answers(history: Engine) -> None:
    answers = {}
    for title, sql in cookbook_queries():
        assert ";" not in sql, f"{title}: one statement per block"
        answers[title] = rows(history, sql)
        assert answers[title], f"cookbook query {title!r} returned nothing on the sample history"
    rose = next(v for k, v in answers.items() if "late rate rose" in k.lower())
    assert [(r["carrier"], r["change"]) for r in rose] == [("UPS", 0.25)]
    promises = next(v for k, v in answers.items() if "keep our promises" in k.lower())
    assert [(r["carrier"], r["share_kept"]) for r in promises] == [("UPS", 0.3333), ("USPS", 1.0)]
    p50 = next(v for k, v in answers.items() if "p50" in k.lower())
    assert (p50[0]["p50_hours"], p50[0]["p95_hours"]) == (6.0, 48.0)
