"""Database engines (SQLite and PostgreSQL, async) and schema migrations via Alembic."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Select, create_engine, event, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from notifier import hints
from notifier.errors import NotifierError
from notifier.store.orm import (
    Alert,
    ContactOfficeRow,
    Event,
    Instance,
    IntakeEvent,
    IntakeNumber,
    OutboxMessage,
    PageWordingRow,
    Shipment,
    ShipmentSuppression,
    Subscriber,
    Subscription,
    Suppression,
    WorkLease,
)

# The listener-failure record keeps the logger name it had in the one-module store.
_store_logger = logging.getLogger("notifier.store")

# Every table an upsert (on_conflict_*) goes to.
InsertTable: TypeAlias = (
    type[Event]
    | type[Alert]
    | type[ContactOfficeRow]
    | type[OutboxMessage]
    | type[Suppression]
    | type[ShipmentSuppression]
    | type[Shipment]
    | type[Subscriber]
    | type[Subscription]
    | type[PageWordingRow]
    | type[Instance]
    | type[WorkLease]
    | type[IntakeEvent]
    | type[IntakeNumber]
)


def dialect_insert(dialect: str, table: InsertTable) -> sqlite.Insert:
    """An INSERT with on_conflict_* for this dialect (the store's and the coordination's)."""
    # Both dialects share on_conflict_* with the same signatures; the type is nominal.
    if dialect == "postgresql":
        return postgresql.insert(table)  # type: ignore[return-value]
    return sqlite.insert(table)


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


def sqlite_path(url: str | URL) -> Path | None:
    """The file of an SQLite database URL, as SQLite opens it (a relative path is relative to the
    working folder; `~` is not expanded); None for a database server, for `:memory:`, and for
    what is not a URL at all."""
    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


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
        database = sqlite_path(engine.url)
        if database is not None and not database.resolve().parent.is_dir():
            raise DatabaseError(
                f"the folder {database.resolve().parent} of database {engine.url.database} does not "
                "exist: create it, writable by the user that runs notifier, or fix [database] url"
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


_Leased = TypeVar("_Leased", Shipment, OutboxMessage)
_T = TypeVar("_T")
# Ids or numbers per IN (...) list: well under SQLite's and PostgreSQL's limits on parameters.
IN_CHUNK = 500
# session.info key: this unit of work made a message pending (see Store.on_queued).
QUEUED = "notifier_queued"


class Database:
    """One database: engines, sessions, the SQLite write lock and worker thread, dialect inserts."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Reads run in deferred transactions: on SQLite they then never take the write lock
        # (see db.READ_ONLY), so a status query does not stall a poll being recorded.
        self.read_engine = engine.execution_options(**{READ_ONLY: True})
        self.reads = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time. Several connections of this process queueing on its
        # lock can starve one past the busy timeout ("database is locked"); queueing them here
        # first hands the lock over in order. PostgreSQL needs no such thing.
        self.write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._queued_listeners: list[Callable[[], None]] = []
        # SQLite: the hot path of a cycle (claims, history reads, unchanged polls) runs on a
        # synchronous connection in one worker thread, a batch per hand-off; aiosqlite hands
        # each statement over several times (cursor, execute, fetch, close). Writes there take
        # the same write lock and BEGIN IMMEDIATE, so the transactions are the same.
        self.worker: Engine | None = None
        self._worker_thread: ThreadPoolExecutor | None = None
        if sqlite_path(engine.url) is not None:
            self.worker = make_sqlite_worker_engine(engine)
            self._worker_reads = self.worker.execution_options(**{READ_ONLY: True})
            self._worker_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notifier-sqlite")

    def on_queued(self, listener: Callable[[], None]) -> None:
        """Call `listener` after each commit that made a message pending (a poll's, an enqueue,
        held mail released, failed mail retried): a sender can start at once instead of at its
        next tick. It is called on the event loop, must not block, and its errors are logged."""
        self._queued_listeners.append(listener)

    def _notify_queued(self) -> None:
        for listener in self._queued_listeners:
            try:
                listener()
            except Exception:
                # The commit stands; only the early wake-up is lost (the sender's tick remains).
                _store_logger.exception(
                    "a queued-mail listener failed", extra={"action": "queued_listener_failed"}
                )

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed on success, rolled back on any error. A unit of
        work that made a message pending sets session.info[QUEUED]; listeners hear of it once
        the commit is done."""
        if self.write_lock is None:
            async with self._sessions.begin() as session:
                yield session
        else:
            async with self.write_lock, self._sessions.begin() as session:
                yield session
        if session.info.get(QUEUED):
            self._notify_queued()

    @contextlib.asynccontextmanager
    async def write_connection(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction on a bare connection (no ORM session): for the hot path."""
        if self.write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self.write_lock, self.engine.begin() as connection:
            yield connection

    async def close(self) -> None:
        if self.worker is not None and self._worker_thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._worker_thread, self.worker.dispose)
            self._worker_thread.shutdown(wait=True)
        await self.engine.dispose()

    async def on_worker(self, work: Callable[[Connection], _T], *, write: bool) -> _T:
        """Run `work` in one transaction on the SQLite worker thread (committed if `write`,
        under the write lock; else a deferred read, rolled back)."""
        assert self._worker_thread is not None
        loop = asyncio.get_running_loop()
        if not write:
            return await loop.run_in_executor(self._worker_thread, self._worker_read, work)
        assert self.write_lock is not None
        async with self.write_lock:
            return await loop.run_in_executor(self._worker_thread, self._worker_write, work)

    def _worker_read(self, work: Callable[[Connection], _T]) -> _T:
        with self._worker_reads.connect() as connection:
            return work(connection)

    def _worker_write(self, work: Callable[[Connection], _T]) -> _T:
        assert self.worker is not None
        with self.worker.begin() as connection:
            return work(connection)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def insert(self, table: InsertTable) -> sqlite.Insert:
        return dialect_insert(self.dialect, table)

    async def ping(self) -> None:
        """One round trip to the database (the health check's and the watchdog's); raises when
        it does not answer. A read: on SQLite it never waits for a write in progress."""
        async with self.read_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def checkpoint(self) -> tuple[int, int, int] | None:
        """SQLite: copy the WAL into the database and truncate it to nothing, so the file never
        keeps the size of its biggest burst. (busy, WAL pages, pages copied); None elsewhere."""
        if self.write_lock is None:
            return None
        # Under the write lock, so our own writers do not make it give up half-way.
        async with self.write_lock, self.engine.connect() as connection:
            return await connection.run_sync(sqlite_checkpoint)

    async def lease(self, model: type[_Leased], due: Select[int], **values: object) -> list[_Leased]:
        """Update the rows `due` selects (locked, SKIP LOCKED on PostgreSQL) and return them, in
        one statement, so two instances can never both take a row."""
        async with self.write() as session:
            result = await session.execute(
                update(model).where(model.id.in_(due.scalar_subquery())).values(**values).returning(model),
                execution_options={"synchronize_session": False},
            )
            return list(result.scalars())
