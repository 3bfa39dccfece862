"""Operator alerts as they happen: batched emails, one alert per Japan Post outage, and the status summary."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from notifier import hints
from notifier.core.compose import digest_context, draft
from notifier.core.messages import DigestLine
from notifier.core.views import AlertView, OutboxDraft, OutboxState
from notifier.pipeline.activity import Activity
from notifier.pipeline.channels import OperatorChannels, alert_note
from notifier.pipeline.cycle import CircuitBreaker
from notifier.pipeline.hooks import OperatorWebhook
from notifier.pipeline.outbox import sending_paused
from notifier.pipeline.poll import Notifier
from notifier.store import Store

logger = logging.getLogger(__name__)

NOTICE_RULE = "operator_alert"
SITE_DOWN = "site_down"
SITE_RECOVERED = "site_recovered"
# Alerts recorded already closed: news the operator should hear once, with nothing to clear.
NOTICE_KINDS = frozenset({SITE_RECOVERED})
# A notice older than this when first seen (a new operator address, say) is history, not news.
NOTICE_MAX_AGE = dt.timedelta(days=1)
MAX_LINES = 100
# A single failed request followed by hours of nothing due is not an outage.
MIN_FAILED_REQUESTS = 3


def notice_key_prefix(operator: str) -> str:
    return f"alerts:{operator}:"


def news(alerts: Sequence[AlertView], now: dt.datetime) -> list[AlertView]:
    """What of `alerts` the operator has not been told: open alerts, and recent notices."""
    return [
        a
        for a in alerts
        if a.acknowledged_at is None or (a.kind in NOTICE_KINDS and now - a.first_seen_at <= NOTICE_MAX_AGE)
    ]


def notice_due(alerts: Sequence[AlertView], now: dt.datetime, batch: dt.timedelta) -> bool:
    """An email goes out `batch` after the oldest alert not yet emailed, carrying all since."""
    return bool(alerts) and now - min(a.first_seen_at for a in alerts) >= batch


def notice_lines(alerts: Sequence[AlertView]) -> tuple[DigestLine, ...]:
    lines = [DigestLine(kind=a.kind, subject=a.subject, message=a.message, count=a.count) for a in alerts]
    if len(lines) > MAX_LINES:
        rest = len(lines) - MAX_LINES + 1
        lines = [
            *lines[: MAX_LINES - 1],
            DigestLine(kind="alert", subject="", message=f"and {rest} more: see {hints.command('alerts')}"),
        ]
    return tuple(lines)


def breaker_failing(breaker: CircuitBreaker) -> bool:
    """Whether Japan Post's last answers were failures (5xx, 429, no connection): the breaker
    counts failures since the last success, and has opened at least once in a long run of them."""
    return breaker.opened > 0 or breaker.failures >= MIN_FAILED_REQUESTS


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _duration(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


@dataclass(slots=True)
class SiteWatch:
    """Japan Post's availability over time: one 'down' once it has failed for `after`, and one
    'recovered' when it answers again after that. Pure; the caller records what it returns."""

    after: dt.timedelta = dt.timedelta(minutes=30)
    down_since: dt.datetime | None = None
    alerted: bool = False

    def observe(self, failing: bool, now: dt.datetime) -> str | None:
        if failing:
            if self.down_since is None:
                self.down_since = now
            if not self.alerted and now - self.down_since >= self.after:
                self.alerted = True
                return "down"
            return None
        was_alerted = self.alerted
        self.down_since = None
        self.alerted = False
        return "recovered" if was_alerted else None


@dataclass(slots=True)
class AlertDesk:
    """The daemon's side of operator alerts: tracks the site, logs each new alert once, emails
    batches, posts each new alert to the operator webhook and the Apprise channels, and says in the status line what
    could not be emailed."""

    site: SiteWatch = field(default_factory=SiteWatch)
    webhook: OperatorWebhook = field(default_factory=OperatorWebhook)
    channels: OperatorChannels = field(
        default_factory=lambda: OperatorChannels(clock=lambda: dt.datetime.now(dt.UTC))
    )
    logged_up_to: int = 0
    undelivered: str | None = None
    _reported: dict[int, str] = field(default_factory=dict)

    async def start(self, store: Store, now: dt.datetime) -> None:
        """Pick up where a previous run left off: alerts already there were logged by it, and
        an open site_down alert means the outage may still be going on."""
        self.logged_up_to = await store.last_alert_id()
        count, _ = await store.alert_summary()
        if count:
            logger.warning(
                "%d open operator alert(s); see %s",
                count,
                hints.command("alerts"),
                extra={"action": "alerts_open"},
            )
        if any(a.kind == SITE_DOWN for a in await store.alerts()):
            self.site.down_since = now
            self.site.alerted = True

    async def tick(
        self,
        store: Store,
        notifier: Notifier,
        breaker: CircuitBreaker,
        *,
        operator: str | None,
        batch: dt.timedelta,
        down_after: dt.timedelta,
        now: dt.datetime,
        webhook: str | None = None,
        post_webhook: bool = True,
        instance: str = "",
        activity: Activity | None = None,
        channels: Sequence[str] = (),
    ) -> None:
        """`post_webhook` is False on an instance that leaves the webhook and the channels to
        another (several instances see the same alerts; the one doing the daily work posts them)."""
        self.site.after = down_after
        await self._watch_site(store, breaker, now)
        fresh = await self._log_new(store, emailed=operator is not None)
        # Queued only: each channel sends from its own task, so none delays the email or another.
        self.channels.configure(channels, activity)
        if post_webhook and fresh:
            self.channels.put(alert_note(fresh, instance=instance, now=now))
        if operator:
            await self._email(store, notifier, operator, batch, now)
        await self._check_delivery(store)
        # Last, so a slow endpoint never delays the email. The webhook gets each alert whether
        # or not the email can go (no operator address, SMTP refusing or paused).
        if webhook is None:
            self.webhook.abandon()
            return
        if post_webhook:
            self.webhook.add(fresh)
        await self.webhook.deliver(webhook, instance=instance, now=now, activity=activity)

    async def _watch_site(self, store: Store, breaker: CircuitBreaker, now: dt.datetime) -> None:
        since = self.site.down_since
        outcome = self.site.observe(breaker_failing(breaker), now)
        if outcome == "down":
            error = (await store.latest_poll_error() or "no answer")[:200]
            await store.raise_alert(
                SITE_DOWN,
                f"Japan Post has answered no request for {_duration(now - (self.site.down_since or now))} "
                f"(last error: {error}); polling backs off and resumes by itself. Customer mail is "
                "delayed, not lost.",
                now=now,
            )
            logger.error(
                "Japan Post unreachable or refusing requests since %s",
                self.site.down_since,
                extra={"action": SITE_DOWN},
            )
        elif outcome == "recovered":
            down_for = _duration(now - since) if since is not None else "a while"
            await store.resolve_alert(
                SITE_DOWN,
                now=now,
                notice_kind=SITE_RECOVERED,
                notice=f"Japan Post answers again (it failed for {down_for}); polling is back to normal.",
            )
            logger.info("Japan Post answers again", extra={"action": SITE_RECOVERED})

    async def _log_new(self, store: Store, *, emailed: bool) -> list[AlertView]:
        """Log each alert not seen before; returns those the operator is to hear of."""
        fresh: list[AlertView] = []
        for alert in await store.alerts_after(self.logged_up_to):
            self.logged_up_to = max(self.logged_up_to, alert.id)
            if alert.acknowledged_at is not None and alert.kind not in NOTICE_KINDS:
                continue
            fresh.append(alert)
            subject = f" {alert.subject}" if alert.subject else ""
            if emailed:
                logger.warning(
                    "operator alert %s%s: %s", alert.kind, subject, alert.message, extra={"action": "alert"}
                )
            else:
                # Nowhere to email it: the log and `notifier alerts` are all the operator has.
                logger.error(
                    "operator alert %s%s (not emailed: no [notifications] operator): %s",
                    alert.kind,
                    subject,
                    alert.message,
                    extra={"action": "alert"},
                )
        return fresh

    async def _email(
        self, store: Store, notifier: Notifier, operator: str, batch: dt.timedelta, now: dt.datetime
    ) -> None:
        prefix = notice_key_prefix(operator)

        def decide(alerts: Sequence[AlertView]) -> OutboxDraft | None:
            fresh = news(alerts, now)
            if not notice_due(fresh, now, batch):
                return None
            return draft(
                digest_context(notice_lines(fresh), notifier.mail),
                renderer=notifier.renderer,
                mail=notifier.mail,
                recipient=operator,
                dedup_key=f"{prefix}{max(a.id for a in alerts)}",
                rule=NOTICE_RULE,
                now=now,
            )

        queued = await store.queue_alert_notice(prefix, decide, now=now)
        if queued is not None:
            logger.info("operator alert email queued", extra={"action": "alert_email", "to": operator})

    async def _check_delivery(self, store: Store) -> None:
        """An alert email that the mail server refuses, or that waits for a retry, leaves the
        operator uninformed: say so at error level, once per message and reason."""
        # While sending is paused, an alert email queued since the pause began has not been
        # tried yet, so it carries no error: it is undelivered all the same, and says why.
        pause = sending_paused(store)
        held = f"held while sending is paused: {pause.reason}" if pause is not None else None
        stuck = [
            (item, item.last_error or held)
            for item in await store.outbox(
                states=[OutboxState.PENDING, OutboxState.FAILED], rule=NOTICE_RULE, limit=20
            )
            if item.last_error or held
        ]
        self.undelivered = stuck[0][1] if stuck else None
        for item, error in stuck:
            if self._reported.get(item.id) == error:
                continue
            self._reported[item.id] = error or ""
            logger.error(
                "operator alert email to %s not sent (%s); the alerts are in `notifier alerts`",
                item.recipient,
                error,
                extra={"action": "alert_undelivered", "to": item.recipient},
            )

    async def status(self, store: Store) -> str:
        """'; 2 open alerts, newest: kind: message' for the systemd STATUS line, or ''."""
        count, newest = await store.alert_summary()
        if not count or newest is None:
            return ""
        text = f"; {count} open alert{'s' if count != 1 else ''}, newest: {newest.kind}: {_cut(newest.message, 100)}"
        if self.undelivered:
            text += f" (alert email not sent: {_cut(self.undelivered, 100)})"
        return text
