"""When the outbox sends [pure]: retry and pause policy, back-off, quiet hours and what a waiting message waits for."""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notifier.core.rules import quiet_until
from notifier.core.views import AlertView, OutboxItem, OutboxState

# The last_error of a message deferred by quiet hours (Store.deferred_for_quiet_hours reads it).
QUIET_HOURS = "quiet hours"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxPolicy:
    """How the outbox retries and pauses.

    Attributes:
        max_attempts: sends tried (the message offered to the server) before a message fails for good.
        backoff_base, backoff_cap: per-message back-off after a 4xx, and the server pause after a
            connection that fails before the message is offered.
        lease: how long a claimed message stays ours if we die mid-send.
        batch: messages claimed per drain.
        quiet_hours: local (start, end) when customers get nothing.
        default_time_zone: the zone quiet hours follow for a message stored without one (a
            recipient with no zone of their own whose parcel's country is unknown or domestic).
        auth_pause: the pause after a refused login or a failed TLS set-up (configuration, not
            luck); new [smtp] settings lift it at once.
        alert_after: consecutive failed tries of a transient kind (of the server, or of one
            message) before the operator is alerted; refused, unresolvable, TLS and login
            failures alert on the first.
    """

    max_attempts: int = 8
    backoff_base: dt.timedelta = dt.timedelta(minutes=1)
    backoff_cap: dt.timedelta = dt.timedelta(hours=2)
    lease: dt.timedelta = dt.timedelta(minutes=5)
    batch: int = 50
    quiet_hours: tuple[dt.time, dt.time] | None = None
    default_time_zone: str | None = None
    auth_pause: dt.timedelta = dt.timedelta(minutes=30)
    alert_after: int = 3

    def zone_of(self, time_zone: str | None) -> str | None:
        """The zone quiet hours follow for a message stored with `time_zone`."""
        return time_zone or self.default_time_zone


@dataclass(frozen=True, slots=True, kw_only=True)
class SendingPause:
    """Sending is held because the server cannot be used, whatever the message.

    Attributes:
        kind: "auth" (login refused), "tls" (TLS set-up failed), "unreachable" (connection
            refused, name does not resolve) or "connect" (timeouts and other failures before the
            message was offered).
        reason: the server's reply or the connection error.
        since: when the trouble began (the first failure of this run of failures).
        until: when the next try may happen.
        failures: tries that failed in a row.
        destination: the transport settings it applies to; other settings are not paused.
    """

    kind: str
    reason: str
    since: dt.datetime
    until: dt.datetime
    failures: int
    destination: object

    def summary(self) -> str:
        """One line for a status display, such as sd_notify STATUS."""
        return (
            f"mail sending paused ({self.kind}, {self.failures} failed since {self.since:%H:%M}Z, "
            f"next try {self.until:%H:%M}Z): {self.reason}"
        )


