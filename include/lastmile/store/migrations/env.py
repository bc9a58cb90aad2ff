"""Alembic environment of the exception-history database. Driven by lastmile.store.migrate: no alembic.ini.

With a connection in `config.attributes["connection"]` (how `engine_for` migrates) the migrations
run inside the caller's transaction; otherwise on a fresh engine for `sqlalchemy.url` (the CLI).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from lastmile.store.schema import metadata

config = context.config
OPTIONS: dict[str, Any] = {
    "target_metadata": metadata,
    "version_table": config.get_main_option("version_table") or "lastmile_alembic_version",
    # Batch operations: SQLite cannot ALTER most things; on Postgres they are plain ALTERs.
    "render_as_batch": True,
    "compare_type": True,
}


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
                      dialect_opts={"paramstyle": "named"}, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
