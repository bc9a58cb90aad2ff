"""Sequences of runs that must never jam the pipeline, move a case backwards, send twice or leak.

Each test drives the production step functions (as the DAG and the CLI do) through a sequence of
runs on a tiny scripted shop, on SQLite and on the real Postgres.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from lastmile.config import Settings
from lastmile.reporting.summary import format_summary
from lastmile.steps import pipeline
from lastmile.store import schema
from lastmile.store.db import prepare

from tally_check import assert_tallies_hold
from tiny_shop import START, TinyShop, day, run


def outbox_keys(settings: Settings) -> set[str]:
    with prepare(settings.db_url).connect() as conn:
        return set(conn.execute(select(schema.outbox.c.message_key)).scalars())


def case_states(settings: Settings) -> dict[str, tuple]:
    c = schema.cases.c
    with prepare(settings.db_url).connect() as conn:
        return {r.case_id: (r.state, r.exception_type, r.shipment_id, r.resolution)
                for r in conn.execute(select(c.case_id, c.state, c.exception_type, c.shipment_id, c.resolution))}


def scripted(shop: TinyShop) -> None:
    """O1-1: a failed attempt, delivered, reshipped (damaged on arrival), delivered again.
    O2-1: late, then delivered. O3-1: an uneventful delivery."""
    shop.scan(shop.current("O1-1"), "in_transit", day(-2))
    shop.scan(shop.current("O1-1"), "failed_attempt", day(0) - timedelta(hours=3))
    shop.scan(shop.current("O1-1"), "delivered", day(1) - timedelta(hours=3))
    shop.ship("O1-1", 2)
    shop.scan(shop.current("O1-1"), "in_transit", day(3) - timedelta(hours=3))
    shop.scan(shop.current("O1-1"), "delivered", day(4) - timedelta(hours=3))
    shop.scan(shop.current("O2-1"), "in_transit", day(-2))
    shop.scan(shop.current("O2-1"), "in_transit", day(1))
    shop.scan(shop.current("O2-1"), "delivered", day(3) - timedelta(hours=2))
    shop.scan(shop.current("O3-1"), "in_transit", day(-2))
    shop.scan(shop.current("O3-1"), "delivered", day(0) - timedelta(hours=2))
    shop.write()


def test_a_case_that_comes_back_to_an_earlier_state_never_jams_the_history(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop")
    scripted(shop)
    settings = shop.settings(db_url, tmp_path / "out")
    for n in range(0, 7):
        run(settings, shop, day(n))
    ev = schema.case_events.c
    with prepare(db_url).connect() as conn:
        resolved = conn.execute(select(ev.batch_key).where(ev.case_id == "CASE-O1-1", ev.event == "resolved")
                                .order_by(ev.batch_key)).scalars().all()
    assert len(resolved) == 2, "delivered, reshipped, delivered again: two resolutions, each in its own batch"
    assert case_states(settings)["CASE-O1-1"][0] == "resolved"
    assert {"CASE-O1-1/notice/failed_attempt", "CASE-O1-1/notice/reshipped-2"} <= outbox_keys(settings)


def test_runs_in_any_order_end_as_a_straight_run(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop")
    scripted(shop)
    straight = shop.settings(f"sqlite:///{tmp_path / 'straight.db'}", tmp_path / "straight")
    d1, d2, d3 = day(0), day(2), day(4)
    for as_of in (d1, d2, d3):
        run(straight, shop, as_of)

    settings = shop.settings(db_url, tmp_path / "out")
    for as_of in (d1, d2, d3, d1, d3, d2, d3):
        run(settings, shop, as_of)
    after_reruns = (outbox_keys(settings), case_states(settings))
    for as_of in (d1, d1 + timedelta(hours=12), d2, d2 + timedelta(hours=12), d3):  # a backfill over D1..D3
        run(settings, shop, as_of)
    assert outbox_keys(settings) == outbox_keys(straight) == after_reruns[0]
    assert case_states(settings) == case_states(straight) == after_reruns[1]
    assert outbox_keys(straight), "the script produces e-mails"
    assert_tallies_hold(db_url)  # the whole history's counts, through every rerun and backfill


def test_an_older_run_neither_moves_cases_back_nor_sends(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop")
    scripted(shop)
    settings = shop.settings(db_url, tmp_path / "out")
    run(settings, shop, day(4))
    before = (outbox_keys(settings), case_states(settings))
    summary = run(settings, shop, day(0))  # an earlier date after a later one
    assert (outbox_keys(settings), case_states(settings)) == before
    assert summary["emails_sent_this_run"] == 0
    with prepare(db_url).connect() as conn:  # it says so, and current detections stay the newest run's
        counts = conn.execute(select(schema.run_steps.c.counts).where(
            schema.run_steps.c.batch_key == "2026-11-02T14:00:00Z",
            schema.run_steps.c.step == "detect_exceptions")).scalar_one()
        assert '"superseded_by": "2026-11-06T14:00:00Z"' in counts
        assert set(conn.execute(select(schema.current_detections.c.batch_key)).scalars()) <= {
            "2026-11-06T14:00:00Z"}


def test_a_run_that_finds_no_exception_is_a_quiet_success(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop", lines=2)
    for line in ("O1-1", "O2-1"):
        shop.scan(shop.current(line), "in_transit", day(-2))
    shop.write()
    settings = shop.settings(db_url, tmp_path / "out")
    early = run(settings, shop, START - timedelta(days=30))  # before the shop had any order: a new shop
    assert early["exceptions_all_by_type"] == {} and early["emails_sent_this_run"] == 0
    calm = run(settings, shop, day(-1))  # parcels moving, nothing wrong
    assert calm["exceptions_all_by_type"] == {} and calm["emails_sent_this_run"] == 0
    assert "cases                none" in format_summary(calm)


def test_a_case_whose_order_vanished_is_set_aside_and_the_others_are_told(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop")
    scripted(shop)
    settings = shop.settings(db_url, tmp_path / "out")
    for step in ("load_orders",):
        getattr(pipeline, step)(settings, day(2))
    from tiny_shop import store_scans

    store_scans(settings, shop.scans, day(2))
    for step in ("detect_exceptions", "compute_windows", "record_history"):
        getattr(pipeline, step)(settings, day(2))
    with prepare(db_url).begin() as conn:  # a history from before parents were checked
        conn.execute(delete(schema.orders).where(schema.orders.c.order_id == "O1"))
    counts = pipeline.plan_messages(settings, day(2))
    assert counts["cases_without_records"] == 1
    with prepare(db_url).connect() as conn:
        q = schema.quarantine.c
        assert conn.execute(select(q.record_id, q.field).where(q.source == "cases")).all() == [
            ("CASE-O1-1", "order_id")]
        assert conn.execute(select(schema.outbox.c.case_id)).scalars().all() == ["CASE-O2-1"]


def test_the_run_summary_never_shows_the_database_password(postgres_url, tmp_path):
    url = postgres_url.replace("postgres@", "postgres:s3cret-pw@")
    shop = TinyShop(tmp_path / "shop", lines=1)
    settings = shop.settings(url, tmp_path / "out")
    summary = run(settings, shop, day(0))
    text = format_summary(summary)
    assert "s3cret-pw" not in text and "s3cret-pw" not in repr(summary) and "s3cret-pw" not in repr(settings)
    assert "postgres:***@" in summary["history_db"]


# -- two senders at once ----------------------------------------------------------------------------

@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_senders_at_once_send_every_message_once(database, tmp_path, sendgrid_server, request):
    from lastmile.email.sendgrid_client import SendGridConfig

    db_url = f"sqlite:///{tmp_path / 'history.db'}" if database == "sqlite" else request.getfixturevalue(
        "postgres_url")
    shop = TinyShop(tmp_path / "shop", lines=12)
    for n in range(1, 13):
        shop.scan(shop.current(f"O{n}-1"), "failed_attempt", day(0) - timedelta(hours=3))
    shop.write()
    settings = shop.settings(db_url, tmp_path / "out")
    settings = Settings(**{**settings.__dict__, "email_transport": "sendgrid"})
    pipeline.load_orders(settings, day(0))
    from tiny_shop import store_scans

    store_scans(settings, shop.scans, day(0))
    for step in ("detect_exceptions", "compute_windows", "record_history", "plan_messages"):
        getattr(pipeline, step)(settings, day(0))
    sendgrid_server.script(("hang", 0.4), *([202] * 30))  # the first sender is slow: the runs overlap
    config = SendGridConfig(api_key=sendgrid_server.api_key, host=sendgrid_server.url, timeout=5.0, max_wait=0.05)
    results: list[dict] = []
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            results.append(pipeline.send_messages(settings, day(0), sendgrid=config))
        except BaseException as err:  # noqa: BLE001 -- reported below
            errors.append(err)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    sent = Counter(r.body["personalizations"][0]["custom_args"]["message_key"] for r in sendgrid_server.accepted)
    assert len(sent) == 12 and set(sent.values()) == {1}, "every message reached SendGrid exactly once"
    assert sorted(r["sent"] for r in results) == [0, 12]
    with prepare(db_url).connect() as conn:
        states = Counter(conn.execute(select(schema.outbox.c.state)).scalars())
    assert states == Counter({"sent": 12})


def test_a_sender_that_cannot_get_the_lock_says_so_and_sends_nothing(tmp_path, caplog):
    from lastmile.store.db import held

    shop = TinyShop(tmp_path / "shop", lines=2)
    shop.scan(shop.current("O1-1"), "failed_attempt", day(0) - timedelta(hours=3))
    shop.write()
    settings = shop.settings(f"sqlite:///{tmp_path / 'history.db'}", tmp_path / "out")
    settings = Settings(**{**settings.__dict__, "send_lock_wait_seconds": 0.3})
    pipeline.load_orders(settings, day(0))
    from tiny_shop import store_scans

    store_scans(settings, shop.scans, day(0))
    for step in ("detect_exceptions", "compute_windows", "record_history", "plan_messages"):
        getattr(pipeline, step)(settings, day(0))
    with held(prepare(settings.db_url), "send", 1):  # another run is sending
        counts = pipeline.send_messages(settings, day(0))
    assert counts["busy"] is True and counts["sent"] == 0
    assert "another run is sending e-mail right now" in caplog.text
    assert pipeline.send_messages(settings, day(0))["sent"] == 1  # the next run sends it


# -- any sequence of carrier events ------------------------------------------------------------------

EVENT_NAMES = ["nothing", "in_transit", "out_for_delivery", "failed_attempt", "address_problem", "damaged",
               "delivered", "returned", "reship"]
LINE_LIVES = st.lists(st.lists(st.sampled_from(EVENT_NAMES), min_size=6, max_size=6), min_size=3, max_size=3)
RUN_ORDERS = st.lists(st.integers(min_value=0, max_value=5), min_size=6, max_size=9)


def _drive(db_url: str, folder: Path, lives: list[list[str]], order: list[int], monkeypatch) -> None:
    shop = TinyShop(folder / "shop", lines=len(lives))
    for n, life in enumerate(lives, start=1):
        line = f"O{n}-1"
        for d, event in enumerate(life):
            at = day(d) - timedelta(hours=5)
            if event == "reship":
                shop.ship(line, d)
            elif event != "nothing":
                shop.scan(shop.current(line), event, at)
    shop.write()
    settings = shop.settings(db_url, folder / "out")
    decided: list[tuple[str, str]] = []
    from lastmile.steps import plan_messages

    real_decide = plan_messages.decide

    def recording(facts, as_of, batch, brand):
        decision = real_decide(facts, as_of, batch, brand)
        if decision.message is not None:
            decided.append((batch, decision.message["message_key"]))
        return decision

    monkeypatch.setattr(plan_messages, "decide", recording)
    # Forward day by day, then the drawn order (reruns, earlier dates after later ones).
    for d in [*range(6), *order]:
        run(settings, shop, day(d))
    planned_twice = [k for k, n in Counter(k for _, k in decided).items() if n > 1]
    assert planned_twice == [], f"message keys planned twice: {planned_twice}"
    assert len(outbox_keys(settings)) == len(decided)
    assert_tallies_hold(db_url)


@hyp_settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(lives=LINE_LIVES, order=RUN_ORDERS)
def test_any_sequence_of_carrier_events_never_fails_nor_plans_a_key_twice(lives, order, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prop")
    with pytest.MonkeyPatch.context() as monkeypatch:
        _drive(f"sqlite:///{folder / 'history.db'}", folder, lives, order, monkeypatch)


@pytest.mark.postgres
@hyp_settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(lives=LINE_LIVES, order=RUN_ORDERS)
def test_any_sequence_of_carrier_events_on_postgres(lives, order, tmp_path_factory):
    import uuid

    from sqlalchemy import create_engine, text

    from conftest import POSTGRES_URL

    schema_name = f"lastmile_prop_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    try:
        folder = tmp_path_factory.mktemp("prop-pg")
        with pytest.MonkeyPatch.context() as monkeypatch:
            _drive(f"{POSTGRES_URL}?options=-csearch_path%3D{schema_name}", folder, lives, order, monkeypatch)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()


def test_the_scripted_shop_is_not_vacuous(tmp_path):
    """The sequences above mean something only if the script produces notices and resolutions."""
    shop = TinyShop(tmp_path / "shop")
    scripted(shop)
    settings = shop.settings(f"sqlite:///{tmp_path / 'h.db'}", tmp_path / "out")
    for n in range(0, 6):
        run(settings, shop, day(n))
    kinds = Counter(k.split("/")[1] for k in outbox_keys(settings))
    assert kinds["notice"] >= 3 and kinds["resolved"] >= 2, kinds


# -- bad records in the shop's export ----------------------------------------------------------------

def _failed_attempts_everywhere(shop: TinyShop) -> None:
    for n in range(1, shop.lines + 1):
        shop.scan(shop.current(f"O{n}-1"), "failed_attempt", day(0) - timedelta(hours=3))


def _quarantined(settings: Settings) -> set[tuple[str, str, str, int]]:
    q = schema.quarantine.c
    with prepare(settings.db_url).connect() as conn:
        return set(conn.execute(select(q.source, q.record_id, q.field, q.row_no)).tuples())


def _told(settings: Settings) -> set[str]:
    with prepare(settings.db_url).connect() as conn:
        return set(conn.execute(select(schema.outbox.c.case_id).where(schema.outbox.c.state == "sent")).scalars())


@pytest.mark.parametrize("damage", ["order removed", "line quantity 0", "order without offset",
                                    "customer without name", "customer in Mars/Olympus"])
def test_one_orphan_or_quarantined_parent_never_silences_the_others(damage, db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop")
    _failed_attempts_everywhere(shop)
    rows = shop.rows
    if damage == "order removed":
        rows["orders"] = [o for o in rows["orders"] if o["order_id"] != "O2"]
    elif damage == "line quantity 0":
        rows["order_lines"][1]["quantity"] = 0
    elif damage == "order without offset":
        rows["orders"][1]["placed_at"] = "2026-10-30 14:00:00"
    elif damage == "customer without name":
        rows["customers"][1]["name"] = ""
    else:
        rows["customers"][1]["tz"] = "Mars/Olympus"
    shop.write()
    settings = shop.settings(db_url, tmp_path / "out")
    run(settings, shop, day(0))
    assert _told(settings) == {"CASE-O1-1", "CASE-O3-1"}, "everyone else is told"
    shipments = {r for r in _quarantined(settings) if r[0] == "shipments"}
    # The cascade names the nearest parent: the line (itself quarantined, or orphaned).
    assert shipments == {("shipments", "SO2-1-1", "order_line_id", 2)}, "quarantined with its file row"
    run(settings, shop, day(1))  # and the next run goes on too
    assert "CASE-O2-1" not in _told(settings)


def test_a_tracking_code_claimed_twice_is_quarantined_not_a_crash(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop")
    _failed_attempts_everywhere(shop)
    shop.rows["shipments"][2]["tracking_code"] = shop.rows["shipments"][0]["tracking_code"]
    shop.write()
    settings = shop.settings(db_url, tmp_path / "out")
    run(settings, shop, day(0))
    assert ("shipments", "SO3-1-1", "tracking_code", 3) in _quarantined(settings)
    assert _told(settings) == {"CASE-O1-1", "CASE-O2-1"}


def test_values_wider_than_the_history_are_quarantined_before_any_write(db_url, tmp_path):
    shop = TinyShop(tmp_path / "shop")
    _failed_attempts_everywhere(shop)
    shop.rows["orders"][0]["currency"] = "EURO"
    shop.rows["shipments"][1]["service"] = "Ground" * 20  # 120 characters in a 64-character column
    shop.write()
    settings = shop.settings(db_url, tmp_path / "out")
    run(settings, shop, day(0))
    bad = _quarantined(settings)
    assert ("orders", "O1", "currency", 1) in bad and ("shipments", "SO2-1-1", "service", 2) in bad
    assert _told(settings) == {"CASE-O3-1"}


def test_three_copies_of_an_order_and_empty_ids_each_keep_a_quarantine_row(tmp_path):
    shop = TinyShop(tmp_path / "shop")
    shop.rows["orders"] += [dict(shop.rows["orders"][0]), dict(shop.rows["orders"][0])]
    shop.rows["order_lines"] += [{**shop.rows["order_lines"][0], "order_line_id": ""} for _ in range(2)]
    shop.write()
    settings = shop.settings(f"sqlite:///{tmp_path / 'h.db'}", tmp_path / "out")
    run(settings, shop, day(0))
    bad = _quarantined(settings)
    assert {r for r in bad if r[0] == "orders"} == {("orders", "O1", "order_id", 4), ("orders", "O1", "order_id", 5)}
    assert {r for r in bad if r[0] == "order_lines"} == {("order_lines", "(empty)", "order_line_id", 4),
                                                         ("order_lines", "(empty)", "order_line_id", 5)}


@pytest.fixture(scope="module")
def sim_600(tmp_path_factory) -> Path:
    from lastmile.sim import simulator

    folder = tmp_path_factory.mktemp("sim-600")
    simulator.ensure(folder, seed=7, n_orders=600)
    return folder


def test_two_whole_runs_of_the_same_instant_take_turns(db_url, tmp_path, sim_600):
    """A CLI run beside a DAG run: both finish, every e-mail is written once (Postgres deadlocked here)."""
    settings = Settings(db_url=db_url, source="simulated", email_transport="file", out_dir=tmp_path,
                        sim_dir=sim_600, sim_seed=7, sim_orders=600)
    as_of = datetime(2026, 11, 20, 14, tzinfo=UTC)
    errors: list[BaseException] = []

    def whole_run() -> None:
        try:
            pipeline.run_all(settings, as_of)
        except BaseException as err:  # noqa: BLE001 -- reported below
            import traceback

            errors.append("".join(traceback.format_exception(err))[-6000:])

    threads = [threading.Thread(target=whole_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert errors == []
    with prepare(db_url).connect() as conn:
        states = Counter(conn.execute(select(schema.outbox.c.state)).scalars())
    assert states["sent"] > 0 and set(states) == {"sent"}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == states["sent"]
    assert_tallies_hold(db_url)


@pytest.mark.postgres
def test_two_histories_in_one_postgres_database_do_not_share_locks(postgres_url, tmp_path):
    """Advisory locks are per database: two shops' histories (or parallel runs) in their own schemas
    must not wait on each other, while two writers or senders of one history still do."""
    import uuid

    from sqlalchemy import create_engine, text

    from lastmile.store.db import Busy, held, writing
    from lastmile.store.migrate import advisory_key

    from conftest import POSTGRES_URL

    def taken_at_once(url: str, name: str) -> bool:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                return conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                    {"k": advisory_key(conn, name)}).scalar()
        finally:
            engine.dispose()

    other = f"lastmile_test_{uuid.uuid4().hex[:8]}"
    other_url = f"{POSTGRES_URL}?options=-csearch_path%3D{other}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{other}"'))
    try:
        first, second = prepare(postgres_url), prepare(other_url)  # each migrated under its own lock
        with writing(first):
            assert taken_at_once(other_url, "history")  # the other history writes at once
            assert not taken_at_once(postgres_url, "history")  # this history's second writer waits
        with held(first, "send", 1):
            with held(second, "send", 0.5):  # the other history's sender goes at once
                pass
            with pytest.raises(Busy):
                with held(prepare(postgres_url), "send", 0.5):  # this history's second sender waits
                    pass
        # A search_path naming no schema that exists would lock nothing: refused, not "busy".
        nowhere = create_engine(f"{POSTGRES_URL}?options=-csearch_path%3Dno_such_schema_{other}")
        with pytest.raises(RuntimeError, match="names no schema that exists"):
            with held(nowhere, "send", 0.5):
                pass
        nowhere.dispose()
        second.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{other}" CASCADE'))
        admin.dispose()


def test_a_record_rejected_every_hour_is_warned_about_once(db_url, caplog):
    """A feed that keeps returning the same broken tracker: quarantined once, one warning, then a
    single line per run, so the hourly log still shows at a glance what is new."""
    import logging
    from datetime import UTC, datetime

    from lastmile.core.rejections import Rejection
    from lastmile.store.db import writing
    from lastmile.store.quarantine import store_rejections

    broken = Rejection.of("easypost", "EZ1000000001", "status", "tracker payload is missing status", {"id": "trk_1"})
    fresh = Rejection.of("easypost", "EZ1000000002", "status", "tracker payload is missing status", {"id": "trk_2"})
    engine = prepare(db_url)
    caplog.set_level(logging.INFO, logger="lastmile")
    for hour, rejections in enumerate(([broken], [broken], [broken, fresh])):
        with writing(engine) as conn:
            store_rejections(conn, rejections, datetime(2026, 11, 20, 10 + hour, tzinfo=UTC))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("EZ1000000001" in w for w in warnings) == 1 and sum("EZ1000000002" in w for w in warnings) == 1
    assert sum("rejected again as before" in r.getMessage() for r in caplog.records) == 2
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(schema.quarantine)).scalar_one() == 2