# Per pause kind: the operator alert's kind and its text.
PAUSE_ALERTS = {
    "auth": (
        "smtp_auth_failed",
        "the SMTP server {server} refused our login ({reason}). Check smtp.username and the password.",
    ),
    "tls": (
        "smtp_tls_failed",
        "TLS with the SMTP server {server} failed ({reason}). Check smtp.security, smtp.port and "
        "smtp.cert_bundle.",
    ),
    "unreachable": (
        "smtp_unreachable",
        "the SMTP server {server} cannot be reached ({reason}). Check smtp.host and smtp.port.",
    ),
    "connect": (
        "smtp_connect_failed",
        "the SMTP server {server} failed {failures} times in a row since {since} before any "
        "message could be offered ({reason}).",
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedPause:
    """An SMTP pause as the database shows it to any process (the pause itself lives in the
    sending process): `kind` as in SendingPause, since when, and what the operator is told."""

    kind: str
    since: dt.datetime
    why: str


# What stops sending, per pause kind, in a listing's few words; the alert has the details.
_PAUSE_WORDS = {
    "auth": "the SMTP server refused our login",
    "tls": "TLS with the SMTP server failed",
    "unreachable": "the SMTP server cannot be reached",
    "connect": "the SMTP server fails before any message is offered",
}


def recorded_pause(alerts: Sequence[AlertView], last_sent_at: dt.datetime | None) -> RecordedPause | None:
    """The SMTP pause in force, as far as the database tells: the newest open alert of SMTP
    trouble that pauses sending, seen after the last message went out (a send ends a pause)."""
    kinds = {alert_kind: kind for kind, (alert_kind, _) in PAUSE_ALERTS.items()}
    for alert in sorted(alerts, key=lambda a: a.last_seen_at, reverse=True):
        if alert.kind not in kinds or alert.acknowledged_at is not None:
            continue
        if last_sent_at is not None and alert.last_seen_at <= last_sent_at:
            return None
        since = (
            alert.first_seen_at
            if last_sent_at is None or alert.first_seen_at > last_sent_at
            else alert.last_seen_at
        )
        return RecordedPause(kind=kinds[alert.kind], since=since, why=_PAUSE_WORDS[kinds[alert.kind]])
    return None


def expected_send(
    item: OutboxItem, policy: OutboxPolicy, now: dt.datetime, pause: RecordedPause | None = None
) -> tuple[dt.datetime | None, str]:
    """When a waiting message will next be tried, and what it waits for ("" when nothing).

    Pending: its next attempt, moved to the end of quiet hours if they cover it then (a message
    not tried yet and due later waits for the settle window); while sending is paused (`pause`),
    no time: it goes when sending resumes. Held: no time, it goes when Japan Post's pages read
    again. Other states: no time.
    """
    if item.state is OutboxState.HELD:
        return None, "pages to read again"
    if item.state is OutboxState.SENDING:
        return now, "being sent"
    if item.state is not OutboxState.PENDING:
        return None, ""
    if pause is not None:
        return None, (
            f"sending resumes (paused since {pause.since:%Y-%m-%d %H:%M}Z: {pause.why}; see `notifier alerts`)"
        )
    due = max(item.next_attempt_at, now)
    quiet = quiet_until(due, policy.zone_of(item.time_zone), policy.quiet_hours)
    if quiet is not None:
        return quiet, "quiet hours"
    if item.last_error == QUIET_HOURS and item.next_attempt_at > now:
        return due, "quiet hours"  # deferred to the window's end, where quiet_until says no more
    if item.attempts and item.next_attempt_at > now:
        return due, "retry"
    if item.next_attempt_at > now:
        return due, "settle window"  # news waiting for the next scan (rules.send_after)
    return due, ""


def retry_at(attempts: int, now: dt.datetime, policy: OutboxPolicy, rng: random.Random) -> dt.datetime:
    """Full-jitter exponential back-off: attempt n waits up to base * 2**(n-1), capped."""
    ceiling: dt.timedelta = min(policy.backoff_cap, policy.backoff_base * 2 ** max(0, attempts - 1))
    return now + ceiling * rng.uniform(0.5, 1.0)


def goes_note(at: dt.datetime | None, waits_for: str, now: dt.datetime, *, zone: str | None = None) -> str:
    """The listing's "goes" note for a waiting message: when, and what it waits for; the end of
    quiet hours also in the recipient's `zone`, the clock they are kept by."""
    if at is None:
        return f"  goes when {waits_for}" if waits_for else ""
    when = "now" if at <= now else f"{at:%Y-%m-%d %H:%M}Z"
    if at > now and waits_for == QUIET_HOURS and zone:
        with contextlib.suppress(ValueError, ZoneInfoNotFoundError):
            local = at.astimezone(ZoneInfo(zone))
            if local.utcoffset():  # in UTC, or a zone on UTC now, the UTC time says it all
                when = f"{local:%Y-%m-%d %H:%M} {zone} ({when})"
    return f"  goes {when}" + (f" ({waits_for})" if waits_for else "")
