"""Engine creation and the one upsert every writer uses (SQLite and Postgres alike)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, make_url, or_, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool

from lastmile.store import migrate


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per URL per process, for a database at the newest migration (else SchemaNotReady,
    naming the command that migrates: migrations are an explicit step, see `prepare`)."""
    engine = _create(url)
    try:
        migrate.require_head(engine)
    except Exception:
        engine.dispose()
        raise
    return engine


def prepare(url: str) -> Engine:
    """Bring the history database to the newest migration (creating it if new), then its engine.

    The explicit step: `python -m lastmile migrate`, the CLI's `run`, a backtest's temporary
    database, the tests' fixtures. Safe when several processes do it at once (store.migrate)."""
    try:
        return engine_for(url)  # already at the newest migration: one small query
    except migrate.SchemaNotReady:
        pass
    engine = _create(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return engine_for(url)


def _create(url: str) -> Engine:
    """`hide_parameters`: a failing statement's error must not carry customers' names and addresses
    into a task log or an alert."""
    engine = create_engine(url, future=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        if engine.url.database and engine.url.database != ":memory:":
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    migrate.enable_wal(cur)
    cur.close()


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    update: Iterable[str] | None = None,
    only_if_newer: str | None = None,
    conflict: Sequence[str] | None = None,
) -> int:
    """Insert rows; on a key conflict update `update` columns (None: leave the row alone).

    `conflict` names the unique key that decides "the same row" (default: the primary key).

    Returns how many rows were inserted or updated.

    `only_if_newer` names a column that must be smaller in the incoming row for the update to win
    (used to keep the earliest observation of a fact).
    """
    if not rows:
        return 0
    dialect = conn.dialect.name
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect]
    keys = list(conflict) if conflict else [c.name for c in table.primary_key.columns]
    # Rows in key order: two runs upserting overlapping rows then lock them in the same order
    # (on Postgres, unsorted batches deadlock each other).
    rows = sorted(rows, key=lambda r: tuple("" if r.get(k) is None else str(r.get(k)) for k in keys))
    stmt = insert(table)
    cols = list(update or [])
    if cols:
        where = None
        if only_if_newer:
            # (a stored NULL is no observation yet: the incoming value wins)
            where = or_(table.c[only_if_newer].is_(None), table.c[only_if_newer] > stmt.excluded[only_if_newer])
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in cols}, where=where)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    # One statement executed for every row: SQLAlchemy's "insertmanyvalues" sends them as multi-row
    # VALUES pages from one cached compilation (compiling a VALUES clause per batch cost more than
    # writing it). RETURNING counts what was really written on both databases (psycopg's rowcount
    # is -1 here).
    return len(conn.execute(stmt.returning(*table.primary_key.columns), list(rows)).all())


def refresh_statistics(conn: Connection, tables: Iterable[Table]) -> None:
    """Postgres: fresh planner statistics for `tables` before a run reads all of them at once.

    After a bulk load (the shop's history, a first run's own writes) a table has none until
    autovacuum gets to it; the planner then reads every scan for each 500 parcels asked for
    (0.24 s a query at 100k shipments instead of a few ms). SQLite plans from its indexes."""
    if conn.dialect.name == "postgresql":
        names = ", ".join(conn.dialect.identifier_preparer.format_table(t) for t in tables)
        conn.execute(text(f"ANALYZE {names}"))


def utc(value: Any) -> datetime | None:
    """A datetime read back from either database, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def batch_key_for(as_of: datetime) -> str:
    """A run's key: its `as_of` in UTC. The same logical instant always gets the same key."""
    return as_of.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


log = logging.getLogger("lastmile")


def masked_url(url: str) -> str:
    """A database URL fit for a log, a summary or XCom: the password replaced by ***."""
    from lastmile.core.privacy import mask_url

    try:
        return mask_url(make_url(url).render_as_string(hide_password=True)) or ""
    except Exception:  # noqa: BLE001 -- not a URL we can parse: show nothing of it
        return "(unparseable database URL)"


# Names of the history's locks (Postgres advisory locks keyed by the history's schema, see
# migrate.advisory_key; a lock file beside a SQLite database).
LOCK_NAMES = ("history", "send")


@lru_cache(maxsize=8)
def _immediate_engine(url: str) -> Engine:
    """SQLite transactions that take the write lock when they begin.

    A deferred transaction that reads, then writes after another process committed, fails at once
    with "database is locked" (busy_timeout cannot help it); taking the lock first makes a second
    writer wait its turn instead.
    """
    engine = create_engine(url, poolclass=NullPool, hide_parameters=True, connect_args={"timeout": 120})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we open transactions ourselves
        dbapi_conn.execute("PRAGMA busy_timeout=120000")
        migrate.enable_wal(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the history's write lock from its first statement to its commit.

    Steps that read the history and write what follows from it (cases, the outbox) use it, so two
    overlapping runs take turns instead of both acting on the same snapshot.
    """
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with _immediate_engine(str(engine.url)).begin() as conn:
            yield conn
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": migrate.advisory_key(conn, "history")})
        yield conn


class Busy(RuntimeError):
    """Another run holds a lock this step needs."""


@contextlib.contextmanager
def held(engine: Engine, name: str, wait_seconds: float) -> Iterator[None]:
    """Hold a named lock for a whole step, across its transactions; released when the process dies.

    Postgres: a session advisory lock on a connection kept for the step. SQLite: an exclusive
    flock on `<database>.<name>.lock`. Raises Busy when another holder keeps it for `wait_seconds`.
    """
    deadline = time.monotonic() + wait_seconds
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            if name not in LOCK_NAMES:
                raise ValueError(f"unknown lock {name!r}")
            key = migrate.advisory_key(conn, name)
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                conn.rollback()
                if time.monotonic() >= deadline:
                    raise Busy(f"another run holds the {name} lock")
                time.sleep(0.2)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # one process only
        return
    path = Path(f"{database}.{name}.lock")
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"another run holds the {name} lock") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
