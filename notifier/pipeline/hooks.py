"""Operator alerts and liveness over HTTP: a Slack-compatible webhook, and a healthchecks.io-style heartbeat."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from notifier import __version__
from notifier.core.views import AlertView
from notifier.pipeline.activity import Activity

logger = logging.getLogger(__name__)

USER_AGENT = f"notifier/{__version__}"
# Each HTTP call is short: an endpoint that hangs costs the alert job this much, never more.
WEBHOOK_TIMEOUT = 5.0
HEARTBEAT_TIMEOUT = 5.0
# A failed webhook post is retried after 10 s, 20 s, 40 s ... at most 10 min apart, and given up
# (logged at error level, alert by alert) a day after its first failure.
WEBHOOK_BACKOFF_BASE = dt.timedelta(seconds=10)
WEBHOOK_BACKOFF_CAP = dt.timedelta(minutes=10)
WEBHOOK_GIVE_UP = dt.timedelta(days=1)
MAX_ALERTS_PER_POST = 50
# At most one heartbeat ping a minute however short the poll tick: healthchecks.io-style
# services take minutes as their period, and a ping per 5 s tick would only be noise.
HEARTBEAT_EVERY = dt.timedelta(seconds=60)


def redact_url(url: str) -> str:
    """A webhook or ping URL fit for a log line: its scheme and host; path, query and any login
    are secrets (Slack's and healthchecks.io's URLs are their own credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/…"


def fail_url(url: str) -> str:
    """healthchecks.io's failure signal: the ping URL with /fail appended to its path."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def webhook_body(alerts: Sequence[AlertView], *, instance: str) -> dict[str, Any]:
    """A Slack-compatible message (`text`) with the alerts as structured fields beside it."""
    count = len(alerts)
    head = f"notifier on {instance}: {count} operator alert{'s' if count != 1 else ''}"
    lines = [
        f"• {a.kind}{f' {a.subject}' if a.subject else ''}: {a.message}"
        + (f" (×{a.count})" if a.count > 1 else "")
        for a in alerts
    ]
    return {
        "text": "\n".join([head, *lines]),
        "source": "notifier",
        "instance": instance,
        "alerts": [a.as_json() for a in alerts],
    }


def webhook_retry_at(failures: int, now: dt.datetime) -> dt.datetime:
    wait: dt.timedelta = min(WEBHOOK_BACKOFF_CAP, WEBHOOK_BACKOFF_BASE * 2 ** max(0, failures - 1))
    return now + wait


async def _post(url: str, *, json: dict[str, Any] | None, content: str, seconds: float) -> str | None:
    """POST once; None when the endpoint answered 2xx, else why not (without the URL)."""
    try:
        async with httpx.AsyncClient(
            timeout=seconds, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        ) as client:
            if json is not None:
                response = await client.post(url, json=json)
            else:
                response = await client.post(url, content=content.encode())
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no answer'}"[:200]
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"


@dataclass(slots=True)
class OperatorWebhook:
    """Alerts waiting to be posted, oldest first, and when to try again after a failure.

    Kept in this process: an alert is queued once, when the alert desk first sees it, and
    leaves the queue when a post of it is answered 2xx, or a day after posts of it began
    failing (logged at error level). A post whose answer is lost (a timeout after the endpoint
    accepted it) is posted again: the one way an alert can show twice.
    """

    pending: list[AlertView] = field(default_factory=list)
    failures: int = 0
    failing_since: dt.datetime | None = None
    next_try: dt.datetime | None = None

    def add(self, alerts: Sequence[AlertView]) -> None:
        known = {a.id for a in self.pending}
        self.pending.extend(a for a in alerts if a.id not in known)

    def due(self, now: dt.datetime) -> list[AlertView]:
        if self.next_try is not None and now < self.next_try:
            return []
        return self.pending[:MAX_ALERTS_PER_POST]

    def delivered(self, batch: Sequence[AlertView]) -> None:
        posted = {a.id for a in batch}
        self.pending = [a for a in self.pending if a.id not in posted]
        self.failures, self.failing_since, self.next_try = 0, None, None

    def failed(self, now: dt.datetime) -> list[AlertView]:
        """Record a failed post; returns the alerts given up on (failing for WEBHOOK_GIVE_UP)."""
        self.failures += 1
        self.failing_since = self.failing_since or now
        self.next_try = webhook_retry_at(self.failures, now)
        if now - self.failing_since < WEBHOOK_GIVE_UP:
            return []
        dropped, self.pending = self.pending, []
        self.failures, self.failing_since, self.next_try = 0, None, None
        return dropped

    async def deliver(
        self, url: str, *, instance: str, now: dt.datetime, activity: Activity | None = None
    ) -> bool:
        """Post what is due, once; never raises. Returns whether a post went through."""
        batch = self.due(now)
        if not batch:
            return False
        where = redact_url(url)
        try:
            error = await _post(
                url, json=webhook_body(batch, instance=instance), content="", seconds=WEBHOOK_TIMEOUT
            )
        except Exception as exc:  # a bug here must not end the alert job, nor lose the alerts
            logger.exception("operator webhook %s: posting failed", where, extra={"action": "webhook_failed"})
            error = type(exc).__name__
        if activity is not None:
            activity.webhook_posts["failed" if error else "ok"] += 1
        if error is None:
            self.delivered(batch)
            logger.info(
                "operator webhook %s: %d alert(s) posted",
                where,
                len(batch),
                extra={"action": "webhook_posted", "alerts": [a.id for a in batch]},
            )
            return True
        dropped = self.failed(now)
        if dropped:
            for alert in dropped:
                logger.error(
                    "operator webhook %s: alert %s %s not posted after a day of failures (%s): %s",
                    where,
                    alert.kind,
                    alert.subject,
                    error,
                    alert.message,
                    extra={"action": "webhook_gave_up", "alert": alert.id},
                )
        else:
            logger.warning(
                "operator webhook %s failed (%s); %d alert(s) kept, next try at %s",
                where,
                error,
                len(self.pending),
                f"{self.next_try:%H:%M:%S}Z" if self.next_try else "the next tick",
                extra={"action": "webhook_failed", "alerts": [a.id for a in self.pending]},
            )
        return False

    def abandon(self) -> None:
        """At shutdown: say at error level which alerts were never posted (they are in
        `notifier alerts`; the next run does not post them again)."""
        for alert in self.pending:
            logger.error(
                "operator webhook: alert %s %s not posted before stopping: %s",
                alert.kind,
                alert.subject,
                alert.message,
                extra={"action": "webhook_not_posted", "alert": alert.id},
            )
        self.pending = []


def heartbeat_ping(
    last_ping_at: dt.datetime | None, failing: bool, now: dt.datetime, every: dt.timedelta
) -> str | None:
    """Which ping a cycle ending `now` sends: "ok", "fail", or None (one went out less than
    `every` ago). `failing` is whether any cycle since the last ping failed."""
    if last_ping_at is not None and now - last_ping_at < every:
        return None
    return "fail" if failing else "ok"


@dataclass(slots=True)
class Heartbeat:
    """Pings `heartbeat_url` after poll cycles, in the background: at most one ping per cycle
    and per `every`, reporting /fail if any cycle since the last ping failed. A ping never
    delays or fails a cycle; a failed ping is logged (at most one line per failure streak
    at warning, then debug) and counted."""

    every: dt.timedelta = HEARTBEAT_EVERY
    last_ping_at: dt.datetime | None = None
    failed_since_ping: bool = False
    ping_errors: int = 0
    _task: asyncio.Task[None] | None = None

    def after_cycle(
        self, url: str | None, *, failing: bool, now: dt.datetime, summary: str, activity: Activity
    ) -> asyncio.Task[None] | None:
        if url is None:
            return None
        self.failed_since_ping = self.failed_since_ping or failing
        if self._task is not None and not self._task.done():
            return None  # the last ping is still under way: never two at once
        kind = heartbeat_ping(self.last_ping_at, self.failed_since_ping, now, self.every)
        if kind is None:
            return None
        self.last_ping_at = now
        self.failed_since_ping = False
        target = fail_url(url) if kind == "fail" else url
        self._task = asyncio.get_running_loop().create_task(self._ping(target, kind, summary, activity))
        return self._task

    async def _ping(self, url: str, kind: str, summary: str, activity: Activity) -> None:
        try:
            error = await _post(url, json=None, content=summary, seconds=HEARTBEAT_TIMEOUT)
        except Exception:
            logger.exception("heartbeat ping to %s failed", redact_url(url), extra={"action": "heartbeat"})
            error = "unexpected error"
        if error is None:
            activity.heartbeat_pings[kind] += 1
            if self.ping_errors:
                logger.info("heartbeat pings go through again", extra={"action": "heartbeat_ok"})
            self.ping_errors = 0
            return
        activity.heartbeat_pings["error"] += 1
        self.ping_errors += 1
        logger.log(
            logging.WARNING if self.ping_errors == 1 else logging.DEBUG,
            "heartbeat ping to %s failed (%s); the cycle is unaffected, the next ping tries again",
            redact_url(url),
            error,
            extra={"action": "heartbeat_failed"},
        )
