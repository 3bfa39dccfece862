"""The scheduled jobs: poll, send, heartbeat, housekeeping, alerts and the systemd watchdog."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from notifier.config import sending_smtp
from notifier.daemon.reload import ConfigReloader
from notifier.daemon.state import utcnow
from notifier.net.mailer import transport_for
from notifier.net.sdnotify import watchdog_interval
from notifier.pipeline.activity import cycle_failing
from notifier.pipeline.channels import digest_note
from notifier.pipeline.cycle import CycleStats, run_cycle
from notifier.pipeline.outbox import drain
from notifier.pipeline.poll import queue_operator_digest, queue_timed
from notifier.pipeline.wiring import outbox_policy
from notifier.store.instances import share_circuit

# The service's logger name, as before the split (docs/upgrading.md).
logger = logging.getLogger("notifier.daemon.service")


class DaemonJobs(ConfigReloader):
    """The jobs the scheduler runs (a poll may first reschedule for a reloaded policy)."""

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
                lanes=self.lanes,
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
        digest_queued = 0
        if self.settings.notifications.operator:
            digest_queued = await queue_operator_digest(
                self.store, self.notifier, self.settings.notifications.operator, now=now
            )
        await self._channel_digest(now, emailed=digest_queued > 0)
        await self.store.prune_snapshots(now=now, max_age=dt.timedelta(days=90), keep_per_shipment=20)
        await self.store.checkpoint()

    async def _channel_digest(self, now: dt.datetime, *, emailed: bool) -> None:
        """The daily digest to the operator channels too: with the email's (queued once a day,
        kept in the outbox, so a restart does not repeat it), else once a day of this run."""
        channels = self.desk.channels
        channels.configure(self.settings.notifications.operator_urls, self.activity)
        if not channels.lanes:
            return
        due = emailed if self.settings.notifications.operator else channels.digest_day != now.date()
        if not due:
            return
        channels.digest_day = now.date()
        note = digest_note(await self.store.alerts(), instance=self.owner, now=now)
        if note is not None:
            channels.put(note)

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
            channels=self.settings.notifications.operator_urls,
        )

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        while True:
            await asyncio.sleep(interval or 10)
            try:
                async with asyncio.timeout(5):
                    await self.store.ping()
            except Exception:
                logger.error("database check failed; not petting the watchdog", extra={"action": "unhealthy"})
                continue
            if self.disk.full:
                # Alive but unable to record anything: let systemd see it (the restart waits for space).
                continue
            if interval:
                self.systemd.watchdog()
