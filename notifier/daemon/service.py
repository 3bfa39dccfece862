"""The service: scheduler wiring, config reloads, signals, systemd notifications, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import text
from sqlalchemy.engine import make_url

from notifier import hints
from notifier.config import (
    EXAMPLE_IDENTITY_WARNING,
    Settings,
    load_settings,
    matching_watch_files,
    sending_smtp,
    start_refusals,
    web_secret,
)
from notifier.core.numbers import parse_number
from notifier.core.reschedule import moves
from notifier.core.sending import OutboxPolicy
from notifier.core.views import ConfiguredWatch
from notifier.daemon.diskguard import DiskGuard
from notifier.errors import ConfigError, NotifierError
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.net.mailer import transport_for
from notifier.net.sdnotify import Notifier as SystemdNotifier
from notifier.net.sdnotify import watchdog_interval
from notifier.pipeline.activity import Activity, cycle_failing
from notifier.pipeline.alerting import AlertDesk
from notifier.pipeline.cycle import CircuitBreaker, CycleStats, run_cycle
from notifier.pipeline.hooks import Heartbeat
from notifier.pipeline.outbox import drain, reevaluate_quiet_hours
from notifier.pipeline.poll import Notifier, queue_operator_digest, queue_timed
from notifier.pipeline.wiring import notifier_for, outbox_policy
from notifier.store import Store
from notifier.store.instances import Coordination, heartbeat_period, share_circuit
from notifier.web.server import ListenError, WebServer, bind

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_SCHEMA = 3


class InstanceLockedError(NotifierError):
    """Another notifier already runs on this SQLite database."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def acquire_instance_lock(database_url: str) -> int | None:
    """SQLite allows one daemon per database file: hold an exclusive lock beside it.

    The lock dies with the process (kill -9 included), so a crash never leaves it stale.
    PostgreSQL needs none: instances share the work through leases.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).expanduser().resolve().with_suffix(".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InstanceLockedError(
            f"another notifier is already running on {url.database} (lock {path}); "
            "SQLite takes one daemon per database (use PostgreSQL for several)"
        ) from None
    with contextlib.suppress(OSError):  # the pid is for people; a full disk must not stop us here
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@dataclass(slots=True)
class Counters:
    missed: int = 0
    skipped_overlap: int = 0
    errors: int = 0
    cycles: int = 0
    reloads: int = 0
    reload_failures: int = 0
    sent: int = 0


class Daemon:
    """Runs until SIGTERM or SIGINT; SIGHUP or an edited config file reloads the configuration."""

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

    # --- start-up --------------------------------------------------------------------------

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
        from notifier.web.app import build_app
        from notifier.web.ops import ops_routes

        self.web = WebServer(build_app(self, extra_routes=[*ops_routes(self), *admin_routes(self)]), sock)
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
            self.coordination = Coordination(self.store.engine, self.owner, tick=self.settings.poll_tick)
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

    # --- configuration -----------------------------------------------------------------------

    async def _apply(self, settings: Settings) -> None:
        """Make the running service match `settings`: client, rules, templates, watches.

        The database goes first: when syncing the watches fails, nothing has changed."""
        notifier = notifier_for(settings)
        await self._sync_watches(settings)
        pacer = None
        if self.coordination is not None:
            pacer = self.coordination.pacer(
                settings.japanpost.base_url, settings.japanpost.request_interval, settings.japanpost.budget
            )
            if pacer is not None:
                await pacer.ensure()
        client = JapanPostClient(
            ClientSettings(
                base_url=settings.japanpost.base_url, request_interval=settings.japanpost.request_interval
            ),
            pacer=pacer,
        )
        old_client: JapanPostClient | None = getattr(self, "client", None)
        self.client = client
        if old_client is not None:
            if self._cycle_client is not None and old_client is self._cycle_client:
                self._retired.append(self._cycle_client)
            else:
                await old_client.aclose()
        paused = getattr(self, "notifier", None)
        notifier.paused = paused.paused if paused is not None else False
        self.notifier = notifier
        self.settings = settings
        # The breaker keeps its state across reloads; only its limits follow the config.
        self.breaker.threshold = settings.japanpost.circuit_failures
        self.breaker.base = settings.japanpost.circuit_pause
        self.breaker.cap = settings.japanpost.circuit_pause_max

    async def _sync_watches(self, settings: Settings) -> None:
        """The configuration decides the numbers it lists: they are watched with exactly its
        subscribers, and those it listed before and no longer does stop (their history stays).
        Numbers added with `notifier watch` or `notifier poll` are the CLI's: never unwatched here."""
        watches = [
            ConfiguredWatch(
                number=parse_number(watch.number),
                label=watch.label,
                destination=watch.destination,
                tags=watch.tags,
                subscribers=tuple((email, watch.locale, watch.time_zone) for email in watch.subscribers),
                name=watch.name,
            )
            for watch in settings.watches
        ]
        started = time.monotonic()
        result = await self.store.sync_config_watches(watches, now=utcnow())
        self._synced_in = time.monotonic() - started
        if result.added or result.updated or result.unwatched:
            logger.info(
                "watchlist synced: %d watched from the configuration, %d newly or again, %d updated, %d unwatched",
                len(watches),
                len(result.added),
                result.updated,
                len(result.unwatched),
                extra={"action": "watches_synced"},
            )
        for number in result.taken_over:
            logger.info(
                "%s: now watched by the configuration (it was added with notifier watch/poll); "
                "its subscribers are the configuration's from now on",
                number,
                extra={"action": "watch_taken_over", "number": number},
            )
        for number in result.reused:
            logger.warning(
                "not watched: %s is in the watchlist, but Japan Post now shows another parcel under "
                "it (see the number_reused alert); remove it from the watchlist (if a new parcel "
                "of yours has this number: remove it, reload, then %s)",
                number,
                hints.command(f"watch {number}"),
                extra={"action": "not_watched", "number": number, "reason": "number_reused"},
            )
        for number in result.unwatched:
            logger.info(
                "no longer watched: %s (removed from the configuration's watchlist; history kept)",
                number,
                extra={"action": "unwatched", "number": number, "reason": "removed_from_config"},
            )

    async def _reschedule(self, settings: Settings) -> int:
        """Move due times the current polling policy would not have given (a reload with new
        intervals takes effect now, not at each shipment's old due time)."""
        now = utcnow()
        rows = await self.store.scheduled(now=now)
        moved = moves(rows, settings.polling, now=now, rng=self.rng)
        await self.store.move_due_times(moved, now=now)
        if moved:
            logger.info(
                "rescheduled %d of %d waiting shipments for the polling policy",
                len(moved),
                len(rows),
                extra={"action": "rescheduled"},
            )
        return len(moved)

    def _watched_files(self) -> list[Path]:
        files = [*self.settings.watch_files]
        if self.settings.source is not None:
            files.append(self.settings.source)
        return files

    def _remember_mtimes(self) -> None:
        self._mtimes = {}
        for path in self._watched_files():
            with contextlib.suppress(OSError):
                self._mtimes[path] = path.stat().st_mtime
        # What the patterns match now, whether or not the reload that follows succeeds: a
        # refused file is not retried every two seconds, only when something changes again.
        self._pattern_files = matching_watch_files(self.settings.watch_patterns, self.settings.source)

    async def _check_files(self) -> None:
        for path in self._watched_files():
            try:
                mtime = path.stat().st_mtime
            except OSError:
                mtime = -1.0
            if self._mtimes.get(path) != mtime:
                self.reload_requested.set()
                return
        # A watch file dropped into (or removed from) a watch_files folder is a change too.
        if self.settings.watch_patterns:
            found = await asyncio.to_thread(
                matching_watch_files, self.settings.watch_patterns, self.settings.source
            )
            if found != self._pattern_files:
                self.reload_requested.set()

    async def _reloader(self) -> None:
        while True:
            await self.reload_requested.wait()
            self.reload_requested.clear()
            try:
                await self.reload()
            except Exception as exc:
                # reload() reports its own failures; this keeps the reloader alive whatever
                # escapes it, so the next SIGHUP or file change is still heard.
                self.counters.reload_failures += 1
                logger.error(
                    "reload failed, keeping the running configuration: %s",
                    _one_line(exc),
                    extra={"action": "reload_failed"},
                )

    def _refuse(self, reason: str, *details: str) -> bool:
        self.counters.reload_failures += 1
        # One self-contained line per problem: under journald each line is its own entry.
        for detail in details:
            logger.error(
                "reload refused, keeping the running configuration: %s",
                detail.strip(),
                extra={"action": "reload_failed"},
            )
        self.systemd.ready(f"reload failed, old config kept: {reason}")
        return False

    async def reload(self) -> bool:
        """Parse and check the whole new configuration; apply it only if it is valid.

        Loading runs in a thread, so polls, sends and the watchdog go on meanwhile. Any failure
        (invalid config, an error the loader did not expect, a database error while syncing the
        watches) is logged in one line, counted, and leaves the running configuration in place."""
        self.systemd.reloading()
        self._remember_mtimes()
        started = time.monotonic()
        try:
            new = await asyncio.to_thread(load_settings, self.config_path, database_url=self.database_url)
            sending_smtp(new)
            web_secret(new)
        except ConfigError as exc:
            return self._refuse(str(exc).splitlines()[0], *str(exc).splitlines())
        except Exception as exc:
            return self._refuse(_one_line(exc), f" cannot load it: {_one_line(exc)}")
        if new.database.url != self.settings.database.url:
            return self._refuse(
                "database.url changed (restart needed)",
                " database.url cannot change while running; restart instead",
            )
        if _listening(new) != _listening(self.settings):
            return self._refuse(
                "[http] listen changed (restart needed)",
                " [http] (added, removed, or http.listen changed) cannot change while running; restart instead",
            )
        old_policy = self.settings.polling
        # The default zone moves waiting messages as the window does.
        old_quiet = _quiet(outbox_policy(self.settings))
        try:
            await self._apply(new)
        except Exception as exc:
            return self._refuse(_one_line(exc), f" applying it failed: {_one_line(exc)}")
        self.counters.reloads += 1
        if _quiet(outbox_policy(new)) != old_quiet:
            await self._quiet_hours_changed(new)
        if new.polling != old_policy:
            if self._cycle_client is not None:
                self._reschedule_after_cycle = True
            try:
                await self._reschedule(new)
            except Exception as exc:
                self._reschedule_after_cycle = True
                logger.error(
                    "rescheduling for the new polling policy failed (retried after the next cycle): %s",
                    _one_line(exc),
                    extra={"action": "reschedule_failed"},
                )
        logger.info(
            "configuration reloaded in %.2fs (watchlist sync %.2fs)",
            time.monotonic() - started,
            self._synced_in,
            extra={"action": "reloaded", "watches": len(new.watches)},
        )
        self.systemd.ready(await self._status())
        return True

    async def _quiet_hours_changed(self, new: Settings) -> None:
        """Messages waiting for the end of quiet hours go when the new window says, not the old."""
        try:
            moved = await reevaluate_quiet_hours(self.store, outbox_policy(new), now=utcnow())
        except Exception as exc:
            logger.error(
                "quiet_hours changed but waiting messages could not be rescheduled (they go at the "
                "old time, then follow the new hours): %s",
                _one_line(exc),
                extra={"action": "quiet_hours_failed"},
            )
            return
        logger.info(
            "quiet_hours changed: %d waiting message(s) rescheduled",
            moved,
            extra={"action": "quiet_hours_changed", "moved": moved},
        )

    # --- jobs ------------------------------------------------------------------------------

    async def _poll(self) -> None:
        self.last_tick = utcnow()
        # A claim must be worked through before its lease runs out, at the configured pace.
        interval = self.settings.japanpost.request_interval
        limit = 500 if interval <= 0 else max(10, min(500, int(self.lease.total_seconds() / 2 / interval)))
        # Long enough to poll the whole claim twice over at the configured pace, and no longer:
        # a crashed instance's shipments come back that much sooner.
        self.lease = self.settings.polling.lease or max(
            dt.timedelta(minutes=1), dt.timedelta(seconds=limit * max(interval, 0.05) * 4)
        )
        if self._reschedule_after_cycle:
            self._reschedule_after_cycle = False
            await self._reschedule(self.settings)
        client, notifier = self.client, self.notifier
        shared = getattr(client.pacer, "paused_for", None)
        if shared is not None:
            # Another instance's Retry-After or open circuit holds this one too.
            self.breaker.open_until, _ = share_circuit(self.breaker.open_until, await shared(), utcnow())
        self._cycle_client = client
        self.activity.cycle_began(utcnow(), self.lease)
        stats: CycleStats | None = None
        try:
            stats = await run_cycle(
                self.store,
                client,
                notifier,
                owner=self.owner,
                policy=self.settings.polling,
                breaker=self.breaker,
                clock=utcnow,
                rng=self.rng,
                limit=limit,
                lease=self.lease,
                stopping=self.stop.is_set,
                due_within=dt.timedelta(seconds=self.settings.poll_tick),
            )
        finally:
            self._cycle_client = None
            if notifier is not self.notifier:
                # Reloaded during the cycle: what the cycle learned about the pages is newer.
                self.notifier.paused = notifier.paused
            retired, self._retired = self._retired, []
            for old in retired:
                await old.aclose()
            self._cycle_ended(stats)
        if shared is not None:
            _, publish = share_circuit(self.breaker.open_until, await shared(), utcnow())
            if publish > 0:
                await client.pacer.pause(publish, "circuit open")
        self.counters.cycles += 1
        self.last_good_cycle = utcnow()
        if stats.claimed:
            logger.info(
                "poll cycle: claimed=%d list_requests=%d detail_requests=%d changed=%d queued=%d failed=%d "
                "unrecognized=%d circuit=%s",
                stats.claimed,
                stats.list_requests,
                stats.detail_requests,
                stats.changed,
                stats.queued,
                stats.failed,
                stats.unrecognized,
                self.breaker.state,
                extra={"action": "poll_cycle"},
            )
        self.systemd.status(await self._status())

    def _wake_sender(self) -> None:
        """A commit made mail pending: run the send job now. While it runs, it goes round once
        more instead (the scheduler would skip a second instance). Quiet hours, pauses and the
        outbox's ordering are the drain's, so waking it early changes only when it looks."""
        if self.stop.is_set() or self._scheduler is None:
            return
        if self._sending:
            self._send_again = True
            return
        self._scheduler.modify_job("outbox", next_run_time=utcnow())

    async def _send(self) -> None:
        self._sending = True
        try:
            while True:
                self._send_again = False
                await self._drain_once()
                if not self._send_again or self.stop.is_set():
                    return
        finally:
            self._sending = False

    async def _drain_once(self) -> None:
        transport = transport_for(sending_smtp(self.settings), self.settings.notifications.outbox_dir)
        async with transport:
            result = await drain(
                self.store, transport, owner=self.owner, policy=outbox_policy(self.settings), clock=utcnow
            )
        self.counters.sent += result.sent
        self.activity.drained(result)
        if result.sent or result.failed or result.retried:
            logger.info(
                "outbox: sent=%d retried=%d failed=%d deferred=%d suppressed=%d",
                result.sent,
                result.retried,
                result.failed,
                result.deferred,
                result.suppressed,
                extra={"action": "outbox"},
            )

    def _cycle_ended(self, stats: CycleStats | None) -> None:
        """Count the cycle (`stats` None: it raised) and ping the heartbeat, in the background."""
        failing = cycle_failing(stats, self.breaker)
        self.activity.cycle_ended(stats, failing=failing)
        if stats is None and self.stop.is_set():
            return  # cancelled by the stop: no failure to report
        summary = (
            "poll cycle failed with an error"
            if stats is None
            else f"claimed={stats.claimed} changed={stats.changed} failed={stats.failed} "
            f"unrecognized={stats.unrecognized} errors={stats.errors} circuit={self.breaker.state}"
        )
        self.heartbeat.after_cycle(
            self.settings.notifications.heartbeat_url,
            failing=failing,
            now=utcnow(),
            summary=summary,
            activity=self.activity,
        )

    async def _beat(self) -> None:
        taken = self.coordination is not None and await self.coordination.beat(utcnow())
        if taken and self._scheduler is not None:
            # Taken over from an instance that died: its daily work may be due.
            self._scheduler.modify_job("housekeeping", next_run_time=utcnow())

    async def _housekeeping(self) -> None:
        if self.coordination is not None and not self.coordination.owns_daily:
            return
        now = utcnow()
        await queue_timed(self.store, self.notifier, now=now, client=self.client)
        if self.settings.notifications.operator:
            await queue_operator_digest(
                self.store, self.notifier, self.settings.notifications.operator, now=now
            )
        await self.store.prune_snapshots(now=now, max_age=dt.timedelta(days=90), keep_per_shipment=20)
        await self.store.checkpoint()

    async def _alerts(self) -> None:
        if self.disk.full and not await self.disk.probe(self.store, utcnow()):
            self.systemd.status(await self._status())
            return
        await self.desk.tick(
            self.store,
            self.notifier,
            self.breaker,
            operator=self.settings.notifications.operator,
            batch=self.settings.notifications.alert_batch,
            down_after=self.settings.japanpost.down_alert_after,
            now=utcnow(),
            webhook=self.settings.notifications.operator_webhook,
            # Every instance sees every alert: the one doing the daily work posts them.
            post_webhook=self.coordination is None or self.coordination.owns_daily,
            instance=self.owner,
            activity=self.activity,
        )

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        while True:
            await asyncio.sleep(interval or 10)
            try:
                async with asyncio.timeout(5):
                    async with self.store.engine.connect() as connection:
                        await connection.execute(text("SELECT 1"))
            except Exception:
                logger.error("database check failed; not petting the watchdog", extra={"action": "unhealthy"})
                continue
            if self.disk.full:
                # Alive but unable to record anything: let systemd see it (the restart waits for space).
                continue
            if interval:
                self.systemd.watchdog()

    async def _status(self) -> str:
        depth = await self.store.outbox_depth()
        watched = await self.store.count_active()
        paused = " mail PAUSED (pages unreadable)" if self.notifier.paused else ""
        return (
            f"{watched} watched; outbox pending {depth.get('pending', 0)}, failed {depth.get('failed', 0)}; "
            f"Japan Post circuit {self.breaker.state}{paused}{self.disk.status()}{await self.desk.status(self.store)}"
        )


def _listening(settings: Settings) -> tuple[str, int] | None:
    return (settings.http.host, settings.http.port) if settings.http is not None else None


def _quiet(policy: OutboxPolicy) -> tuple[object, ...]:
    return (policy.quiet_hours, policy.default_time_zone)


def _one_line(exc: BaseException) -> str:
    """An exception as one log-friendly line: its type and the first line of its message
    (database errors append the SQL and a link on later lines)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def run(config_path: str | None, database_url: str | None = None) -> int:
    return asyncio.run(Daemon(config_path, database_url=database_url).run())
