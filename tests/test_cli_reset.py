"""`notifier db reset` as the operator runs it (a subprocess), on SQLite and PostgreSQL: it refuses
without --yes, refuses a database holding data without --backup PATH or --discard-data, writes the
backup first, and drops only notifier's own tables."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys

BIN = Path(sys.executable).parent / "notifier"
NUMBER = "EJ202603021JP"


def notifier(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFIER_DATABASE_URL"] = url
    return subprocess.run(
        [str(BIN), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def sql(url: str, statement: str) -> list[tuple[object, ...]]:
    """Run one statement on the database directly, as another application sharing it would."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with closing(sqlite3.connect(str(parsed.database))) as connection, connection:
            return list(connection.execute(statement).fetchall())

    async def run() -> list[tuple[object, ...]]:
        connection = await asyncpg.connect(
            host=parsed.host, port=parsed.port or 5432, user=parsed.username, database=parsed.database
        )
        try:
            return [tuple(row) for row in await connection.fetch(statement)]
        finally:
            await connection.close()

    return asyncio.run(run())


def shipments(url: str) -> int:
    count = sql(url, "SELECT count(*) FROM shipments")[0][0]
    assert isinstance(count, int)
    return count


def test_reset_refuses_then_backs_up_then_starts_over(db_url: str, tmp_path: Path) -> None:
    url = db_url
    if url.startswith("sqlite"):
        Path(str(make_url(url).database)).chmod(0o600)  # as the service's UMask=0077 writes it
    sql(url, "CREATE TABLE other_app (id integer)")  # someone else's table in the same database
    assert notifier("watch", NUMBER, url=url, cwd=tmp_path).returncode == 0

    unconfirmed = notifier("db", "reset", url=url, cwd=tmp_path)
    assert unconfirmed.returncode == 2
    assert "this deletes everything notifier stored in" in unconfirmed.stderr
    assert "(1 shipment(s))" in unconfirmed.stderr
    assert shipments(url) == 1

    no_backup = notifier("db", "reset", "--yes", url=url, cwd=tmp_path)
    assert no_backup.returncode == 2
    assert (
        "is not empty (1 shipment(s)); to go ahead, either save a copy first: `notifier db reset --yes --backup "
        in no_backup.stderr
    )
    assert (
        "or if nothing in it is worth keeping: `notifier db reset --yes --discard-data`" in no_backup.stderr
    )
    assert "nothing was changed" in no_backup.stderr
    assert shipments(url) == 1
    # Each hint is a whole command: the first refusal's backup line, pasted as printed, works.
    hinted = re.findall(r"`(notifier db reset [^`]*)`", unconfirmed.stderr)
    assert len(hinted) == 2, unconfirmed.stderr
    assert "--backup" in hinted[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFIER_DATABASE_URL"] = url
    env["PATH"] = f"{BIN.parent}{os.pathsep}{env.get('PATH', '')}"
    pasted = subprocess.run(
        hinted[0], shell=True, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert pasted.returncode == 0, pasted.stderr
    assert "backed up" in pasted.stdout
    assert shipments(url) == 0
    assert notifier("watch", NUMBER, url=url, cwd=tmp_path).returncode == 0

    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    backup = backups / "before-reset"
    reset = notifier("db", "reset", "--yes", "--backup", str(backup), url=url, cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    assert "backed up" in reset.stdout
    assert "reset: empty, at revision" in reset.stdout
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(backup)) as copy:
            assert copy.execute("SELECT number FROM shipments").fetchall() == [(NUMBER,)]
    else:
        listing = subprocess.run(["pg_restore", "--list", str(backup)], capture_output=True, text=True)
        assert listing.returncode == 0, listing.stderr
        assert "TABLE DATA public shipments" in listing.stdout
    assert shipments(url) == 0
    assert sql(url, "SELECT count(*) FROM other_app") == [(0,)]
    assert notifier("db", "current", url=url, cwd=tmp_path).returncode == 0

    assert notifier("watch", NUMBER, url=url, cwd=tmp_path).returncode == 0
    discarded = notifier("db", "reset", "--yes", "--discard-data", url=url, cwd=tmp_path)
    assert discarded.returncode == 0, discarded.stderr
    assert shipments(url) == 0


def test_reset_refuses_while_a_daemon_runs_on_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    journeys = builtin_journeys()[:1]
    with SimulatorServer(Simulator(journeys)) as server:
        (tmp_path / "c.toml").write_text(
            f'[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n'
            f'[notifications]\noutbox_dir = "outbox"\n[[watch]]\nnumber = "{NUMBER}"\n',
            encoding="utf-8",
        )
        assert notifier("db", "upgrade", url=url, cwd=tmp_path).returncode == 0
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        env["NOTIFIER_DATABASE_URL"] = url
        log = tmp_path / "run.log"
        with log.open("w") as sink:
            daemon = subprocess.Popen(
                [str(BIN), "run", "--config", "c.toml"], cwd=tmp_path, env=env, stdout=sink, stderr=sink
            )
        try:
            deadline = time.monotonic() + 60
            while "notifier running" not in log.read_text():
                assert daemon.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            refused = notifier("db", "reset", "--yes", "--discard-data", url=url, cwd=tmp_path)
            # Said before anything else: a dry run does not first hint at a command that would
            # then meet it.
            dry = notifier("db", "reset", url=url, cwd=tmp_path)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    assert dry.returncode == 1, dry.stderr
    assert "a daemon is running on" in dry.stderr
    assert "to go ahead" not in dry.stderr
    assert refused.returncode == 1, refused.stderr
    assert "a daemon is running on" in refused.stderr
    assert "stop it first" in refused.stderr
    assert shipments(url) == 1
