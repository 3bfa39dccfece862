"""Config reloads: load, check and apply a new configuration, or keep the running one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from notifier import hints
from notifier.config import (
    Settings,
    load_settings,
    matching_watch_files,
    sending_smtp,
    web_secret,
)
from notifier.core.numbers import parse_number
from notifier.core.reschedule import moves
from notifier.core.sending import OutboxPolicy
from notifier.core.views import ConfiguredWatch
from notifier.daemon.state import DaemonState, _one_line, utcnow
from notifier.errors import ConfigError
from notifier.net.japanpost import ClientSettings, JapanPostClient
from notifier.pipeline.lanes import LaneCache
from notifier.pipeline.outbox import reevaluate_quiet_hours
from notifier.pipeline.wiring import notifier_for, outbox_policy

# The service's logger name, as before the split (docs/upgrading.md).
logger = logging.getLogger("notifier.daemon.service")


class ConfigReloader(DaemonState):
    """Reloads on SIGHUP or an edited config file; a refused configuration leaves the running one."""

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
        # One cache of the lanes' statistics for polling, stalls and windows; it survives a
        # reload, as it follows the store, not the configuration.
        lanes: LaneCache | None = getattr(self, "lanes", None)
        if lanes is None:
            lanes = paused.lanes if paused is not None and paused.lanes is not None else LaneCache(self.store)
            self.lanes = lanes
        notifier.lanes = lanes
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
                "%s: now watched by the configuration (it was added outside it: the CLI, the API or a shop webhook); "
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


def _listening(settings: Settings) -> tuple[str, int] | None:
    return (settings.http.host, settings.http.port) if settings.http is not None else None


def _quiet(policy: OutboxPolicy) -> tuple[object, ...]:
    return (policy.quiet_hours, policy.default_time_zone)
