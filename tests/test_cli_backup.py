"""`notifier db backup` as the operator runs it (a subprocess with a root shell's umask): the copy
has the database's own mode from its first byte, and a folder other users can open is refused."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "notifier"


def notifier(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["NOTIFIER_DATABASE_URL"] = url
    # The umask of a root shell: files it creates are -rw-r--r-- unless told otherwise.
    return subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$0" "$@"', str(BIN), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "notifier.db"
    path.parent.mkdir(mode=0o700)
    assert notifier("db", "upgrade", url=f"sqlite:///{path}").returncode == 0
    path.chmod(0o600)  # as the service's UMask=0077 writes it
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_copy_has_the_database_mode(database: Path, tmp_path: Path) -> None:
    database_mode = 0o640
    database.chmod(database_mode)
    backups = tmp_path / "backups"
    backups.mkdir()
    backups.chmod(0o750)  # the group may open it: not "other users"
    result = notifier("db", "backup", str(backups / "copy.db"), url=f"sqlite:///{database}")
    assert result.returncode == 0, result.stderr
    assert mode(backups / "copy.db") == database_mode
    assert sorted(p.name for p in backups.iterdir()) == ["copy.db"]
    with closing(sqlite3.connect(backups / "copy.db")) as copy:
        assert copy.execute("select count(*) from alembic_version").fetchone() == (1,)


@pytest.mark.parametrize("folder_mode", [0o755, 0o701])
def test_folder_others_can_open_is_refused(database: Path, tmp_path: Path, folder_mode: int) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    backups.chmod(folder_mode)
    result = notifier("db", "backup", str(backups / "copy.db"), url=f"sqlite:///{database}")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"not writing the backup into {backups}: other users can list or enter it" in result.stderr
    assert "--allow-open-folder" in result.stderr
    assert list(backups.iterdir()) == []

    allowed = notifier(
        "db", "backup", str(backups / "copy.db"), "--allow-open-folder", url=f"sqlite:///{database}"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert mode(backups / "copy.db") == 0o600
