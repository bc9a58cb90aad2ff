"""Run the history schema's Alembic migrations: an explicit step, never on a process's first use.

`python -m lastmile migrate` (the demo, compose's `airflow-init`, the tests' fixtures) runs them;
every other process only checks that the database is at the newest migration (`require_head`,
one small query, Alembic not even imported) and otherwise fails naming the command to run.

`upgrade(engine)` brings any database to the newest migration: an empty one, one at an older
migration, or one built by the old `metadata.create_all` (stamped as the baseline first). It is
safe when several Airflow tasks start at once: on SQLite the migration runs in one
`BEGIN IMMEDIATE` transaction (the second process waits, then finds the work done); on Postgres
under a transaction-scoped advisory lock keyed by the history's schema (`advisory_key`).

Authoring: `python -m lastmile.store.migrate --url URL revision --autogenerate --rev-id 0004 -m "..."`
(any `alembic` command; see docs/history-schema.md).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("lastmile")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Not Alembic's default name: the history may share a Postgres database with Airflow's own metadata.
VERSION_TABLE = "lastmile_alembic_version"
BASELINE = "0001"  # exactly the tables the old `metadata.create_all` built
LEGACY_MARKER = "cases"  # present without VERSION_TABLE: a database from before migrations
_SQLITE_WAIT_SECONDS = 120


def advisory_key(conn: Connection, name: str) -> int:
    """The Postgres advisory-lock key of the history's lock `name` (migrate, history, send).

    Advisory locks are per database. Keyed by the schema the history's tables are found in through
    the connection's search_path (else the schema they will be created in), two histories in one
    database (two shops, or parallel test runs, each in its own schema) never wait on each other,
    while every process working on one history computes the same key.
    """
    found = conn.execute(text(
        "SELECT COALESCE((SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = to_regclass(:version)),"
        " (SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = to_regclass(:legacy)),"
        " current_schema())"), {"version": VERSION_TABLE, "legacy": LEGACY_MARKER}).scalar()
    if found is None:  # a lock on NULL is no lock at all
        raise RuntimeError("the history database's search_path names no schema that exists: "
                           "create the schema, or fix the connection's search_path")
    return int.from_bytes(hashlib.sha256(f"{found}:lastmile:{name}".encode()).digest()[:8], "big", signed=True)


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic Config for the package's migrations folder; no alembic.ini involved."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolation
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


class SchemaNotReady(RuntimeError):
    """The history database is not at the migration this code needs: nothing runs against it."""

    def __init__(self, found: str | None, wanted: str) -> None:
        at = f"at migration {found}" if found else "not migrated"
        super().__init__(f"the history database is {at}; this code needs migration {wanted}: run "
                         f"`python -m lastmile migrate` (docker compose: the airflow-init service)")
        self.found, self.wanted = found, wanted


def shipped_head() -> str:
    """The newest migration shipped, from the migration files' names (`<rev>_<slug>.py`; revisions
    are numbered), so a check needs no Alembic."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def require_head(engine: Engine) -> None:
    """Fail with SchemaNotReady unless the database is at the newest migration."""
    wanted = shipped_head()
    with engine.connect() as conn:
        found = (conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
                 if inspect(conn).has_table(VERSION_TABLE) else None)
    if found != wanted:
        raise SchemaNotReady(found, wanted)


def head_revision() -> str:
    """The newest migration shipped with the package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, f"no migrations found in {MIGRATIONS}"
    return head


def current_revision(conn: Connection) -> str | None:
    """The migration the database is at (None: never migrated)."""
    from alembic.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def upgrade(engine: Engine) -> str | None:
    """Migrate the database to head; returns the revision it started from (None: empty or legacy)."""
    from alembic import command

    head = head_revision()
    with engine.connect() as conn:
        start = current_revision(conn)
    if start == head:
        return start
    migrator = _migration_engine(engine)
    try:
        with migrator.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(conn, "migrate")})
            # Another process may have migrated while this one waited for the lock.
            start = current_revision(conn)
            if start == head:
                return start
            cfg = alembic_config(conn)
            if start is None and inspect(conn).has_table(LEGACY_MARKER):
                log.warning("history database %s predates migrations: stamping it as %s, then upgrading",
                            engine.url.render_as_string(hide_password=True), BASELINE)
                command.stamp(cfg, BASELINE)
            log.info("migrating history database from %s to %s", start or "nothing", head)
            command.upgrade(cfg, "head")
    finally:
        if migrator is not engine:
            migrator.dispose()
    return start


def _migration_engine(engine: Engine) -> Engine:
    """An engine whose transactions really hold the database: SQLite's DDL is only atomic this way."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine  # Postgres: transactional DDL plus the advisory lock; in-memory: one process only
    migrator = create_engine(engine.url, poolclass=NullPool,
                             connect_args={"timeout": _SQLITE_WAIT_SECONDS})

    @event.listens_for(migrator, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not open or commit transactions itself
        enable_wal(dbapi_conn)

    @event.listens_for(migrator, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock first: a second migrator waits here

    return migrator


def enable_wal(cur: Any, wait_seconds: float = 30.0) -> None:
    """WAL mode, so the DAG's tasks and a reader work side by side. Switching a new database to WAL
    needs it to itself, and SQLite answers "locked" at once (no busy wait) while another process
    is doing the same: try again for a while."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    """`alembic` for the history database: any alembic command, against --url or LASTMILE_DB_URL."""
    from alembic.config import CommandLine

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--url", default=None)
    known, rest = pre.parse_known_args(argv)
    url = known.url
    if url is None:
        from lastmile.config import Settings

        url = Settings.from_env().db_url
    cli = CommandLine(prog="python -m lastmile.store.migrate [--url URL]")
    options = cli.parser.parse_args(rest)
    if not hasattr(options, "cmd"):
        cli.parser.error("too few arguments")
    cfg = alembic_config(url=url)
    cfg.cmd_opts = options
    cli.run_cmd(cfg, options)


if __name__ == "__main__":
    main()
