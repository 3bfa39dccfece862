"""What the running service holds: its settings, store, client, counters and clocks."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from notifier.config import Settings
from notifier.daemon.diskguard import DiskGuard
from notifier.net.japanpost import JapanPostClient
from notifier.net.sdnotify import Notifier as SystemdNotifier
from notifier.pipeline.activity import Activity
from notifier.pipeline.alerting import AlertDesk
from notifier.pipeline.cycle import CircuitBreaker
from notifier.pipeline.hooks import Heartbeat
from notifier.pipeline.lanes import LaneCache
from notifier.pipeline.poll import Notifier
from notifier.store import Store
from notifier.store.instances import Coordination
from notifier.web.server import WebServer

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_SCHEMA = 3


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class Counters:
    missed: int = 0
    skipped_overlap: int = 0
    errors: int = 0
    cycles: int = 0
    reloads: int = 0
    reload_failures: int = 0
    sent: int = 0


class DaemonState:
    """The service's state, shared by its start-up, reload and job methods."""

    def __init__(self, config_path: str | None, *, database_url: str | None = None) -> None:
        self.config_path = config_path
        self.database_url = database_url
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.counters = Counters()
        self.systemd = SystemdNotifier()
        self.rng = random.Random()
        self.breaker = CircuitBreaker()
        self.desk = AlertDesk()
        self.disk = DiskGuard(where="the database")
        self.lease = dt.timedelta(minutes=10)
        self.stop = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.busy: set[asyncio.Task[Any]] = set()
        self.settings: Settings
        self.store: Store
        self.client: JapanPostClient
        self.notifier: Notifier
        # The lanes' statistics (the time model's), rebuilt from the store at most hourly.
        self.lanes: LaneCache
        self._mtimes: dict[Path, float] = {}
        self._pattern_files: list[Path] = []
        # The client the running poll cycle holds: a reload retires it, and it is closed only
        # once that cycle is over (closing it under the cycle failed its requests).
        self._cycle_client: JapanPostClient | None = None
        self._retired: list[JapanPostClient] = []
        # Set by a reload during a cycle: that cycle scheduled its shipments with the old policy.
        self._reschedule_after_cycle = False
        self._started = time.monotonic()
        self._loaded_in = 0.0
        self._synced_in = 0.0
        self.coordination: Coordination | None = None
        self._scheduler: AsyncIOScheduler | None = None
        # The send job is draining; a wake-up meanwhile makes it drain once more when done.
        self._sending = False
        self._send_again = False
        # Read by the web face's health check: a stale tick means the scheduler is stuck.
        self.last_tick: dt.datetime | None = None
        self.last_good_cycle: dt.datetime | None = None
        # Counted for /metrics; the heartbeat pings [notifications] heartbeat_url after cycles.
        self.activity = Activity(started_at=utcnow())
        self.heartbeat = Heartbeat()
        # The web face ([http]), served from this loop; None without [http].
        self.web: WebServer | None = None
        self.exit_code = EXIT_OK

    async def _status(self) -> str:
        depth = await self.store.outbox_depth()
        watched = await self.store.count_active()
        paused = " mail PAUSED (pages unreadable)" if self.notifier.paused else ""
        return (
            f"{watched} watched; outbox pending {depth.get('pending', 0)}, failed {depth.get('failed', 0)}; "
            f"Japan Post circuit {self.breaker.state}{paused}{self.disk.status()}{await self.desk.status(self.store)}"
        )


def _one_line(exc: BaseException) -> str:
    """An exception as one log-friendly line: its type and the first line of its message
    (database errors append the SQL and a link on later lines)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__
