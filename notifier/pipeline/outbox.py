"""Draining the outbox: lease, send the stored bytes, record; retries, pauses, quiet hours."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from notifier import hints
from notifier.core.mime import (
    AuthenticationError,
    LoginNotOfferedError,
    MessageBuildError,
    SendError,
    ServerUnreachableError,
    TlsRequiredError,
    with_date,
)
from notifier.core.rules import quiet_until
from notifier.core.sending import (
    PAUSE_ALERTS,
    QUIET_HOURS,
    OutboxPolicy,
    RecordedPause,
    SendingPause,
    expected_send,
    recorded_pause,
    retry_at,
)
from notifier.core.views import OutboxItem
from notifier.net.mailer import FileTransport, SmtpTransport
from notifier.pipeline.faults import crashpoint
from notifier.store import Store

__all__ = [
    "DrainResult",
    "OutboxPolicy",
    "RecordedPause",
    "SendingPause",
    "Transport",
    "drain",
    "expected_send",
    "recorded_pause",
    "reevaluate_quiet_hours",
    "retry_at",
    "sending_paused",
]

# Pinned to the pre-package name: operators filter journald on `notifier.outbox` (see the README).
logger = logging.getLogger("notifier.outbox")

Transport = SmtpTransport | FileTransport


# Per store, for this process: the daemon drains one store with a fresh transport each tick, so
# the pause must outlive a drain. Rows stay due in the database: a restart simply tries again.
_pauses: weakref.WeakKeyDictionary[Store, SendingPause] = weakref.WeakKeyDictionary()


def sending_paused(store: Store) -> SendingPause | None:
    """The SMTP trouble this process is pausing `store`'s outbox for, or None when sending works.

    Cheap (no query): meant for status lines such as sd_notify STATUS. Kept from the first
    failure until a send succeeds, also while a retry is due (`until` in the past).
    """
    return _pauses.get(store)


@dataclass(slots=True)
class DrainResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    suppressed: int = 0
    held: int = 0  # claimed after a pause began, handed back untouched
    paused_until: dt.datetime | None = None
    pause: SendingPause | None = None
    errors: list[str] = field(default_factory=list)


async def reevaluate_quiet_hours(store: Store, policy: OutboxPolicy, *, now: dt.datetime) -> int:
    """`quiet_hours` changed: each message deferred by quiet hours is due when the new window
    ends for its recipient, or now if it is outside it. Returns how many moved."""
    moves = []
    for message_id, time_zone, due in await store.deferred_for_quiet_hours():
        until = quiet_until(now, policy.zone_of(time_zone), policy.quiet_hours) or now
        if until != due:
            moves.append((message_id, until))
    return await store.reschedule_pending(moves)


def _destination(transport: Transport) -> object:
    return transport.settings if isinstance(transport, SmtpTransport) else transport.directory


def _server(transport: Transport) -> str:
    if isinstance(transport, SmtpTransport):
        return f"{transport.settings.host}:{transport.settings.port}"
    return str(transport.directory)


def _fields(item: OutboxItem) -> str:
    return f"to={item.recipient} number={item.number or '-'} outbox_id={item.id}"


def _extra(item: OutboxItem, action: str, **more: object) -> dict[str, object]:
    return {"action": action, "to": item.recipient, "number": item.number, "outbox_id": item.id, **more}


def _is_operator(item: OutboxItem) -> bool:
    # The daily digest and any other mail to the operator: its failure is the operator's only
    # news channel failing, so it is logged at error level.
    return item.rule.startswith("operator")


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

    While sending is paused (see sending_paused) nothing is claimed; at its `until` one message
    is tried, and the pause ends when a send succeeds, or at once if the transport's settings
    changed.
    """
    rng = rng or random.Random()
    result = DrainResult()
    destination = _destination(transport)
    pause = _pauses.get(store)
    if pause is not None and pause.destination != destination:
        del _pauses[store]
        logger.info(
            "mail settings changed; sending resumes (it was paused: %s)",
            pause.reason,
            extra={"action": "outbox_resumed"},
        )
        pause = None
    elif pause is not None and clock() < pause.until:
        result.paused_until, result.pause = pause.until, pause
        return result
    # After a pause, one message probes the server; the rest follow once it has gone through.
    limit = 1 if pause is not None else policy.batch
    claimed = await store.claim_outbox(owner=owner, now=clock(), limit=limit, lease=policy.lease)
    crashpoint("outbox:after-claim")
    # Checked once per batch, right before sending it: an unsubscribe takes effect from the
    # next batch (a fraction of a second), for one query instead of one per message.
    suppressed = await store.suppressed_among([item.recipient for item in claimed])
    # Unsubscribed from one parcel only (the web face's "this parcel"): its later mail stops too.
    parcels = await store.suppressed_shipments_among([(item.recipient, item.number) for item in claimed])
    for position, item in enumerate(claimed):
        now = clock()
        if result.pause is not None:
            # The server cannot be used: hand the rest back untouched, still due, attempts unspent.
            await store.mark_retry(
                item.id,
                owner=owner,
                error=f"held while sending is paused: {result.pause.reason}",
                next_attempt_at=now,
                count_attempt=False,
            )
            result.held += 1
            if _is_operator(item):
                logger.error(
                    "operator email not sent (%s): sending is paused; its alerts are in %s",
                    _fields(item),
                    hints.command("alerts"),
                    extra=_extra(item, "operator_mail_held"),
                )
            continue
        if item.recipient.lower() in suppressed or (item.recipient.lower(), item.number) in parcels:
            await store.mark_suppressed(item.id, owner=owner)
            result.suppressed += 1
            continue
        # Quiet hours spare customers; an operator alert (alerting.NOTICE_RULE) must not wait them out.
        until = (
            None
            if item.rule == "operator_alert"
            else quiet_until(now, policy.zone_of(item.time_zone), policy.quiet_hours)
        )
        if until is not None:
            await store.mark_retry(
                item.id, owner=owner, error=QUIET_HOURS, next_attempt_at=until, count_attempt=False
            )
            result.deferred += 1
            continue
        if not item.raw:
            # A message that could not be built, put back by hand: there is nothing to send.
            await store.mark_failed(
                item.id,
                owner=owner,
                error=item.last_error or "the message was never built; nothing to send",
                now=now,
                count_attempt=False,
            )
            result.failed += 1
            continue
        if item.first_attempt_at is None:
            # The Date is the first attempt's time, not the queue time (a message held by quiet
            # hours must not look hours old), and is committed before the send so that every
            # retry, and a resend after a crash, carries the same bytes.
            try:
                raw = with_date(item.raw, now)
            except MessageBuildError as exc:
                await _fail(
                    store, item, f"the Date header cannot be set: {exc}", owner=owner, now=now, result=result
                )
                continue
            if not await store.fix_date(item.id, owner=owner, raw=raw, now=now):
                continue  # the lease went to another instance, which sends it
            item = dataclasses.replace(item, raw=raw, first_attempt_at=now)
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
    except SendError as exc:
        result.errors.append(str(exc))
        if (
            isinstance(exc, AuthenticationError | TlsRequiredError | ServerUnreachableError)
            or not exc.offered
        ):
            await _pause(store, transport, item, exc, owner=owner, policy=policy, now=clock(), result=result)
        elif exc.permanent:
            await _fail(store, item, str(exc), owner=owner, now=clock(), result=result)
        else:
            await _retry(
                store, transport, item, exc, owner=owner, policy=policy, now=clock(), rng=rng, result=result
            )
        return
    crashpoint("outbox:after-250")
    await store.mark_sent(item.id, owner=owner, now=clock(), reply=reply)
    crashpoint("outbox:after-commit")
    result.sent += 1
    logger.info(
        "sent %s message_id=%s",
        _fields(item),
        item.message_id,
        extra=_extra(item, "sent", message_id=item.message_id),
    )
    pause = _pauses.pop(store, None)
    if pause is not None:
        logger.warning(
            "mail sending works again after %d failed tries since %s (%s)",
            pause.failures,
            f"{pause.since:%Y-%m-%d %H:%M}Z",
            pause.reason,
            extra={"action": "outbox_resumed"},
        )


