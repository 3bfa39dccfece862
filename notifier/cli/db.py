"""`notifier db`: schema upgrade, current, downgrade, backup and reset."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Awaitable
from contextlib import closing
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import hints
from notifier.config import Settings, load_settings
from notifier.store.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    DatabaseError,
    display_url,
    downgrade,
    known_revision,
    make_engine,
    newer_schema_error,
    schema_state,
    sqlite_path,
    upgrade,
)
from notifier.store.dbenv import explained
from notifier.store.instances import coordination_state, lease_time

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, database_url=args.database_url)


def _run(coroutine: Awaitable[int]) -> int:
    async def wrapped() -> int:
        return await coroutine

    return asyncio.run(wrapped())


# --- db -------------------------------------------------------------------------------


async def _db(args: argparse.Namespace) -> int:
    settings = _settings(args)
    engine = make_engine(settings.database.url)
    where = display_url(settings.database.url)
    try:
        with explained(settings.database.url):
            return await _db_action(args, engine, where)
    finally:
        await engine.dispose()


async def _db_action(args: argparse.Namespace, engine: AsyncEngine, where: str) -> int:
    if args.db_command in ("upgrade", "downgrade"):
        # Alembic would fail with a traceback: it cannot find a path from a revision it lacks.
        current = (await schema_state(engine)).current
        if current is not None and not known_revision(current):
            raise newer_schema_error(where, current)
    if args.db_command == "reset":
        return await _reset(args, engine, where)
    if args.db_command == "upgrade":
        before = await schema_state(engine)
        await upgrade(engine, args.revision)
        after = await schema_state(engine)
        print(f"{where}: {before.current or 'empty'} -> {after.current} (head {after.head})")
    elif args.db_command == "downgrade":
        await downgrade(engine, args.revision)
        print(f"{where}: now at {(await schema_state(engine)).current or 'base (empty)'}")
    else:
        state = await schema_state(engine)
        print(f"{where}: revision {state.current or 'none (empty database)'}; head {state.head}")
        if state.current is not None and not state.known:
            raise newer_schema_error(where, state.current)
        if not state.at_head:
            print(f"not at head: run {hints.command('db upgrade')}", file=sys.stderr)
            return 3
    return EXIT_OK


# What a reset loses, as the refusal names it; the coordination tables (instances, leases, the
# request budget) are rebuilt by the running daemons and are not the shop's data.
_CONTENTS = (
    ("shipments", "shipment(s)"),
    ("subscribers", "subscriber(s)"),
    ("outbox", "message(s)"),
    ("alerts", "alert(s)"),
    ("suppressions", "unsubscribed address(es), which would be mailed again"),
)


async def _contents(engine: AsyncEngine) -> list[str]:
    """What the database holds, as "3 shipment(s)"; empty when nothing of the shop's is there."""
    async with engine.connect() as connection:
        present = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        said = []
        for table, noun in _CONTENTS:
            if table in present:
                count = (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
                if count:
                    said.append(f"{count} {noun}")
    return said


async def _reset(args: argparse.Namespace, engine: AsyncEngine, where: str) -> int:
    """Drop notifier's own tables through its migrations and create them afresh at head: only
    our tables go (a PostgreSQL database may hold others'), and a SQLite file keeps its owner and
    mode (re-creating it as root would lock the service user out)."""
    state = await schema_state(engine)
    if state.current is not None and not state.known:
        raise newer_schema_error(where, state.current)
    held = await _contents(engine) if state.current is not None else []
    holds = f" ({', '.join(held)})" if held else " (no shipments, messages or unsubscribes)"
    # Said first, before any hint: a command pasted from a hint must not meet this afterwards.
    running = await _running_daemon(args, engine, where) if state.at_head else None
    if running:
        print(f"notifier db reset: {running}; nothing was changed", file=sys.stderr)
        return EXIT_FAILURE
    if not args.yes or (held and not args.backup and not args.discard_data):
        if args.yes:
            intro = f"{where} is not empty{holds}"
        else:
            intro = f"this deletes everything notifier stored in {where}{holds} and creates its tables afresh"
        if held:
            ahead = (
                f"to go ahead, either save a copy first: "
                f"{hints.command('db reset --yes --backup ' + shlex.quote(str(_backup_suggestion(engine))))}"
                f", or if nothing in it is worth keeping: {hints.command('db reset --yes --discard-data')}"
            )
        else:
            ahead = f"to go ahead: {hints.command('db reset --yes')}"
        print(f"notifier db reset: {intro}; {ahead}; nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    if args.backup and state.current is not None:
        destination = Path(args.backup)
        database = sqlite_path(engine.url)
        if database is not None:
            await engine.dispose()  # the backup reads the file on its own connection
            size = await asyncio.to_thread(
                backup_sqlite,
                database,
                destination,
                allow_open_folder=args.allow_open_folder,
            )
        else:
            size = await asyncio.to_thread(
                dump_postgresql, _settings(args).database.url, destination, args.allow_open_folder
            )
        print(f"backed up {where} to {destination} ({size} bytes)")
    if state.current is not None:
        await downgrade(engine, "base")
    await upgrade(engine)
    database = sqlite_path(engine.url)
    if database is not None:
        # The dropped rows stay readable in free pages until the file is rewritten.
        await engine.dispose()
        await asyncio.to_thread(_vacuum, database)
    print(f"{where}: reset: empty, at revision {(await schema_state(engine)).current}")
    return EXIT_OK


async def _running_daemon(args: argparse.Namespace, engine: AsyncEngine, where: str) -> str | None:
    """Why a reset must wait: a daemon heartbeating on this database (only a database at head can
    have one of this version; it refuses others), or None."""
    settings = _settings(args)
    now = utcnow()
    alive = [
        row
        for row in (
            await coordination_state(engine, now=now, stale_after=lease_time(settings.poll_tick))
        ).instances
        if row.alive
    ]
    if not alive:
        return None
    return (
        f"a daemon is running on {where} ({alive[0].owner}, last heartbeat "
        f"{(now - alive[0].heartbeat_at).total_seconds():.0f}s ago): stop it first (systemctl stop notifier)"
    )


def _backup_suggestion(engine: AsyncEngine) -> Path:
    """Where a hint suggests the backup: beside a SQLite file (its folder already holds the same
    data), else in the current folder; dated, so a second reset does not overwrite the first."""
    name = f"notifier-before-reset-{utcnow():%Y%m%d-%H%M}"
    database = sqlite_path(engine.url)
    if database is not None:
        return database.resolve().parent / f"{name}.db"
    return Path.cwd() / f"{name}.dump"


def _vacuum(path: Path) -> None:
    # Outside any transaction (the engine's connections begin one at once): SQLite requires it.
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        connection.execute("VACUUM")


def private_file(path: Path, mode: int) -> None:
    """Create `path` afresh with exactly `mode` (O_EXCL: never through a file someone else put
    there), whatever the umask takes away."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(descriptor, mode)
    finally:
        os.close(descriptor)


def _check_folder(folder: Path, allow_open_folder: bool) -> None:
    if not folder.is_dir():
        raise DatabaseError(f"cannot write the backup: {folder} is not a directory")
    if not allow_open_folder and open_to_others(folder):
        raise BackupRefused(
            f"not writing the backup into {folder}: other users can list or enter it "
            f"(mode {stat.filemode(folder.stat().st_mode)}), and the backup holds customers' names "
            f"and addresses; use a folder only you can open (install -d -m 0700 FOLDER, or "
            f"chmod o-rx {shlex.quote(str(folder))}), or pass --allow-open-folder"
        )


def dump_postgresql(url: str, destination: Path, allow_open_folder: bool) -> int:
    """`pg_dump -Fc` of the database to `destination` (mode 0600), under a temporary name first."""
    _check_folder(destination.parent, allow_open_folder)
    program = shutil.which("pg_dump")
    if program is None:
        raise DatabaseError("cannot back up: pg_dump is not installed (apt-get install postgresql-client)")
    parsed = make_url(url)
    # The password goes in the environment, not on a command line other users can see in ps.
    environment = dict(os.environ)
    if parsed.password:
        environment["PGPASSWORD"] = str(parsed.password)
    target = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    partial = destination.with_name(destination.name + ".partial")
    private_file(partial, 0o600)
    result = subprocess.run(
        [program, "-Fc", "-f", str(partial), "--dbname", target],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise DatabaseError(f"pg_dump to {destination} failed: {result.stderr.strip()}")
    os.replace(partial, destination)
    return destination.stat().st_size


def open_to_others(folder: Path) -> bool:
    """Whether users other than the owner and group can list or enter the folder: a copy left
    there with a wider mode later (gzip, cp, a restore test) would be theirs to read."""
    return bool(folder.stat().st_mode & (stat.S_IROTH | stat.S_IXOTH))


def backup_sqlite(source: Path, destination: Path, *, allow_open_folder: bool = False) -> int:
    """Copy a live SQLite database with SQLite's online backup API; returns the bytes written.

    The copy is a consistent snapshot even while the daemon writes, and it lands under a
    temporary name first, so a crash never leaves a half-written file under the real one. It has
    the database file's own mode (0600 under the systemd unit) from its first byte: it holds
    customers' names and addresses, and a root shell's umask would make it world-readable.
    """
    if not source.is_file():
        raise DatabaseError(f"no SQLite database at {source}")
    _check_folder(destination.parent, allow_open_folder)
    mode = stat.S_IMODE(source.stat().st_mode)
    partial = destination.with_name(destination.name + ".partial")
    private_file(partial, mode)  # left by an interrupted backup: ours, by its name
    try:
        with (
            closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(partial)) as dst,
        ):
            src.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            src.backup(dst)
        with open(partial, "rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return destination.stat().st_size


class BackupRefused(Exception):
    """A backup destination the operator must confirm: exit 2, nothing written."""


def cmd_db(args: argparse.Namespace) -> int:
    if args.db_command == "backup":
        settings = _settings(args)
        database = sqlite_path(settings.database.url)
        if database is None:
            print(
                "notifier db backup: only for SQLite; back up PostgreSQL with pg_dump (see docs/how-to/upgrades-and-backups.md)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            size = backup_sqlite(database, Path(args.destination), allow_open_folder=args.allow_open_folder)
        except BackupRefused as exc:
            print(f"notifier db backup: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except sqlite3.Error as exc:
            raise DatabaseError(f"backup to {args.destination} failed: {exc}") from exc
        print(f"backed up {database} to {args.destination} ({size} bytes)")
        return EXIT_OK
    try:
        return _run(_db(args))
    except BackupRefused as exc:
        print(f"notifier db {args.db_command}: {exc}; nothing was changed", file=sys.stderr)
        return EXIT_USAGE
