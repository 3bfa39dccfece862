"""Commands that use the database: `db`, `poll`, `status`, `history`, `alerts`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shlex
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from notifier import hints
from notifier.cli import columns
from notifier.config import CONFIG_ENV, DATABASE_URL_ENV, Settings, load_settings
from notifier.core.diff import Change
from notifier.core.model import Layout
from notifier.core.numbers import parse_number
from notifier.core.stages import Stage, stage_info
from notifier.core.views import ShipmentView
from notifier.errors import FetchError, InvalidNumberError, LeaseLostError
from notifier.net.japanpost import MAX_BATCH, ClientSettings, JapanPostClient
from notifier.pipeline.cycle import CycleStats, record_list_page, schedule
from notifier.pipeline.poll import poll_detail
from notifier.pipeline.wiring import notifier_for
from notifier.store import Store
from notifier.store.database import (
    SQLITE_BUSY_TIMEOUT_MS,
    DatabaseError,
    display_url,
    downgrade,
    known_revision,
    make_engine,
    newer_schema_error,
    schema_state,
    upgrade,
)
from notifier.store.dbenv import explained
from notifier.store.instances import coordination_state, describe, lease_time, state_json

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ") if value else "-"


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, database_url=args.database_url)


def _run(coroutine: Awaitable[int]) -> int:
    async def wrapped() -> int:
        return await coroutine

    return asyncio.run(wrapped())


async def _with_store(settings: Settings, action: Callable[[Store], Awaitable[int]]) -> int:
    with explained(settings.database.url):
        store = await Store.open(settings.database.url)
        try:
            return await action(store)
        finally:
            await store.close()


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
    if not args.yes:
        print(
            f"notifier db reset: this deletes everything notifier stored in {where}{holds} and "
            f"creates its tables afresh; to go ahead: {hints.command('db reset --yes')}"
            + (" with --backup PATH (or --discard-data), as it holds data" if held else ""),
            file=sys.stderr,
        )
        return EXIT_USAGE
    if held and not args.backup and not args.discard_data:
        print(
            f"notifier db reset: {where} is not empty{holds}: give --backup PATH to save a copy "
            "first, or --discard-data if nothing in it is worth keeping; nothing was changed",
            file=sys.stderr,
        )
        return EXIT_USAGE
    # Only a database at head can have a running daemon of this version (it refuses others).
    if state.at_head:
        settings = _settings(args)
        now = utcnow()
        alive = [
            row
            for row in (
                await coordination_state(engine, now=now, stale_after=lease_time(settings.poll_tick))
            ).instances
            if row.alive
        ]
        if alive:
            print(
                f"notifier db reset: a daemon is running on {where} ({alive[0].owner}, last heartbeat "
                f"{(now - alive[0].heartbeat_at).total_seconds():.0f}s ago): stop it first "
                "(systemctl stop notifier); nothing was changed",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    if args.backup and state.current is not None:
        destination = Path(args.backup)
        if engine.dialect.name == "sqlite":
            assert engine.url.database
            await engine.dispose()  # the backup reads the file on its own connection
            size = await asyncio.to_thread(
                backup_sqlite,
                Path(engine.url.database),
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
    if engine.dialect.name == "sqlite":
        # The dropped rows stay readable in free pages until the file is rewritten.
        assert engine.url.database
        await engine.dispose()
        await asyncio.to_thread(_vacuum, Path(engine.url.database))
    print(f"{where}: reset: empty, at revision {(await schema_state(engine)).current}")
    return EXIT_OK


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
        url = make_url(settings.database.url)
        if url.get_backend_name() != "sqlite" or not url.database:
            print(
                "notifier db backup: only for SQLite; back up PostgreSQL with pg_dump (see docs/how-to/upgrades-and-backups.md)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            size = backup_sqlite(
                Path(url.database), Path(args.destination), allow_open_folder=args.allow_open_folder
            )
        except BackupRefused as exc:
            print(f"notifier db backup: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except sqlite3.Error as exc:
            raise DatabaseError(f"backup to {args.destination} failed: {exc}") from exc
        print(f"backed up {url.database} to {args.destination} ({size} bytes)")
        return EXIT_OK
    try:
        return _run(_db(args))
    except BackupRefused as exc:
        print(f"notifier db {args.db_command}: {exc}; nothing was changed", file=sys.stderr)
        return EXIT_USAGE


# --- poll -----------------------------------------------------------------------------


# Long enough for one detail request and its commit; a crashed `poll` elsewhere frees the
# number by then (one on this machine at once: see dead_here).
POLL_LEASE = dt.timedelta(minutes=2)


def dead_here(owner: str) -> bool:
    """Whether a lease owner ("[poll:]host:pid") is a process of this machine that no longer
    exists, so its lease can be taken over now rather than when it runs out."""
    host, _, pid = owner.removeprefix("poll:").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (perhaps as another user): not ours to take
    return False


def poll_lease(seen: int, unseen: int, interval: float) -> dt.timedelta:
    """Long enough for the whole run at the configured pace (a list request per ten numbers
    seen before, a detail request per number never seen), twice over, and at least POLL_LEASE."""
    requests = -(-seen // MAX_BATCH) + unseen
    return max(POLL_LEASE, POLL_LEASE + dt.timedelta(seconds=2 * requests * interval))


def _print_change(number: str, change: Change, queued: int) -> None:
    line = f"{number}: {len(change.new_events)} new event(s), stage {change.current_stage}"
    if queued:
        line += f", {queued} message(s) queued"
    print(line)
    for transition in change.transitions:
        print(f"  {transition.from_stage} -> {transition.to_stage}  ({transition.event.status})")
    for anomaly in change.anomalies:
        print(f"  anomaly {anomaly.kind}: {anomaly.message}")


async def _poll(args: argparse.Namespace, numbers: list[str]) -> int:
    """Poll the numbers now, as the daemon does: one list request per ten numbers seen before
    (the unchanged ones are settled by it), a detail request for the others and for those whose
    latest event moved. A list page that cannot be had or read falls back to a detail request
    per number, so each gets its own answer and failure count."""
    settings = _settings(args)
    client_settings = ClientSettings(
        base_url=settings.japanpost.base_url, request_interval=settings.japanpost.request_interval
    )
    owner = f"poll:{socket.gethostname()}:{os.getpid()}"
    rng = random.Random()
    notifier = notifier_for(settings)
    policy = settings.polling
    stats = CycleStats()

    def decide_for(view: ShipmentView) -> Callable[[Stage, bool, bool], dt.datetime | None]:
        def decide(stage: Stage, changed: bool, failed: bool) -> dt.datetime | None:
            # The daemon's own policy: after this poll it polls the number on schedule.
            return schedule(view, stage, changed, failed, utcnow(), policy, rng).at

        return decide

    async def action(store: Store) -> int:
        worst = EXIT_OK
        now = utcnow()
        parsed = [parse_number(number) for number in numbers]
        # A new watch is not due before this poll has recorded its own next poll time, so a
        # running daemon does not race to poll it too.
        views = await store.watch_many(
            parsed, now=now, label=args.label or "", first_poll_at=now + POLL_LEASE
        )
        seen = sum(1 for view in views if view.last_event_time is not None)
        lease = poll_lease(seen, len(views) - seen, settings.japanpost.request_interval)
        # The leases keep a running daemon from polling them at the same time, and tell us which
        # it is polling right now. A killed `poll` or daemon of this machine protects nothing.
        holders = await store.take_leases(
            [view.id for view in views], owner=owner, now=now, lease=lease, stale=dead_here
        )
        mine = []
        for view in views:
            holder = holders[view.id]
            if holder is None:
                mine.append(view)
                continue
            print(
                f"{view.number}: the running daemon ({holder}) is polling it right now; "
                f"see {hints.command('history ' + view.number)} in a moment"
            )
        done: set[int] = set()
        async with JapanPostClient(client_settings) as client:
            try:
                detail = [view for view in mine if view.last_event_time is None]
                listed = [view for view in mine if view.last_event_time is not None]
                for start in range(0, len(listed), MAX_BATCH):
                    chunk = listed[start : start + MAX_BATCH]
                    try:
                        fetched = await client.fetch_latest([view.number for view in chunk])
                    except FetchError:
                        detail.extend(chunk)
                        continue
                    if fetched.page.layout is Layout.UNRECOGNIZED:
                        detail.extend(chunk)
                        continue
                    result = await record_list_page(
                        store, chunk, fetched, owner=owner, policy=policy, clock=utcnow, rng=rng, stats=stats
                    )
                    detail.extend(result.needs_detail)
                    for view, change in result.recorded:
                        done.add(view.id)
                        _print_change(view.number, change, 0)
                    for view, error in result.failed:
                        done.add(view.id)
                        worst = EXIT_FAILURE
                        print(f"{view.number}: {error}")
                for view in detail:
                    try:
                        polled = await poll_detail(
                            store,
                            client,
                            view,
                            now=utcnow(),
                            next_poll_at=decide_for(view),
                            owner=owner,
                            notifier=notifier,
                        )
                    except LeaseLostError as exc:
                        done.add(view.id)
                        worst = EXIT_FAILURE
                        print(f"{view.number}: {exc}")
                        continue
                    done.add(view.id)
                    if polled.change is None or polled.error:
                        print(f"{view.number}: {polled.error} (failure {polled.failures or 1})")
                        worst = EXIT_FAILURE
                        continue
                    _print_change(view.number, polled.change, polled.queued)
            except BaseException:
                # Handed back unpolled, still due when they were: an interrupted run (Ctrl-C, a
                # database error) leaves nothing leased to a process that is gone.
                for view in mine:
                    if view.id not in done:
                        await store.release(view.id, owner=owner, next_poll_at=view.next_poll_at or now)
                raise
        return worst

    return await _with_store(settings, action)


async def _poll_now(args: argparse.Namespace, numbers: list[str] | None) -> int:
    """Mark numbers due: the running daemon polls them at its next tick, at its own pace."""
    settings = _settings(args)

    async def action(store: Store) -> int:
        marked = await store.mark_due(numbers, now=utcnow())
        missing = sorted(set(numbers or ()) - set(marked))
        for number in missing:
            print(
                f"notifier poll: {number} is not watched (add it with {hints.command('watch ' + number)} "
                "or to the configuration's watchlist)",
                file=sys.stderr,
            )
        print(
            f"{len(marked)} number(s) due now; the running daemon polls them at its next tick "
            f"(every {settings.poll_tick:g}s), at its usual pace"
        )
        return EXIT_FAILURE if missing else EXIT_OK

    return await _with_store(settings, action)


def cmd_poll(args: argparse.Namespace) -> int:
    if args.all and not args.now:
        print("notifier poll: --all goes with --now (poll --now --all)", file=sys.stderr)
        return EXIT_USAGE
    if args.all and args.numbers:
        print("notifier poll: give NUMBERs or --all, not both", file=sys.stderr)
        return EXIT_USAGE
    if not args.all and not args.numbers:
        print("notifier poll: give at least one NUMBER (or --now --all)", file=sys.stderr)
        return EXIT_USAGE
    numbers, problems = [], []
    for raw in args.numbers:
        try:
            numbers.append(parse_number(raw).value)
        except InvalidNumberError as exc:
            problems.append(str(exc))
    if problems:
        print("\n".join(f"notifier poll: {p}" for p in problems), file=sys.stderr)
        return EXIT_USAGE
    if args.now:
        return _run(_poll_now(args, None if args.all else numbers))
    return _run(_poll(args, numbers))


# --- status / history / alerts --------------------------------------------------------


def _status_row(view: ShipmentView) -> dict[str, object]:
    return {
        "number": view.number,
        "incarnation": view.incarnation,
        "label": view.label,
        "stage": str(view.stage),
        "stage_entered_at": view.stage_entered_at.isoformat() if view.stage_entered_at else None,
        "last_event": view.last_event_time,
        "last_polled_at": view.last_polled_at.isoformat() if view.last_polled_at else None,
        # An unwatched shipment is never polled, whatever its row still holds.
        "next_poll_at": view.next_poll_at.isoformat() if view.next_poll_at and view.active else None,
        "consecutive_failures": view.consecutive_failures,
        "last_error": view.last_error,
        "open_alerts": view.open_alerts,
        "active": view.active,
    }


async def _instances(store: Store, settings: Settings, as_json: bool) -> None:
    now = dt.datetime.now(dt.UTC)
    state = await coordination_state(store.engine, now=now, stale_after=lease_time(settings.poll_tick))
    if as_json:
        print(json.dumps(state_json(state, now=now), ensure_ascii=False, indent=2))
    else:
        print("\n".join(describe(state, now=now)))


async def _status(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def action(store: Store) -> int:
        if args.instances:
            await _instances(store, settings, args.json)
            return EXIT_OK
        views = await store.shipments(include_inactive=args.all)
        if args.json:
            print(json.dumps([_status_row(v) for v in views], ensure_ascii=False, indent=2))
            return EXIT_OK
        if not views:
            print(f"no shipments watched yet (add one with {hints.command('poll NUMBER')})")
            return EXIT_OK
        rows = [
            [
                v.number + ("" if v.active else " (off)"),
                columns.truncate(v.label, 30),
                str(v.stage),
                v.last_event_time or "-",
                _when(v.last_polled_at) + (f" !{v.consecutive_failures}" if v.consecutive_failures else ""),
                _when(v.next_poll_at) if v.active else "never (off)",
                str(v.open_alerts or ""),
            ]
            for v in views
        ]
        headers = ["NUMBER", "LABEL", "STAGE", "LAST EVENT", "LAST POLLED", "NEXT POLL", "ALERTS"]
        print(columns.table(rows, headers))
        if store.dialect == "postgresql":
            print()
            await _instances(store, settings, False)
        return EXIT_OK

    return await _with_store(settings, action)


async def _history(args: argparse.Namespace) -> int:
    number = parse_number(args.number).value

    async def action(store: Store) -> int:
        view = await store.get(number)
        if view is None:
            print(f"notifier history: {number} is not in the database", file=sys.stderr)
            return EXIT_FAILURE
        events = await store.history(view.id)
        info = stage_info(view.stage)
        meaning = info.meaning_ja if args.locale == "ja" else info.meaning_en
        print(f"{view.number}  {view.label}  {view.item_type or ''}".rstrip())
        print(f"stage {view.stage}: {meaning}")
        if not events:
            print("no events yet")
        else:
            rows = [
                [
                    event.when.iso_local(),
                    str(event.stage),
                    event.status,
                    " / ".join(p for p in (event.office, event.region, event.postal_code) if p),
                ]
                for event in events
            ]
            table = columns.table(rows, ["WHEN", "STAGE", "STATUS", "PLACE"])
            print("\n".join(f"  {line}" for line in table.splitlines()))
        for office in await store.contacts(view.id):
            print(f"  contact: {office.role}: {office.office} {office.phone}".rstrip())
        return EXIT_OK

    return await _with_store(_settings(args), action)


async def _alerts(args: argparse.Namespace) -> int:
    async def action(store: Store) -> int:
        if args.ack or args.ack_all:
            count = await store.acknowledge(None if args.ack_all else args.ack, now=utcnow())
            print(f"acknowledged {count} alert(s)")
            return EXIT_OK
        alerts = await store.alerts(include_acknowledged=args.all)
        if args.json:
            print(
                json.dumps(
                    [
                        {
                            "id": a.id,
                            "kind": a.kind,
                            "subject": a.subject,
                            "message": a.message,
                            "count": a.count,
                            "first_seen_at": a.first_seen_at.isoformat(),
                            "last_seen_at": a.last_seen_at.isoformat(),
                            "acknowledged_at": a.acknowledged_at.isoformat() if a.acknowledged_at else None,
                        }
                        for a in alerts
                    ],
                    ensure_ascii=False,
                    indent=2,
                )
            )
            return EXIT_OK
        if not alerts:
            print("no open alerts")
            return EXIT_OK
        rows = [
            [str(a.id), a.kind, a.subject or "-", str(a.count), _when(a.last_seen_at), a.message]
            for a in alerts
        ]
        headers = ["ID", "KIND", "SUBJECT", "COUNT", "LAST SEEN", "MESSAGE"]
        # The message is what the operator acts on: wrapped to the terminal, never cut.
        print(columns.table(rows, headers, right=frozenset({0, 3}), max_width=columns.terminal_columns()))
        return EXIT_OK

    return await _with_store(_settings(args), action)


def cmd_status(args: argparse.Namespace) -> int:
    return _run(_status(args))


def cmd_history(args: argparse.Namespace) -> int:
    return _run(_history(args))


def cmd_alerts(args: argparse.Namespace) -> int:
    return _run(_alerts(args))


# --- wiring ---------------------------------------------------------------------------


def database_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    _database_options(parent)
    return parent


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=f"config file (default: ${CONFIG_ENV})")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help=f"database URL, overriding the config (default: ${DATABASE_URL_ENV}, else sqlite:///notifier.db)",
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=parents)

    db = command("db", "database schema: upgrade, current, downgrade, backup, reset")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_sub.add_parser(
        "upgrade", parents=parents, help="migrate the schema to the newest revision (or --revision)"
    )
    up.add_argument("--revision", default="head")
    _database_options(up)
    current = db_sub.add_parser(
        "current", parents=parents, help="show the schema revision; exit 3 when not at head"
    )
    _database_options(current)
    backup = db_sub.add_parser(
        "backup", parents=parents, help="copy a live SQLite database to DEST (online backup API)"
    )
    backup.add_argument("destination", metavar="DEST")
    backup.add_argument(
        "--allow-open-folder",
        action="store_true",
        help="write it even into a folder other users can list or enter (the copy itself stays private)",
    )
    _database_options(backup)
    reset = db_sub.add_parser(
        "reset",
        parents=parents,
        help="start over: drop notifier's tables and create them afresh (needs --yes; "
        "a database with data also needs --backup PATH or --discard-data)",
    )
    reset.add_argument("--yes", action="store_true", help="really delete everything notifier stored")
    reset.add_argument(
        "--backup",
        metavar="PATH",
        help="first save a copy here (SQLite: the file, with its mode; PostgreSQL: pg_dump -Fc, mode 0600)",
    )
    reset.add_argument(
        "--discard-data", action="store_true", help="reset a database that holds data without a backup"
    )
    reset.add_argument(
        "--allow-open-folder", action="store_true", help="let --backup write into a folder others can open"
    )
    _database_options(reset)
    down = db_sub.add_parser(
        "downgrade", parents=parents, help="migrate the schema down to REVISION (back up first)"
    )
    down.add_argument("revision", metavar="REVISION")
    _database_options(down)
    db.set_defaults(handler=cmd_db)

    poll = command(
        "poll",
        "watch numbers and poll them once here, recording the result; with --now, have the "
        "running daemon poll them at its next tick instead",
    )
    poll.add_argument("numbers", nargs="*", metavar="NUMBER")
    poll.add_argument("--label", help="label to store with the shipment(s)")
    poll.add_argument(
        "--now",
        action="store_true",
        help="mark the numbers due now: the running daemon polls them at its next tick (fetches nothing here)",
    )
    poll.add_argument("--all", action="store_true", help="with --now: every watched number")
    _database_options(poll)
    poll.set_defaults(handler=cmd_poll)

    status = command("status", "table of watched shipments")
    status.add_argument("--json", action="store_true")
    status.add_argument("--all", action="store_true", help="include shipments no longer watched")
    status.add_argument(
        "--instances",
        action="store_true",
        help="the instances on this database, who owns the daily work, the shared Japan Post budget",
    )
    _database_options(status)
    status.set_defaults(handler=cmd_status)

    history = command("history", "full stored history of one number")
    history.add_argument("number", metavar="NUMBER")
    history.add_argument("--locale", choices=["en", "ja"], default="en")
    _database_options(history)
    history.set_defaults(handler=cmd_history)

    alerts = command("alerts", "list or acknowledge operator alerts")
    alerts.add_argument("--all", action="store_true", help="include acknowledged alerts")
    alerts.add_argument("--json", action="store_true")
    alerts.add_argument("--ack", type=int, nargs="+", metavar="ID", help="acknowledge these alerts")
    alerts.add_argument("--ack-all", action="store_true", help="acknowledge every open alert")
    _database_options(alerts)
    alerts.set_defaults(handler=cmd_alerts)
