"""Database engines (SQLite and PostgreSQL, async) and schema migrations via Alembic."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from notifier import hints
from notifier.errors import NotifierError

DEFAULT_DATABASE_URL = "sqlite:///notifier.db"
# Execution option marking a read-only unit of work: on SQLite it begins deferred, not IMMEDIATE.
READ_ONLY = "notifier_read_only"
SQLITE_BUSY_TIMEOUT_MS = 5000
# After a checkpoint, the WAL file is cut back to this size instead of keeping its largest size
# for ever (on a small volume, that size is the free space the next burst needs).
SQLITE_JOURNAL_SIZE_LIMIT = 16 * 2**20


class DatabaseError(NotifierError):
    """The database cannot be used as configured."""


class SchemaError(DatabaseError):
    """The database schema is not at the revision this version of notifier needs."""


def async_url(url: str) -> str:
    """Plain SQLAlchemy URLs, as users write them, with the async driver we ship filled in."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+aiosqlite"):
            raise DatabaseError(f"SQLite URLs use the built-in driver; drop {parsed.drivername!r}")
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise DatabaseError(f"PostgreSQL URLs use asyncpg; drop {parsed.drivername!r}")
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise DatabaseError(f"unsupported database {backend!r}: use sqlite:///PATH or postgresql://…")


def display_url(url: str) -> str:
    """The URL as the user wrote it: password hidden, our async driver name left out."""
    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine with the settings this daemon's guarantees depend on.

    SQLite: WAL so readers never block the writer, its file bounded (journal_size_limit); synchronous=FULL because under WAL with
    NORMAL a commit can roll back after power loss, which for the outbox means a duplicate
    email; foreign keys on; a busy timeout; and BEGIN IMMEDIATE, so a transaction that reads
    then writes waits for the lock instead of failing with SQLITE_BUSY half-way.
    """
    engine = create_async_engine(async_url(url), **kwargs)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise DatabaseError(
                    f"the folder {parent} of database {database} does not exist: create it, writable "
                    "by the user that runs notifier, or fix [database] url"
                )
        _sqlite_settings(engine.sync_engine)
    return engine


def make_sqlite_worker_engine(engine: AsyncEngine) -> Engine:
    """A synchronous engine on the same SQLite database as `engine`, with the same settings, for
    one worker thread: a batch of statements run there costs one hand-off to the thread, where
    aiosqlite costs several per statement. One connection; the caller keeps it to one thread."""
    url = engine.url.set(drivername="sqlite+pysqlite")
    worker = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    _sqlite_settings(worker)
    return worker


def _sqlite_settings(sync_engine: Engine) -> None:
    """The connection settings and BEGIN of every SQLite engine of ours (see make_engine)."""

    @event.listens_for(sync_engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let our "begin" hook issue BEGIN IMMEDIATE instead of the driver's deferred BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            f"journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _sqlite_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def migrations_dir() -> Path:
    return Path(str(importlib.resources.files("notifier.migrations")))


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"migrations have {len(heads)} heads; expected exactly one")
    return heads[0]


def known_revision(revision: str) -> bool:
    """Whether this version's migrations include `revision` (a newer notifier's are unknown)."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except Exception:  # alembic raises its own CommandError and ResolutionError kinds
        return False


def newer_schema_error(where: str, revision: str) -> SchemaError:
    from notifier import __version__

    return SchemaError(
        f"database {where} is at revision {revision}, which notifier {__version__} does not know: "
        "a newer notifier upgraded it; run that version again (installing an older notifier "
        "does not downgrade the database), or restore the backup taken before the upgrade"
    )


def _current(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


async def current_revision(engine: AsyncEngine) -> str | None:
    # A deferred read: checking the schema must not wait behind another process's write.
    async with engine.execution_options(**{READ_ONLY: True}).connect() as connection:
        return await connection.run_sync(_current)


def _run(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


def _sqlite_foreign_keys(connection: Connection, enabled: bool) -> None:
    # Straight on the DBAPI connection, outside any transaction: SQLite ignores this PRAGMA
    # inside one, and SQLAlchemy would open one for a statement sent through it.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if enabled else 'OFF'}")
    finally:
        cursor.close()


def sqlite_checkpoint(connection: Connection) -> tuple[int, int, int]:
    """`PRAGMA wal_checkpoint(TRUNCATE)`, outside any transaction (inside one it cannot run):
    (busy, WAL pages, pages copied)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        busy, pages, copied = cursor.fetchone() or (1, -1, -1)
        return int(busy), int(pages), int(copied)
    finally:
        cursor.close()


def _sqlite_foreign_key_violations(connection: Connection) -> list[Any]:
    return list(connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall())


async def _migrate(engine: AsyncEngine, action: str, revision: str) -> None:
    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as connection:
        if sqlite:
            # Batch mode rebuilds a table by copy, drop and rename; with foreign keys on, the
            # drop would cascade and delete every event of every shipment.
            await connection.run_sync(_sqlite_foreign_keys, False)
        try:
            async with connection.begin():
                await connection.run_sync(_run, action, revision)
                if sqlite:
                    violations = await connection.run_sync(_sqlite_foreign_key_violations)
                    if violations:
                        raise DatabaseError(f"migration left broken references: {violations[:5]}")
        finally:
            if sqlite:
                await connection.run_sync(_sqlite_foreign_keys, True)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _migrate(engine, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _migrate(engine, "downgrade", revision)


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        """False for a revision written by a newer notifier: no migration of ours leads from it."""
        return self.current is None or known_revision(self.current)


async def schema_state(engine: AsyncEngine) -> SchemaState:
    return SchemaState(current=await current_revision(engine), head=head_revision())


async def require_head(engine: AsyncEngine) -> None:
    """Refuse a database this version was not written for; never create tables behind the user's back."""
    state = await schema_state(engine)
    if state.at_head:
        return
    where = display_url(engine.url.render_as_string(hide_password=False))
    if state.current is None:
        raise SchemaError(f"database {where} has no notifier schema; run {hints.command('db upgrade')} first")
    if not state.known:
        raise newer_schema_error(where, state.current)
    raise SchemaError(
        f"database {where} is at revision {state.current} but this notifier needs {state.head}; "
        f"back it up, then run {hints.command('db upgrade')}"
    )
