"""Engine creation and the one upsert every writer uses (SQLite and Postgres alike)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite

from lastmile import migrate


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per URL per process; migrates the schema to the newest version on first use."""
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        if engine.url.database and engine.url.database != ":memory:":
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate.upgrade(engine)  # Alembic itself loads here, when a task first touches the database
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # the DAG's tasks and a reader can work side by side
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    update: Iterable[str] | None = None,
    only_if_newer: str | None = None,
) -> int:
    """Insert rows; on a primary-key conflict update `update` columns (None: leave the row alone).

    Returns how many rows were inserted or updated.

    `only_if_newer` names a column that must be smaller in the incoming row for the update to win
    (used to keep the earliest observation of a fact).
    """
    if not rows:
        return 0
    dialect = conn.dialect.name
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[dialect]
    keys = [c.name for c in table.primary_key.columns]
    total = 0
    for start in range(0, len(rows), 500):
        stmt = insert(table).values(list(rows[start : start + 500]))
        cols = list(update or [])
        if cols:
            where = None
            if only_if_newer:
                where = table.c[only_if_newer] > stmt.excluded[only_if_newer]
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={c: stmt.excluded[c] for c in cols}, where=where)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        # RETURNING counts what was really written on both databases (psycopg's rowcount is -1 here).
        total += len(conn.execute(stmt.returning(*table.primary_key.columns)).all())
    return total


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
