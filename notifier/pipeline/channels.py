"""Operator alerts and the daily digest to Apprise channels: one queue and one worker per channel."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from notifier.core.views import AlertView
from notifier.net.channels import Channel
from notifier.pipeline.activity import Activity
from notifier.pipeline.hooks import WEBHOOK_GIVE_UP, webhook_body, webhook_retry_at

logger = logging.getLogger(__name__)

# One send may take this long (Apprise's own connect and read timeouts are 4 s each by default);
# a send still hanging after it counts as failed, and only its own channel waits on it.
SEND_TIMEOUT = 30.0
MAX_QUEUED = 200


@dataclass(frozen=True, slots=True)
class Note:
    """One message for the channels: an alert batch or a digest."""

    title: str
    body: str
    queued_at: dt.datetime


def alert_note(alerts: Sequence[AlertView], *, instance: str, now: dt.datetime) -> Note:
    head, *lines = webhook_body(alerts, instance=instance)["text"].split("\n")
    return Note(title=head, body="\n".join(lines), queued_at=now)


def digest_note(alerts: Sequence[AlertView], *, instance: str, now: dt.datetime) -> Note | None:
    """The daily digest's channel text: the open alerts, one line each (None: nothing open)."""
    if not alerts:
        return None
    count = len(alerts)
    lines = webhook_body(alerts, instance=instance)["text"].split("\n")[1:]
    title = f"notifier on {instance}: daily digest, {count} open alert{'s' if count != 1 else ''}"
    return Note(title=title, body="\n".join(lines), queued_at=now)


@dataclass(slots=True)
class Lane:
    """One channel's queue and worker. A failed send is retried after 10 s, 20 s, 40 s ... at
    most 10 min apart, and a message failing for a day is given up on (at error level). Its own
    thread: a channel that hangs holds up nothing but itself."""

    channel: Channel
    activity: Activity | None
    clock: Callable[[], dt.datetime]
    queue: list[Note] = field(default_factory=list)
    failures: int = 0
    failing_since: dt.datetime | None = None
    task: asyncio.Task[None] | None = None
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=1))
    retry_at: Callable[[int, dt.datetime], dt.datetime] = webhook_retry_at

    def put(self, note: Note) -> None:
        self.queue.append(note)
        if len(self.queue) > MAX_QUEUED:
            dropped = self.queue.pop(0)
            logger.error(
                "operator %s: more than %d messages waiting; dropped the oldest: %s",
                self.channel.name,
                MAX_QUEUED,
                dropped.title,
                extra={"action": "channel_gave_up", "channel": self.channel.name},
            )
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def _count(self, result: str) -> None:
        if self.activity is not None:
            self.activity.channel_sends[(self.channel.name, result)] += 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.queue:
            note = self.queue[0]
            try:
                error = await asyncio.wait_for(
                    loop.run_in_executor(self.executor, self.channel.send, note.title, note.body),
                    SEND_TIMEOUT,
                )
            except TimeoutError:
                error = f"no answer within {SEND_TIMEOUT:.0f} s"
            except Exception as exc:  # never lose the queue to a bug
                error = type(exc).__name__
            now = self.clock()
            if error is None:
                self.queue.pop(0)
                self._count("ok")
                self.failures, self.failing_since = 0, None
                logger.info(
                    "operator %s: sent %s",
                    self.channel.name,
                    note.title,
                    extra={"action": "channel_sent", "channel": self.channel.name},
                )
                continue
            self._count("failed")
            self.failures += 1
            self.failing_since = self.failing_since or now
            if now - self.failing_since >= WEBHOOK_GIVE_UP:
                self.queue.pop(0)
                logger.error(
                    "operator %s: not sent after a day of failures (%s): %s",
                    self.channel.name,
                    error,
                    note.title,
                    extra={"action": "channel_gave_up", "channel": self.channel.name},
                )
                continue
            retry = self.retry_at(self.failures, now)
            logger.warning(
                "operator %s failed (%s); %d message(s) kept, next try at %s",
                self.channel.name,
                error,
                len(self.queue),
                f"{retry:%H:%M:%S}Z",
                extra={"action": "channel_failed", "channel": self.channel.name},
            )
            # A new message does not cut the back-off short: the channel is failing.
            await asyncio.sleep((retry - now).total_seconds())

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for note in self.queue:
            logger.error(
                "operator %s: not sent before stopping: %s",
                self.channel.name,
                note.title,
                extra={"action": "channel_not_sent", "channel": self.channel.name},
            )
        self.queue = []
        self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass(slots=True)
class OperatorChannels:
    """The configured channels ([notifications] operator_urls), rebuilt when the list changes."""

    clock: Callable[[], dt.datetime]
    activity: Activity | None = None
    lanes: list[Lane] = field(default_factory=list)
    urls: tuple[str, ...] = ()
    digest_day: dt.date | None = None

    def configure(self, urls: Sequence[str], activity: Activity | None = None) -> None:
        """Take the configured list; on a change (a reload), a channel at the same place with the
        same URL keeps its queue, the others are closed (their waiting messages logged)."""
        self.activity = activity or self.activity
        if tuple(urls) == self.urls:
            return
        kept = {(lane.channel.name, lane.channel.url): lane for lane in self.lanes}
        self.urls = tuple(urls)
        lanes: list[Lane] = []
        for index, url in enumerate(self.urls, 1):
            try:
                channel = Channel.of(url, index)
            except ValueError as exc:  # validated at load; this is a guard, never a crash
                logger.error("operator %s; left out", exc, extra={"action": "channel_failed"})
                continue
            lane = kept.pop((channel.name, url), None) or Lane(channel, self.activity, self.clock)
            lanes.append(lane)
            if self.activity is not None:  # zeros too: a series that appears late breaks rate()
                for result in ("ok", "failed"):
                    self.activity.channel_sends[(channel.name, result)] += 0
        for lane in kept.values():
            lane.close()
        self.lanes = lanes

    def put(self, note: Note) -> None:
        for lane in self.lanes:
            lane.put(note)

    def pending(self) -> dict[str, int]:
        return {lane.channel.name: len(lane.queue) for lane in self.lanes}

    def close(self) -> None:
        for lane in self.lanes:
            lane.close()
        self.lanes, self.urls = [], ()
