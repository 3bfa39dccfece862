"""Draining the outbox: lease, send the stored bytes, record; retries, pauses, quiet hours."""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from notifier.faults import crashpoint
from notifier.mailer import (
    AuthenticationError,
    FileTransport,
    PermanentSendError,
    SendError,
    SmtpTransport,
    TlsRequiredError,
)
from notifier.rules import quiet_until
from notifier.store import OutboxItem, Store

logger = logging.getLogger(__name__)

Transport = SmtpTransport | FileTransport


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxPolicy:
    max_attempts: int = 8
    backoff_base: dt.timedelta = dt.timedelta(minutes=1)
    backoff_cap: dt.timedelta = dt.timedelta(hours=2)
    lease: dt.timedelta = dt.timedelta(minutes=5)
    batch: int = 50
    quiet_hours: tuple[dt.time, dt.time] | None = None
    auth_pause: dt.timedelta = dt.timedelta(minutes=30)


@dataclass(slots=True)
class DrainResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    suppressed: int = 0
    paused_until: dt.datetime | None = None
    errors: list[str] = field(default_factory=list)


def retry_at(attempts: int, now: dt.datetime, policy: OutboxPolicy, rng: random.Random) -> dt.datetime:
    """Full-jitter exponential back-off: attempt n waits up to base * 2**(n-1), capped."""
    ceiling: dt.timedelta = min(policy.backoff_cap, policy.backoff_base * 2 ** max(0, attempts - 1))
    return now + ceiling * rng.uniform(0.5, 1.0)


async def drain(
    store: Store,
    transport: Transport,
    *,
    owner: str,
    policy: OutboxPolicy,
    clock: Callable[[], dt.datetime],
    rng: random.Random | None = None,
) -> DrainResult:
    """Send what is due, once each, over one connection.

    The order per message is claim (commit) -> send -> mark sent (commit). A crash after the
    server's 250 and before the second commit is the only window that can repeat a message;
    the repeat carries the same bytes and Message-ID, so receivers can drop it.
    """
    rng = rng or random.Random()
    result = DrainResult()
    claimed = await store.claim_outbox(owner=owner, now=clock(), limit=policy.batch, lease=policy.lease)
    crashpoint("outbox:after-claim")
    # Checked once per batch, right before sending it: an unsubscribe takes effect from the
    # next batch (a fraction of a second), for one query instead of one per message.
    suppressed = await store.suppressed_among([item.recipient for item in claimed])
    for position, item in enumerate(claimed):
        now = clock()
        if result.paused_until is not None:
            # Authentication failed: hand the rest back untouched; their attempts are not spent.
            await store.mark_retry(
                item.id,
                owner=owner,
                error="outbox paused",
                next_attempt_at=result.paused_until,
                count_attempt=False,
            )
            continue
        if item.recipient.lower() in suppressed:
            await store.mark_suppressed(item.id, owner=owner)
            result.suppressed += 1
            continue
        # Quiet hours spare customers; an operator alert (alerting.NOTICE_RULE) must not wait them out.
        until = (
            None if item.rule == "operator_alert" else quiet_until(now, item.time_zone, policy.quiet_hours)
        )
        if until is not None:
            await store.mark_retry(
                item.id, owner=owner, error="quiet hours", next_attempt_at=until, count_attempt=False
            )
            result.deferred += 1
            continue
        await _send_one(
            store, transport, item, owner=owner, policy=policy, clock=clock, rng=rng, result=result
        )
        logger.debug("outbox item %d of %d done", position + 1, len(claimed))
    return result


async def _send_one(
    store: Store,
    transport: Transport,
    item: OutboxItem,
    *,
    owner: str,
    policy: OutboxPolicy,
    clock: Callable[[], dt.datetime],
    rng: random.Random,
    result: DrainResult,
) -> None:
    crashpoint("outbox:before-send")
    try:
        reply = await transport.send(item.raw, sender=item.sender, recipients=[item.recipient])
    except (AuthenticationError, TlsRequiredError) as exc:
        # Our setup is wrong, not this message: every message would fail the same way, so
        # pause the outbox instead of spending retries, and tell the operator.
        now = clock()
        result.paused_until = now + policy.auth_pause
        result.errors.append(str(exc))
        await store.mark_retry(
            item.id, owner=owner, error=str(exc), next_attempt_at=result.paused_until, count_attempt=False
        )
        auth = isinstance(exc, AuthenticationError)
        await store.raise_alert(
            "smtp_auth_failed" if auth else "smtp_tls_failed",
            f"the SMTP server {'refused our login' if auth else 'could not be reached over verified TLS'} ({exc}); "
            f"the outbox is paused and retries after {result.paused_until:%H:%M}Z. Check the [smtp] settings.",
            now=now,
        )
        logger.error("SMTP setup problem; outbox paused: %s", exc, extra={"action": "outbox_paused"})
        return
    except PermanentSendError as exc:
        result.failed += 1
        result.errors.append(str(exc))
        await store.mark_failed(item.id, owner=owner, error=str(exc), now=clock())
        logger.warning("message failed for good", extra={"action": "send_failed", "to": item.recipient})
        return
    except SendError as exc:
        now = clock()
        result.errors.append(str(exc))
        if item.attempts >= policy.max_attempts:
            result.failed += 1
            await store.mark_failed(
                item.id, owner=owner, error=f"gave up after {item.attempts} attempts: {exc}", now=now
            )
            return
        result.retried += 1
        await store.mark_retry(
            item.id, owner=owner, error=str(exc), next_attempt_at=retry_at(item.attempts, now, policy, rng)
        )
        return
    crashpoint("outbox:after-250")
    await store.mark_sent(item.id, owner=owner, now=clock(), reply=reply)
    crashpoint("outbox:after-commit")
    result.sent += 1
    logger.info("sent", extra={"action": "sent", "to": item.recipient, "message_id": item.message_id})
