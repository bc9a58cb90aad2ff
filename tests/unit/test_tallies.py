"""The whole history's counts kept by triggers as rows change: always what counting the rows gives.

Each write that ops, a step or a person with a SQL prompt can make to a counted table, on SQLite and
on the real Postgres: insert, upsert (inserting and updating), an update that moves a count and one
that does not, delete, delete everything; and folding, which must change nothing but the row count.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import MetaData, create_engine, delete, func, insert, select, text, update

from lastmile.steps.summarise import summarise
from lastmile.store import schema, tallies
from lastmile.store.db import engine_for, prepare, upsert, writing

from conftest import POSTGRES_URL
from tally_check import NOW, case, detection, kept, message, recounted, reject


def test_every_kind_of_write_keeps_the_counts_equal_to_the_rows(db_url):
    engine = engine_for(db_url)

    def holds(step: str) -> dict:
        with engine.connect() as conn:
            found, truth = kept(conn), recounted(conn)
        assert found == truth, step
        return found

    with engine.begin() as conn:
        conn.execute(insert(schema.outbox), [message(n, "planned" if n < 6 else "sent", "notice" if n % 2 else "followup")
                                             for n in range(10)])
        conn.execute(insert(schema.cases), [case(n, "open" if n < 7 else "resolved") for n in range(10)])
        conn.execute(insert(schema.current_detections), [detection(n, "late" if n < 5 else "lost", n % 3 > 0)
                                                         for n in range(10)])
        conn.execute(insert(schema.quarantine), [reject(n, "orders" if n < 8 else "shipments") for n in range(10)])
    first = holds("inserted")
    assert first[tallies.OUTBOX_BY_STATE] == {"planned": 6, "sent": 4}
    assert first[tallies.SENT_BY_KIND] == {"followup": 2, "notice": 2}
    assert first[tallies.OPEN_DETECTIONS_BY_TYPE] == {"late": 3, "lost": 3}

    with engine.begin() as conn:  # the product's upsert: new rows, and rows whose counted columns change
        upsert(conn, schema.outbox, [message(0, "sent"), message(1, "sent"), message(20, "planned")],
               update=["state"])
        upsert(conn, schema.current_detections, [detection(0, "late", False), detection(30, "damaged")],
               update=["open"])
        upsert(conn, schema.quarantine, [reject(1), reject(40, "scans")])  # a reject kept once
    holds("upserted")

    with engine.begin() as conn:
        ob, ca = schema.outbox.c, schema.cases.c
        conn.execute(update(schema.outbox).where(ob.state == "planned").values(state="sending"))
        conn.execute(update(schema.outbox).where(ob.state == "sending").values(state="sent"))
        conn.execute(update(schema.outbox).values(attempts=ob.attempts + 1))  # no count moves
        conn.execute(update(schema.outbox).where(ob.message_key == message(7, kind="notice")["message_key"])
                     .values(kind="followup"))  # a sent message's kind: the count by kind moves
        conn.execute(update(schema.cases).where(ca.case_id.in_(["CASE-O1-1", "CASE-O2-1"])).values(state="told"))
        conn.execute(delete(schema.cases).where(ca.case_id == "CASE-O9-1"))
        conn.execute(delete(schema.current_detections).where(schema.current_detections.c.exception_type == "lost"))
    holds("updated and deleted")

    with engine.begin() as conn:
        before = conn.execute(select(func.count()).select_from(schema.tally_deltas)).scalar_one()
    with writing(engine) as conn:
        tallies.fold(conn)
    with engine.connect() as conn:
        rows = conn.execute(select(schema.tally_deltas.c.name, schema.tally_deltas.c.key)).all()
    assert before > len(rows)
    assert len(rows) == len(set(rows)), "after a fold, one row per count and key"
    holds("folded")

    with engine.begin() as conn:
        for table in (schema.outbox, schema.cases, schema.current_detections, schema.quarantine):
            conn.execute(delete(table))
    assert holds("emptied") == {name: {} for name in first}
    with writing(engine) as conn:
        tallies.fold(conn)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.tally_deltas)).scalar_one() == 0


def test_the_summarys_whole_history_counts_are_what_the_rows_hold(db_url, tmp_path):
    # (that it reads them from the tallies, not the rows: test_cost_of_history's plans)
    from lastmile.config import Settings

    engine = engine_for(db_url)
    with engine.begin() as conn:
        conn.execute(insert(schema.outbox), [message(n, "sent") for n in range(3)])
        conn.execute(insert(schema.cases), [case(n, "resolved") for n in range(2)])
    settings = Settings(db_url=db_url, source="simulated", email_transport="file", out_dir=tmp_path,
                        sim_dir=tmp_path / "sim", sim_seed=7)
    story = summarise(settings, NOW)
    assert story["outbox_by_state"] == {"sent": 3}
    assert story["sent_by_kind"] == {"notice": 3}
    assert story["cases_by_state"] == {"resolved": 2}


@pytest.mark.postgres
def test_a_writer_whose_search_path_is_elsewhere_still_counts_into_its_history(postgres_url):
    """Two histories in one database (two shops, parallel tests). `mine` was migrated with a
    search_path whose first schema did not exist yet ("$user" before anyone made that schema);
    `other` is that schema, made later. A write to `mine`'s table from a session whose search_path
    finds `other` first counts into `mine`: the trigger is pinned to a schema, not to a path."""
    mine = postgres_url.rsplit("%3D", 1)[1]
    other = f"lastmile_other_{uuid.uuid4().hex[:8]}"
    path = f"{POSTGRES_URL}?options=-csearch_path%3D{other},{mine}"
    prepare(path)  # `other` does not exist yet: the tables go into `mine`
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{other}"'))
    try:
        prepare(f"{POSTGRES_URL}?options=-csearch_path%3D{other}")
        with create_engine(path).begin() as conn:  # finds other's tables first
            conn.execute(insert(schema.outbox.to_metadata(MetaData(), schema=mine)), [message(1, "sent")])
        with engine_for(postgres_url).connect() as conn:
            assert tallies.counts(conn, tallies.OUTBOX_BY_STATE) == {"sent": 1}
        with engine_for(f"{POSTGRES_URL}?options=-csearch_path%3D{other}").connect() as conn:
            assert tallies.counts(conn, tallies.OUTBOX_BY_STATE) == {}
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{other}" CASCADE'))
        admin.dispose()


def test_writers_and_folds_at_once_lose_no_count(db_url):
    """Senders moving messages while detection folds the counts: every change counted once."""
    engine = engine_for(db_url)
    with engine.begin() as conn:
        conn.execute(insert(schema.outbox), [message(n) for n in range(200)])
    errors: list[BaseException] = []

    def sender(offset: int) -> None:
        try:
            for n in range(offset, 200, 4):
                with engine.begin() as conn:
                    conn.execute(update(schema.outbox).where(
                        schema.outbox.c.message_key == message(n)["message_key"]).values(state="sent"))
        except BaseException as err:  # noqa: BLE001 -- reported below
            errors.append(err)

    def folder() -> None:
        try:
            for _ in range(20):
                with writing(engine) as conn:
                    tallies.fold(conn)
        except BaseException as err:  # noqa: BLE001 -- reported below
            errors.append(err)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)] + [threading.Thread(target=folder)
                                                                               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    with engine.connect() as conn:
        assert tallies.counts(conn, tallies.OUTBOX_BY_STATE) == {"sent": 200}
        assert kept(conn) == recounted(conn)


@pytest.mark.postgres
def test_a_truncated_table_counts_nothing(postgres_url):
    prepare(postgres_url)
    engine = engine_for(postgres_url)
    with engine.begin() as conn:
        conn.execute(insert(schema.cases), [case(n) for n in range(3)])
        conn.execute(insert(schema.outbox), [message(n) for n in range(2)])
        conn.execute(text("TRUNCATE cases"))
    with engine.connect() as conn:
        assert kept(conn) == recounted(conn)
        assert tallies.counts(conn, tallies.OUTBOX_BY_STATE) == {"planned": 2}

