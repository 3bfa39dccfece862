"""Disk-full resilience: recognise "no space" errors, say so once a minute, wait for space, report recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from notifier.net.sdnotify import Notifier as SystemdNotifier
from notifier.store import Store
from notifier.store.database import sqlite_path
from notifier.store.dbenv import is_disk_full

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["DISK_FULL", "DiskGuard", "database_folder", "is_disk_full"]

LOG_EVERY = dt.timedelta(minutes=1)
PROBE_EVERY = 5.0
# Writes "working" again on a volume with a few pages free only fill it up again at once.
MIN_FREE_BYTES = 1 << 20
DISK_FULL = "disk_full"


def database_folder(url: str) -> Path | None:
    """The folder an SQLite database lives in (where its -wal file grows); None for a server."""
    database = sqlite_path(url)
    return None if database is None else database.resolve().parent


def free_bytes(folder: Path | None) -> int | None:
    if folder is None:
        return None
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@dataclass(slots=True)
class DiskGuard:
    """Counts writes refused for lack of space and turns them into one log line a minute
    instead of a traceback per job. `full` stays set until a write has really worked again."""

    where: str
    folder: Path | None = None
    full_since: dt.datetime | None = None
    failures: int = 0
    last_logged: dt.datetime | None = None

    @classmethod
    def for_database(cls, url: str) -> DiskGuard:
        folder = database_folder(url)
        return cls(where=str(folder) if folder else "the database server", folder=folder)

    @property
    def full(self) -> bool:
        return self.full_since is not None

    def describe(self) -> str:
        free = free_bytes(self.folder)
        return f"{self.where} ({_size(free)} free)" if free is not None else self.where

    def failed(self, exc: BaseException, now: dt.datetime, *, starting: bool = False) -> bool:
        """Take `exc` if it is a disk-full error (True), logging at most once a minute."""
        if not is_disk_full(exc):
            return False
        self.note_full(now, starting=starting)
        return True

    def note_full(self, now: dt.datetime, *, starting: bool = False) -> None:
        if self.full_since is None:
            self.full_since = now
        self.failures += 1
        if self.last_logged is None or now - self.last_logged >= LOG_EVERY:
            self.last_logged = now
            if starting:
                logger.error(
                    "cannot start: the disk is full, database writes fail on %s; waiting for free space "
                    "(checked every %gs)",
                    self.describe(),
                    PROBE_EVERY,
                    extra={"action": "disk_full"},
                )
            else:
                logger.error(
                    "disk full: database writes fail on %s since %s (%d failed); polling and sending "
                    "wait, nothing committed is lost; free some space",
                    self.describe(),
                    f"{self.full_since:%H:%M:%S}Z",
                    self.failures,
                    extra={"action": "disk_full"},
                )

    def status(self) -> str:
        if self.full_since is None:
            return ""
        return f"; DISK FULL since {self.full_since:%H:%M}Z: database writes fail on {self.describe()}"

    def space_back(self) -> bool:
        free = free_bytes(self.folder)
        return free is None or free >= MIN_FREE_BYTES

    async def probe(self, store: Store, now: dt.datetime) -> bool:
        """While full: try the one write that matters, the alert that says so. True once it worked."""
        if self.full_since is None:
            return True
        if not self.space_back():
            return False
        since, failures = self.full_since, self.failures
        minutes = max(1, round((now - since).total_seconds() / 60))
        try:
            await store.raise_alert(
                DISK_FULL,
                f"the disk was full for about {minutes} min from {since:%Y-%m-%d %H:%M}Z: database writes "
                f"failed on {self.where} ({failures} failed attempts); polling and sending waited and have resumed, "
                "nothing committed was lost. Keep more space free there.",
                now=now,
            )
        except Exception as exc:
            if self.failed(exc, now):
                return False
            raise
        self.full_since = None
        self.failures = 0
        self.last_logged = None
        logger.warning(
            "disk space is back: database writes work again on %s after %d min",
            self.describe(),
            minutes,
            extra={"action": "disk_recovered"},
        )
        await store.checkpoint()  # hand the WAL's space back at once
        return True

    async def retry_while_full(
        self,
        attempt: Callable[[], Awaitable[T]],
        systemd: SystemdNotifier,
        stop: asyncio.Event,
        clock: Callable[[], dt.datetime],
    ) -> T | None:
        """Run a start-up step, retrying while the disk is full instead of exiting (which would
        only become a restart loop). None if asked to stop meanwhile."""
        while True:
            if not self.space_back():
                # Start-up may have nothing to write, but the first poll will: wait here, where
                # systemd sees why, not in a watchdog restart loop.
                self.note_full(clock(), starting=True)
            else:
                try:
                    return await attempt()
                except Exception as exc:
                    if not self.failed(exc, clock(), starting=True):
                        raise
            # Not READY yet: keep systemd's start timeout from firing while we wait.
            systemd.notify(
                f"EXTEND_TIMEOUT_USEC={int(PROBE_EVERY * 3 * 1_000_000)}",
                f"STATUS=waiting for disk space: database writes fail on {self.describe()}",
            )
            try:
                await asyncio.wait_for(stop.wait(), PROBE_EVERY)
                return None
            except TimeoutError:
                continue
