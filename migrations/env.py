"""Alembic environment: runs migrations on the engine notifier.store.database hands over, SQLite in batch mode."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from notifier.store.orm import Base

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `notifier db upgrade`, which supplies the connection")
run_on(connection)
