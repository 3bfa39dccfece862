"""The file of an SQLite URL, computed in one place (store.database.sqlite_path)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from notifier.store.database import make_engine, sqlite_path


def test_the_file_of_a_url_is_the_one_sqlite_opens() -> None:
    assert sqlite_path("sqlite:///notifier.db") == Path("notifier.db")
    assert sqlite_path("sqlite:////var/lib/notifier/notifier.db") == Path("/var/lib/notifier/notifier.db")
    assert sqlite_path("sqlite+aiosqlite:////srv/n.db") == Path("/srv/n.db")
    for none in ("sqlite:///:memory:", "sqlite://", "postgresql://u@db/notifier", "not a url", ""):
        assert sqlite_path(none) is None, none


def test_a_tilde_is_a_folder_name_as_for_sqlite_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "~").mkdir()
    with contextlib.closing(sqlite3.connect("~/probe.db")) as connection:
        connection.execute("CREATE TABLE t (x)")
    assert (tmp_path / "~" / "probe.db").exists()  # SQLite does not expand it
    assert sqlite_path("sqlite:///~/probe.db") == Path("~/probe.db")


def test_an_engine_on_a_missing_folder_names_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifier.store.database import DatabaseError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatabaseError, match=f"the folder {tmp_path / '~'} of database ~/n.db does not exist"):
        make_engine("sqlite:///~/n.db")
