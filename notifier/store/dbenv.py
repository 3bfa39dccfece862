"""Database environment problems (permissions, missing folder, full disk, locks) as one-line errors."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from notifier import hints
from notifier.store.database import SQLITE_BUSY_TIMEOUT_MS, DatabaseError, display_url, sqlite_path

# What the kinds mean to a caller (the daemon pauses on some, the CLI exits on all):
READ_ONLY = "read_only"  # the folder or file cannot be written: fix permissions or the mount
MISSING_FOLDER = "missing_folder"  # the folder of a SQLite file does not exist
DISK_FULL = "disk_full"  # no space: transient once someone frees space
LOCKED = "locked"  # another process holds the write lock: transient
CANNOT_OPEN = "cannot_open"  # other reasons a file cannot be opened
NOT_A_DATABASE = "not_a_database"  # the file is something else, or corrupt
IO_ERROR = "io_error"  # the disk itself failed
UNREACHABLE = "unreachable"  # a database server that does not answer or refuses us

TRANSIENT_KINDS = frozenset({DISK_FULL, LOCKED, UNREACHABLE})


class DatabaseEnvironmentError(DatabaseError):
    """The database is fine as configured but its surroundings are not: one line says which
    path and what to do. Raised before anything is committed, so nothing is lost."""

    def __init__(self, message: str, *, kind: str, path: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path

    @property
    def transient(self) -> bool:
        """Worth retrying later without anyone changing the configuration."""
        return self.kind in TRANSIENT_KINDS


SQLITE_FULL = 13
# "An attempt to enlarge the -shm file failed; this may indicate that the volume is out of
# space" (SQLite's result codes page): what opening a cleanly closed WAL database on a full disk gives.
SQLITE_IOERR_SHMSIZE = 4874
POSTGRES_DISK_FULL = "53100"
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or anything it wraps, says the disk (or quota) is full: SQLite's
    SQLITE_FULL, PostgreSQL's disk_full, or ENOSPC/EDQUOT from the OS."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)
            if code is not None and (code & 0xFF == SQLITE_FULL or code == SQLITE_IOERR_SHMSIZE):
                return True
            if "disk is full" in str(error):
                return True
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return True
        if getattr(error, "sqlstate", None) == POSTGRES_DISK_FULL:
            return True
        for inner in (getattr(error, "orig", None), error.__cause__, error.__context__):
            if isinstance(inner, BaseException):
                stack.append(inner)
    return False


def _driver_error(exc: BaseException) -> BaseException | None:
    """The driver's own exception under SQLAlchemy's wrapper, or an OSError, anywhere in the chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.orig is not None:
            return current.orig
        if isinstance(current, sqlite3.Error | OSError):
            return current
        current = current.__cause__ or current.__context__
    return None


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return f"uid {os.geteuid()}"


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _no_space(path: Path) -> bool:
    try:
        info = os.statvfs(path)
    except OSError:
        return False
    return info.f_bavail == 0 or info.f_favail == 0


def _sqlite_access(path: Path, message: str) -> DatabaseEnvironmentError:
    """Why a SQLite file cannot be opened or written, found by looking at the file system."""
    return sqlite_file_problem(path) or DatabaseEnvironmentError(
        f"cannot open database {path}: {message}", kind=CANNOT_OPEN, path=str(path)
    )


def database_file_problem(url: str) -> DatabaseEnvironmentError | None:
    """Why the SQLite database at `url` could not be created, opened or written here (its folder
    missing or read-only, the file or its -wal/-shm not writable), looked up without opening it;
    None when nothing is wrong that way, and for other databases (their server decides)."""
    path = sqlite_path(url)
    return None if path is None else sqlite_file_problem(path.absolute())


