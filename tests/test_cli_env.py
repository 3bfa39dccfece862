"""Environment problems with the database (read-only or missing folder, full disk, newer schema,
a held lock) give one line naming the path and what to do, exit non-zero, and change nothing.

The CLI runs as a subprocess against real folders. Tests run as root, which ignores file
permissions, so a read-only folder is a read-only bind mount (the kernel refuses writes to it
even for root); where mounting is not allowed, the folder is made immutable (`chattr +i`),
which root cannot write either. A full disk is a small tmpfs filled to the last block.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from notifier.cli import main
from notifier.store.dbenv import DISK_FULL, LOCKED, classify

NUMBER = "314159265350"


def notifier(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFIER_CONFIG"}
    env["NOTIFIER_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "notifier.db"
    monkeypatch.delenv("NOTIFIER_CONFIG", raising=False)
    url = f"sqlite:///{path}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert main(["watch", NUMBER, "--database-url", url]) == 0
    return path


def numbers_in(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as connection:
        return [row[0] for row in connection.execute("SELECT number FROM shipments ORDER BY number")]


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder`, seen through a path that refuses every write, even root's."""
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    if _run("mount", "--bind", str(folder), str(view)):
        try:
            if not _run("mount", "-o", "remount,bind,ro", str(view)):
                pytest.skip("cannot remount a bind mount read-only here")
            yield view
        finally:
            _run("umount", str(view))
        return
    if _run("chattr", "+i", str(folder)):
        try:
            yield folder
        finally:
            _run("chattr", "-i", str(folder))
        return
    pytest.skip("neither a read-only bind mount nor chattr +i is possible here")


def test_read_only_folder(database: Path) -> None:
    with read_only(database.parent) as folder:
        url = f"sqlite:///{folder / database.name}"
        for command in (["status"], ["alerts"], ["db", "upgrade"], ["watch", "EJ123456785JP"]):
            result = notifier(*command, url=url)
            assert result.returncode == 1, command
            line = one_line(result)
            assert str(folder / database.name) in line
            assert "writ" in line  # "not writable" / "must be writable"
            assert "notifier.db-wal" in line
    assert numbers_in(database) == [NUMBER]


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "notifier.db"
    for command in (["status"], ["db", "upgrade"], ["watch", NUMBER]):
        result = notifier(*command, url=f"sqlite:///{missing}")
        assert result.returncode != 0
        line = one_line(result)
        assert f"the folder {missing.parent} of database {missing} does not exist" in line
        assert "create it" in line
    assert not missing.parent.exists()


def test_database_of_a_newer_revision(database: Path) -> None:
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00dfeed9999'")
    url = f"sqlite:///{database}"
    for command in (["status"], ["db", "current"], ["db", "upgrade"], ["db", "downgrade", "base"]):
        result = notifier(*command, url=url)
        assert result.returncode == 3, command
        line = one_line(result)
        assert str(database) in line
        assert "revision f00dfeed9999" in line
        assert "a newer notifier upgraded it" in line
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("f00dfeed9999",)]
    assert numbers_in(database) == [NUMBER]


def test_locked_database_refuses_writes_and_still_reads(database: Path) -> None:
    url = f"sqlite:///{database}"
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE shipments SET label = 'held'")
        result = notifier("watch", "EJ123456785JP", url=url)
        assert result.returncode == 1
        line = one_line(result)
        assert f"database {database} is locked" in line
        assert "try again" in line
        # Reads do not take the write lock, so they go on while a writer holds it.
        status = notifier("status", url=url)
        assert status.returncode == 0, status.stderr
        assert NUMBER in status.stdout
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert numbers_in(database) == [NUMBER]
    assert notifier("watch", "EJ123456785JP", url=url).returncode == 0


@contextmanager
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if not _run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)):
        pytest.skip("cannot mount a tmpfs here (the in-process SQLITE_FULL test still runs)")
    try:
        yield mount
    finally:
        _run("umount", str(mount))


def test_full_disk(database: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path) as disk:
        path = disk / database.name
        shutil.copy(database, path)
        url = f"sqlite:///{path}"
        # A connection kept open keeps the -wal and -shm files (as a running daemon does),
        # emptied, so the next write needs new blocks.
        with closing(sqlite3.connect(path)) as keeper:
            keeper.execute("PRAGMA journal_mode=WAL")
            keeper.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            filler = disk / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
            assert shutil.disk_usage(disk).free == 0
            result = notifier("watch", "EJ123456785JP", url=url)
            assert result.returncode == 1
            line = one_line(result)
            assert f"database {path}: no space left on the disk holding {disk}" in line
            assert "nothing was changed" in line
            filler.unlink()
        assert numbers_in(path) == [NUMBER]
        with closing(sqlite3.connect(path)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert notifier("watch", "EJ123456785JP", url=url).returncode == 0


def test_classify_sqlite_full_and_busy(database: Path) -> None:
    """The helper the daemon shares, on the real SQLite errors (no mount needed)."""
    url = f"sqlite:///{database}"
    with closing(sqlite3.connect(database, isolation_level=None)) as connection:
        connection.execute("CREATE TABLE filler (x)")
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(sqlite3.OperationalError) as full:
            connection.execute("INSERT INTO filler VALUES (zeroblob(1000000))")
    problem = classify(full.value, url)
    assert problem is not None
    assert problem.kind == DISK_FULL
    assert problem.transient
    with (
        closing(sqlite3.connect(database, isolation_level=None)) as holder,
        closing(sqlite3.connect(database, timeout=0, isolation_level=None)) as waiter,
    ):
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as busy:
            waiter.execute("BEGIN IMMEDIATE")
        holder.execute("ROLLBACK")
    problem = classify(busy.value, url)
    assert problem is not None
    assert problem.kind == LOCKED
    assert classify(ValueError("not ours"), url) is None


@pytest.mark.postgres
def test_postgresql_that_is_absent_refused_or_unreachable(postgres_template: str) -> None:
    from sqlalchemy.engine import make_url

    from tests.databases import POSTGRES_URL

    # postgres_template: skips (or fails in CI) when no server answers.
    server = make_url(POSTGRES_URL)
    missing = server.set(database="notifier_no_such_db").render_as_string(hide_password=False)
    result = notifier("status", url=missing)
    assert result.returncode == 1
    assert "notifier_no_such_db does not exist on that server" in one_line(result)
    stranger = server.set(username="notifier_no_such_role").render_as_string(hide_password=False)
    result = notifier("status", url=stranger)
    assert result.returncode == 1
    assert "refused the login" in one_line(result)
    closed = server.set(port=1).render_as_string(hide_password=False)
    result = notifier("status", url=closed)
    assert result.returncode == 1
    assert "cannot reach database" in one_line(result)