async def _pause(
    store: Store,
    transport: Transport,
    item: OutboxItem,
    exc: SendError,
    *,
    owner: str,
    policy: OutboxPolicy,
    now: dt.datetime,
    result: DrainResult,
) -> None:
    """The server, not this message, failed: hold all sending, spend no attempt, alert."""
    kind = (
        "auth"
        if isinstance(exc, AuthenticationError)
        else "tls"
        if isinstance(exc, TlsRequiredError)
        else "unreachable"
        if isinstance(exc, ServerUnreachableError)
        else "connect"
    )
    previous = _pauses.get(store)
    failures = previous.failures + 1 if previous is not None else 1
    if kind in ("auth", "tls"):
        wait = policy.auth_pause
    else:
        wait = min(policy.auth_pause, policy.backoff_base * 2 ** (failures - 1))
    pause = SendingPause(
        kind=kind,
        reason=str(exc),
        since=previous.since if previous is not None else now,
        until=now + wait,
        failures=failures,
        destination=_destination(transport),
    )
    _pauses[store] = pause
    result.pause, result.paused_until = pause, pause.until
    # Still due: the pause holds it back in this process; a restart or new settings try at once.
    await store.mark_retry(item.id, owner=owner, error=str(exc), next_attempt_at=now, count_attempt=False)
    alert_kind, text = PAUSE_ALERTS[kind]
    if isinstance(exc, LoginNotOfferedError):
        # Not a wrong password: the relay takes no login at all, and the error says what to remove.
        text = "{reason}."
    message = text.format(
        server=_server(transport), reason=exc, failures=failures, since=f"{pause.since:%H:%M}Z"
    ) + (
        f" Mail sending is paused, no attempt counted; next try at {pause.until:%H:%M}Z, or at once "
        "when the [smtp] settings change (reload)."
    )
    alert = kind != "connect" or failures >= policy.alert_after
    if alert:
        await store.raise_alert(alert_kind, message, now=now)
    # The alert email would go through this same server: the log is where the operator sees it now.
    (logger.error if alert else logger.warning)(
        "SMTP trouble while sending %s: %s",
        _fields(item),
        message,
        extra=_extra(item, "outbox_paused", kind=kind, error=str(exc), until=pause.until.isoformat()),
    )


