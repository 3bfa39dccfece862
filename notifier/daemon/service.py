"""The service: scheduler wiring, config reloads, signals, systemd notifications, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from notifier.config import (
    EXAMPLE_IDENTITY_WARNING,
    load_settings,
    start_refusals,
)
from notifier.daemon.diskguard import DiskGuard
from notifier.daemon.jobs import DaemonJobs
from notifier.daemon.state import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, EXIT_SCHEMA, _one_line, utcnow
from notifier.errors import ConfigError, NotifierError
from notifier.pipeline.lanes import LaneCache
from notifier.store import Store
from notifier.store.database import sqlite_path
from notifier.store.instances import Coordination, heartbeat_period
from notifier.web.server import ListenError, WebServer, bind

logger = logging.getLogger(__name__)


class InstanceLockedError(NotifierError):
    """Another notifier already runs on this SQLite database."""


def acquire_instance_lock(database_url: str) -> int | None:
    """SQLite allows one daemon per database file: hold an exclusive lock beside it.

    The lock dies with the process (kill -9 included), so a crash never leaves it stale.
    PostgreSQL needs none: instances share the work through leases.
    """
    database = sqlite_path(database_url)
    if database is None:
        return None
    path = database.resolve().with_suffix(".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InstanceLockedError(
            f"another notifier is already running on {database} (lock {path}); "
            "SQLite takes one daemon per database (use PostgreSQL for several)"
        ) from None
    with contextlib.suppress(OSError):  # the pid is for people; a full disk must not stop us here
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class Daemon(DaemonJobs):
    """Runs until SIGTERM or SIGINT; SIGHUP or an edited config file reloads the configuration."""

    async def run(self) -> int:
        self._started = time.monotonic()
        try:
            self.settings = await asyncio.to_thread(
                load_settings, self.config_path, database_url=self.database_url
            )
            self._loaded_in = time.monotonic() - self._started
            # The daemon sends mail: a login without its password is an error here, as it is
            # not for `status` or `db backup` run beside the service. `config check` reports
            # the same list in the same words.
            refusals = start_refusals(self.settings)
            if refusals:
                raise ConfigError("\n".join(refusals))
            if self.settings.example_identity_allowed:
                logger.warning("%s", EXAMPLE_IDENTITY_WARNING, extra={"action": "example_identity"})
        except ConfigError as exc:
            # One self-contained line per problem: under journald each line is an entry.
            for problem in str(exc).splitlines():
                logger.error("invalid configuration: %s", problem, extra={"action": "config_invalid"})
            return EXIT_CONFIG
        except Exception as exc:
            # Whatever the loader let through is still a configuration that cannot be used.
            logger.error("invalid configuration: cannot load it: %s", _one_line(exc))
            return EXIT_CONFIG
        self.disk = DiskGuard.for_database(self.settings.database.url)
        try:
            lock = acquire_instance_lock(self.settings.database.url)
        except InstanceLockedError as exc:
            logger.error("%s", exc)
            return EXIT_FAILURE
        try:
            sock = self._bind_web()
        except ListenError as exc:
            logger.error("%s", exc, extra={"action": "web_failed"})
            if lock is not None:
                os.close(lock)
            return EXIT_FAILURE
        try:
            from notifier.store.database import SchemaError

            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop.set)
            url = self.settings.database.url
            try:
                # On a full disk even opening a WAL database can fail: wait, like the start-up writes.
                store = await self.disk.retry_while_full(
                    lambda: Store.open(url), self.systemd, self.stop, utcnow
                )
            except SchemaError as exc:
                logger.error("%s", exc)
                return EXIT_SCHEMA
            if store is None:
                return EXIT_OK
            self.store = store
            self.lanes = LaneCache(store)
            try:
                code = await self._serve(sock)
            finally:
                await self.store.close()
            # The last line of a run: what systemd's journal shows after "stopping".
            logger.info(
                "notifier stopped (exit %d after %.0fs)",
                code,
                time.monotonic() - self._started,
                extra={"action": "stopped", "owner": self.owner},
            )
            return code
        finally:
            if sock is not None:
                sock.close()
            if lock is not None:
                os.close(lock)

    def _bind_web(self) -> socket.socket | None:
        """The [http] listen socket, taken at start-up: a port in use stops the start here."""
        http = self.settings.http
        return bind(http.host, http.port) if http is not None else None

    async def _start_web(self, sock: socket.socket) -> None:
        from notifier.web.admin import admin_routes
        from notifier.web.api import api_routes
        from notifier.web.app import build_app
        from notifier.web.intake import intake_routes
        from notifier.web.ops import ops_routes

        routes = [*ops_routes(self), *admin_routes(self), *api_routes(self), *intake_routes(self)]
        self.web = WebServer(build_app(self, extra_routes=routes), sock)
        try:
            task = await self.web.start()
        except Exception as exc:
            # The socket was bound, so this is unexpected: stop the way a signal would.
            logger.error(
                "web face could not start: %s; stopping",
                _one_line(exc),
                exc_info=exc,
                extra={"action": "web_failed"},
            )
            self.exit_code = EXIT_FAILURE
            self.stop.set()
            return
        task.add_done_callback(self._web_ended)
        http = self.settings.http
        logger.info(
            "web face listening on %s for %s",
            http.listen if http else "?",
            http.public_url if http else "?",
            extra={"action": "web_listening"},
        )

    def _web_ended(self, task: asyncio.Task[None]) -> None:
        if self.stop.is_set():
            return
        # Unsubscribe links must work while the daemon runs: a web face that died stops the
        # daemon (systemd restarts it) rather than leaving it half up.
        error = None if task.cancelled() else task.exception()
        logger.error(
            "web face stopped unexpectedly (%s); stopping the daemon",
            _one_line(error) if error else "no error",
            exc_info=error,
            extra={"action": "web_failed"},
        )
        self.exit_code = EXIT_FAILURE
        self.stop.set()

    async def _serve(self, sock: socket.socket | None = None) -> int:
        loop = asyncio.get_running_loop()
        # A full disk at start-up waits for space, saying why, instead of exiting into a restart loop.
        if not await self.disk.retry_while_full(self._start_up, self.systemd, self.stop, utcnow):
            if hasattr(self, "client"):
                await self.client.aclose()
            return EXIT_OK
        self._remember_mtimes()
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        scheduler = AsyncIOScheduler(
            job_defaults={
                # One run at a time; a backlog after a stall collapses into one run; a late run
                # still runs (None = no grace limit), because skipping a poll or a send would
                # only delay news: there is nothing a late run can do wrong.
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": None,
            }
        )
        scheduler.add_listener(
            self._on_job_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )
        tick = self.settings.poll_tick
        scheduler.add_job(
            self._guarded(self._poll), IntervalTrigger(seconds=tick), id="poll", next_run_time=utcnow()
        )
        scheduler.add_job(self._guarded(self._send), IntervalTrigger(seconds=max(1.0, tick)), id="outbox")
        scheduler.add_job(
            self._guarded(self._housekeeping),
            IntervalTrigger(minutes=5),
            id="housekeeping",
            next_run_time=utcnow(),
        )
        scheduler.add_job(self._check_files, IntervalTrigger(seconds=2), id="config-files")
        scheduler.add_job(
            self._guarded(self._alerts),
            IntervalTrigger(seconds=min(5.0, max(1.0, tick))),
            id="alerts",
            next_run_time=utcnow(),
        )
        scheduler.add_job(
            self._guarded(self._beat),
            IntervalTrigger(seconds=heartbeat_period(self.settings.poll_tick)),
            id="heartbeat",
        )
        self._scheduler = scheduler
        # A message a poll queues goes out now, not at the send job's next tick.
        self.store.on_queued(self._wake_sender)
        scheduler.start()
        if sock is not None:
            await self._start_web(sock)
        self.systemd.ready(await self._status())
        logger.info(
            "notifier running (ready in %.2fs: configuration %.2fs, watchlist sync %.2fs)",
            time.monotonic() - self._started,
            self._loaded_in,
            self._synced_in,
            extra={"action": "ready", "owner": self.owner},
        )
        watchdog = asyncio.create_task(self._watchdog())
        reloader = asyncio.create_task(self._reloader())
        try:
            await self.stop.wait()
        finally:
            self.systemd.stopping()
            logger.info("stopping: letting running polls and sends finish", extra={"action": "stopping"})
            scheduler.pause()
            watchdog.cancel()
            reloader.cancel()
            if self.web is not None:
                await self.web.stop()
                logger.info("web face stopped", extra={"action": "web_stopped"})
            if self.busy:
                # Polls commit or roll back as a whole; sends end as sent or back to pending.
                _, pending = await asyncio.wait(self.busy, timeout=20)
                for task in pending:
                    task.cancel()
            scheduler.shutdown(wait=False)
            self.desk.webhook.abandon()
            self.desk.channels.close()
            if self.coordination is not None:
                with contextlib.suppress(Exception):
                    await self.coordination.stop()
            await self.client.aclose()
            for client in self._retired:
                await client.aclose()
        return self.exit_code

    async def _start_up(self) -> bool:
        if self.store.dialect == "sqlite":
            shipments, messages = await self.store.release_all_leases()
            if shipments or messages:
                logger.info(
                    "took over from a stopped instance: %d shipment and %d message leases released",
                    shipments,
                    messages,
                    extra={"action": "leases_released"},
                )
        if self.coordination is None:
            self.coordination = Coordination(self.store.database, self.owner, tick=self.settings.poll_tick)
        await self.coordination.beat(utcnow())
        await self._apply(self.settings)
        # The policy may have changed while stopped: due times follow the configuration now.
        await self._reschedule(self.settings)
        await self.desk.start(self.store, utcnow())
        return True

    def _guarded(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if self.stop.is_set():
                return
            task = asyncio.current_task()
            if task is not None:
                self.busy.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                # Cancelled by the stop after its grace period: the transaction in flight
                # rolled back; not an error.
                logger.info("job cancelled at shutdown", extra={"action": "job_cancelled"})
                raise
            except Exception as exc:
                self.counters.errors += 1
                # A full disk fails every job the same way: one line a minute, not a traceback each.
                if not self.disk.failed(exc, utcnow()):
                    logger.exception("job failed", extra={"action": "job_failed"})
            finally:
                if task is not None:
                    self.busy.discard(task)

        return run

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            self.counters.missed += 1
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self.counters.skipped_overlap += 1


def run(config_path: str | None, database_url: str | None = None) -> int:
    return asyncio.run(Daemon(config_path, database_url=database_url).run())