def sqlite_file_problem(path: Path) -> DatabaseEnvironmentError | None:
    """What in the file system keeps SQLite from writing `path`, or None."""
    folder = path.parent
    name = path.name
    if not folder.is_dir():
        return DatabaseEnvironmentError(
            f"the folder {folder} of database {path} does not exist: create it, writable by the user "
            f"that runs notifier ({_user()} here), or fix [database] url",
            kind=MISSING_FOLDER,
            path=str(path),
        )
    if _read_only_mount(folder):
        return DatabaseEnvironmentError(
            f"database {path} is on a read-only file system: SQLite writes {name}-wal and {name}-shm "
            "beside it, so its folder must be writable (for systemd, list it in ReadWritePaths= "
            "or StateDirectory=), or point [database] url elsewhere",
            kind=READ_ONLY,
            path=str(path),
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        return DatabaseEnvironmentError(
            f"database folder {folder} is not writable by {_user()}: SQLite writes {name}-wal and "
            f"{name}-shm beside {name}, so make the folder and {name} writable by the user that runs "
            "notifier (chown or chmod), or point [database] url elsewhere",
            kind=READ_ONLY,
            path=str(path),
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return DatabaseEnvironmentError(
            f"database file {path} is not readable and writable by {_user()}: make it (and its "
            "-wal and -shm files) writable by the user that runs notifier (chown or chmod)",
            kind=READ_ONLY,
            path=str(path),
        )
    for sidecar in (path.with_name(name + "-wal"), path.with_name(name + "-shm")):
        if sidecar.exists() and not os.access(sidecar, os.R_OK | os.W_OK):
            return DatabaseEnvironmentError(
                f"{sidecar} (part of database {path}) is not writable by {_user()}: make it "
                "writable by the user that runs notifier (chown or chmod)",
                kind=READ_ONLY,
                path=str(path),
            )
    return None


def _full(where: str, folder: Path | None) -> DatabaseEnvironmentError:
    disk = f"the disk holding {folder}" if folder else "the database server's disk"
    return DatabaseEnvironmentError(
        f"database {where}: no space left on {disk}; nothing was changed: free some space, then run "
        "the command again",
        kind=DISK_FULL,
        path=where,
    )


def _locked(where: str) -> DatabaseEnvironmentError:
    return DatabaseEnvironmentError(
        f"database {where} is locked: another process held its write lock for more than "
        f"{SQLITE_BUSY_TIMEOUT_MS // 1000} s (a long-running notifier command, a backup, an sqlite3 shell?); "
        "nothing was changed: try again once it has finished",
        kind=LOCKED,
        path=where,
    )


def _classify_sqlite(error: BaseException, path: Path) -> DatabaseEnvironmentError | None:
    name = str(getattr(error, "sqlite_errorname", ""))
    message = str(error)
    code = getattr(error, "errno", None)
    where = str(path)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in message:
        return _locked(where)
    if is_disk_full(error):
        return _full(where, path.parent)
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")) or (
        isinstance(error, OSError) and code in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT)
    ):
        return _sqlite_access(path, message)
    if "readonly database" in message or "unable to open database file" in message:
        return _sqlite_access(path, message)
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return DatabaseEnvironmentError(
            f"{path} is not a notifier database or is damaged ({message}): check [database] url, "
            "or restore it from a backup",
            kind=NOT_A_DATABASE,
            path=where,
        )
    if name.startswith("SQLITE_IOERR") or isinstance(error, OSError):
        if _no_space(path.parent):
            return _full(where, path.parent)
        return DatabaseEnvironmentError(
            f"I/O error on database {path} ({name or message}); nothing was changed: check the disk "
            "(dmesg), then run the command again",
            kind=IO_ERROR,
            path=where,
        )
    return None


def _classify_server(error: BaseException, where: str) -> DatabaseEnvironmentError | None:
    sqlstate = str(getattr(error, "sqlstate", "") or getattr(error, "pgcode", "") or "")
    if is_disk_full(error):
        return _full(where, None)
    if sqlstate in ("55P03", "40P01"):
        return _locked(where)
    if sqlstate == "25006":
        return DatabaseEnvironmentError(
            f"database {where} is read-only (a standby, or default_transaction_read_only): "
            "point [database] url at the primary",
            kind=READ_ONLY,
            path=where,
        )
    if sqlstate == "3D000":
        return DatabaseEnvironmentError(
            f"database {where} does not exist on that server ({error}): create it (createdb), "
            f"then run {hints.command('db upgrade')}; or fix [database] url",
            kind=CANNOT_OPEN,
            path=where,
        )
    if sqlstate in ("28000", "28P01"):
        return DatabaseEnvironmentError(
            f"database {where} refused the login ({error}): check the user and password in "
            "[database] url and the server's pg_hba.conf",
            kind=CANNOT_OPEN,
            path=where,
        )
    if sqlstate.startswith("08") or sqlstate == "57P03":
        return DatabaseEnvironmentError(
            f"cannot reach database {where} ({error}); is the server running and is [database] url right?",
            kind=UNREACHABLE,
            path=where,
        )
    if isinstance(error, OSError):
        return DatabaseEnvironmentError(
            f"cannot reach database {where}: {error.strerror or error}; is the server running and "
            "is [database] url right?",
            kind=UNREACHABLE,
            path=where,
        )
    return None


def classify(exc: BaseException, url: str) -> DatabaseEnvironmentError | None:
    """The environment problem behind `exc`, for the database at `url`; None when `exc` is
    something else (a bug, a constraint violation), which callers must not hide."""
    if isinstance(exc, DatabaseEnvironmentError):
        return exc
    error = _driver_error(exc)
    if error is None:
        return None
    path = sqlite_path(url)
    if path is not None:
        return _classify_sqlite(error, path.absolute())
    try:
        server = make_url(url).get_backend_name() != "sqlite"
    except Exception:
        return None
    return _classify_server(error, display_url(url)) if server else None


@contextmanager
def explained(url: str) -> Iterator[None]:
    """Turn environment problems with the database at `url` into DatabaseEnvironmentError."""
    try:
        yield
    except (DBAPIError, sqlite3.Error, OSError) as exc:
        problem = classify(exc, url)
        if problem is None:
            raise
        raise problem from exc