async def _fail(
    store: Store, item: OutboxItem, error: str, *, owner: str, now: dt.datetime, result: DrainResult
) -> None:
    result.failed += 1
    await store.mark_failed(item.id, owner=owner, error=error, now=now)
    (logger.error if _is_operator(item) else logger.warning)(
        "message failed for good %s: %s%s",
        _fields(item),
        error,
        f"; it was an operator email, its alerts are in {hints.command('alerts')}"
        if _is_operator(item)
        else "",
        extra=_extra(item, "send_failed", error=error),
    )


async def _retry(
    store: Store,
    transport: Transport,
    item: OutboxItem,
    exc: SendError,
    *,
    owner: str,
    policy: OutboxPolicy,
    now: dt.datetime,
    rng: random.Random,
    result: DrainResult,
) -> None:
    """The message was offered and refused for now (a 4xx, a dropped link): back off and retry."""
    attempts = item.attempts + 1  # this one was really tried
    if attempts >= policy.max_attempts:
        await _fail(
            store, item, f"gave up after {attempts} attempts: {exc}", owner=owner, now=now, result=result
        )
        return
    result.retried += 1
    next_at = retry_at(attempts, now, policy, rng)
    await store.mark_retry(item.id, owner=owner, error=str(exc), next_attempt_at=next_at)
    alert = attempts >= policy.alert_after
    if alert:
        await store.raise_alert(
            "smtp_retrying",
            f"the SMTP server {_server(transport)} has refused message {item.id} to {item.recipient} "
            f"about {item.number or '-'} {attempts} times for now (latest: {exc}); it is retried with "
            f"back-off, next at {next_at:%H:%M}Z, and fails for good after {policy.max_attempts} attempts.",
            now=now,
        )
    (logger.error if alert or _is_operator(item) else logger.warning)(
        "send %s attempt %d of %d failed; retrying at %s: %s",
        _fields(item),
        attempts,
        policy.max_attempts,
        f"{next_at:%Y-%m-%d %H:%M:%S}Z",
        exc,
        extra=_extra(item, "send_retry", attempt=attempts, error=str(exc), retry_at=next_at.isoformat()),
    )
