"""Disk full: real SQLITE_FULL errors (max_page_count), the once-a-minute log, the recovery probe, a bounded WAL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import logging
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

from notifier.daemon.diskguard import DISK_FULL, DiskGuard, database_folder, is_disk_full
from notifier.store import Store
from notifier.store.database import SQLITE_JOURNAL_SIZE_LIMIT
from tests.test_daemon_ops import fill

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
NUMBER = "EL015307999JP"


def real_sqlite_full(tmp_path: Path) -> sqlite3.Error:
    connection = sqlite3.connect(tmp_path / "tiny.db")
    connection.execute("PRAGMA max_page_count=2")
    connection.execute("CREATE TABLE t (x BLOB)")
    with pytest.raises(sqlite3.Error) as caught:
        connection.execute("INSERT INTO t VALUES (zeroblob(100000))")
    connection.close()
    return caught.value


def test_the_classifier_knows_real_disk_full_errors(tmp_path: Path) -> None:
    full = real_sqlite_full(tmp_path)
    assert "full" in str(full)
    assert is_disk_full(full)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(asyncpg.exceptions.DiskFullError("could not extend file"))
    wrapped = RuntimeError("while recording a poll")
    wrapped.__cause__ = full
    assert is_disk_full(wrapped)
    assert not is_disk_full(sqlite3.OperationalError("database is locked"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("disk"))


def test_one_log_line_a_minute_however_many_jobs_fail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    guard = DiskGuard(where=str(tmp_path), folder=tmp_path)
    full = real_sqlite_full(tmp_path)
    with caplog.at_level(logging.ERROR, logger="notifier"):
        handled = [guard.failed(full, T0 + dt.timedelta(seconds=s)) for s in range(0, 150)]
        assert not guard.failed(ValueError("a bug"), T0)  # not ours: the caller logs it in full
    assert all(handled)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # at 0 s, 60 s and 120 s
    assert lines[0].startswith(f"disk full: database writes fail on {tmp_path} (")
    assert "since 09:00:00Z (1 failed)" in lines[0]
    assert "(61 failed)" in lines[1]
    assert guard.full
    assert guard.status().startswith(f"; DISK FULL since 09:00Z: database writes fail on {tmp_path}")


def test_the_database_folder_is_where_the_wal_grows(tmp_path: Path) -> None:
    assert database_folder(f"sqlite:///{tmp_path / 'n.db'}") == tmp_path
    assert database_folder("postgresql://db.example/notifier") is None
    assert DiskGuard.for_database("postgresql://db.example/n").where == "the database server"


@pytest.fixture
async def store(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Store]:
    path = tmp_path / "n.db"
    path.write_bytes(sqlite_template.read_bytes())  # noqa: ASYNC240 (set-up, before any task runs)
    opened = await Store.open(f"sqlite:///{path}")
    yield opened
    await opened.close()


def cap_pages(store: Store, pages: int) -> Any:
    """Limit the database's size on every new connection: SQLite then fails with SQLITE_FULL."""

    def limit(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count={pages}")
        cursor.close()

    event.listen(store.engine.sync_engine, "connect", limit)
    return limit


async def test_the_probe_keeps_the_state_until_a_write_really_works(store: Store, tmp_path: Path) -> None:
    await store.engine.dispose()
    limit = cap_pages(store, 1)  # no page beyond those the file has
    guard = DiskGuard(where=str(tmp_path), folder=tmp_path)
    errors = []
    for size in (1000, 100, 10):  # use up the free room in the pages there are
        for index in range(10_000):
            try:
                await store.raise_alert("unknown_status", "x" * size, now=T0, subject=f"s{size}-{index}")
            except Exception as exc:
                errors.append(exc)
                break
    assert len(errors) == 3
    assert all(guard.failed(exc, T0) for exc in errors)  # real errors, through SQLAlchemy and aiosqlite
    assert not await guard.probe(store, T0 + dt.timedelta(minutes=1))
    assert guard.full_since == T0
    event.remove(store.engine.sync_engine, "connect", limit)
    await store.engine.dispose()
    assert await guard.probe(store, T0 + dt.timedelta(minutes=3))
    assert not guard.full
    alerts = [a for a in await store.alerts() if a.kind == DISK_FULL]
    assert len(alerts) == 1
    assert "full for about 3 min from 2026-12-01 09:00Z" in alerts[0].message
    assert "nothing committed was lost" in alerts[0].message


async def test_the_wal_is_bounded_and_checkpoints_truncate_it(store: Store, tmp_path: Path) -> None:
    async with store.engine.connect() as connection:
        limit = (await connection.exec_driver_sql("PRAGMA journal_size_limit")).scalar_one()
    assert limit == SQLITE_JOURNAL_SIZE_LIMIT
    for index in range(300):
        await store.raise_alert("unknown_status", "x" * 4000, now=T0, subject=f"s{index}")
    wal = tmp_path / "n.db-wal"
    assert wal.stat().st_size > 1_000_000
    busy, _, _ = await store.checkpoint() or (1, 0, 0)
    assert busy == 0
    assert wal.stat().st_size == 0
    assert len(await store.alerts()) == 300  # nothing lost by the checkpoint


def test_opening_a_closed_wal_database_on_a_full_volume_counts_as_disk_full(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(volume)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        database = volume / "x.db"
        connection = sqlite3.connect(database)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
        connection.commit()
        connection.close()
        fill(volume)
        connection = sqlite3.connect(database)
        with pytest.raises(sqlite3.Error) as caught:
            connection.execute("SELECT * FROM t")
        connection.close()
        assert caught.value.sqlite_errorname == "SQLITE_IOERR_SHMSIZE"
        assert is_disk_full(caught.value)
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


async def test_a_full_disk_ends_the_cycle_instead_of_blaming_one_shipment(
    tmp_path: Path, sqlite_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_cycle import EMS, ems_copies, world

    path = tmp_path / "cycle.db"
    path.write_bytes(sqlite_template.read_bytes())  # noqa: ASYNC240 (set-up)
    journeys = [dataclasses.replace(j, revealed=3) for j in ems_copies(2)]
    assert journeys[0].scans[:3] == EMS.scans[:3]
    async with world(f"sqlite:///{path}", journeys) as here:
        await here.store.engine.dispose()
        limit = cap_pages(here.store, 1)  # the pages there are, and not one more
        with caplog.at_level(logging.INFO, logger="notifier"), pytest.raises(Exception) as caught:  # noqa: PT011
            await here.cycle()
        assert is_disk_full(caught.value)
        assert not [r for r in caplog.records if "poll of" in r.getMessage()]  # no per-shipment blame
        event.remove(here.store.engine.sync_engine, "connect", limit)
        await here.store.engine.dispose()
        assert await here.store.alerts() == []
        await here.cycle()  # space is back: the same news is recorded, nothing was lost
        for journey in journeys:
            view = await here.store.get(journey.number)
            assert view is not None
            assert len(await here.store.history(view.id)) == 3
        assert len(await here.store.outbox()) == 2
