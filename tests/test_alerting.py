"""Operator alerts as they happen: the outage tracker, batching, and the desk on real databases."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
from collections.abc import AsyncIterator

import pytest

from notifier.config import Settings, parse_settings
from notifier.core.views import AlertView, OutboxState
from notifier.pipeline.alerting import (
    SITE_DOWN,
    SITE_RECOVERED,
    AlertDesk,
    SiteWatch,
    breaker_failing,
    news,
    notice_due,
    notice_lines,
)
from notifier.pipeline.cycle import CircuitBreaker
from notifier.pipeline.wiring import notifier_for
from notifier.store import Store

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


def alert(id_: int, *, at: dt.datetime = T0, kind: str = "gave_up", closed: bool = False) -> AlertView:
    return AlertView(
        id=id_,
        kind=kind,
        subject="",
        message="m",
        first_seen_at=at,
        last_seen_at=at,
        count=1,
        acknowledged_at=at if closed else None,
    )


def test_site_watch_alerts_once_after_the_delay_and_once_on_recovery() -> None:
    watch = SiteWatch(after=30 * MIN)
    outcomes = [watch.observe(True, T0 + i * MIN) for i in range(0, 60, 5)]
    assert outcomes.count("down") == 1
    assert outcomes.index("down") == 6  # at 30 minutes, not before
    assert watch.observe(False, T0 + 61 * MIN) == "recovered"
    assert watch.observe(False, T0 + 62 * MIN) is None
    assert watch.observe(True, T0 + 63 * MIN) is None  # a new outage starts its own clock


def test_a_short_outage_raises_nothing() -> None:
    watch = SiteWatch(after=30 * MIN)
    assert watch.observe(True, T0) is None
    assert watch.observe(True, T0 + 29 * MIN) is None
    assert watch.observe(False, T0 + 29 * MIN) is None
    assert watch.observe(True, T0 + 40 * MIN) is None  # the clock restarted at the success


def test_breaker_failing_needs_a_run_of_failures() -> None:
    breaker = CircuitBreaker()
    assert not breaker_failing(breaker)
    breaker.failure(T0)
    assert not breaker_failing(breaker)  # one failed request is not an outage
    breaker.failure(T0)
    breaker.failure(T0)
    assert breaker_failing(breaker)
    breaker.success()
    assert not breaker_failing(breaker)
    breaker.failure(T0, retry_after=60)  # a 429 opens it at once
    assert breaker_failing(breaker)


def test_batching_waits_for_the_window_after_the_oldest_unsent_alert() -> None:
    batch = 5 * MIN
    alerts = [alert(1, at=T0), alert(2, at=T0 + 4 * MIN)]
    assert not notice_due([], T0 + MIN, batch)
    assert not notice_due(alerts, T0 + 4 * MIN, batch)
    assert notice_due(alerts, T0 + 5 * MIN, batch)
    assert notice_due([alert(1)], T0, dt.timedelta(0))


def test_news_skips_alerts_closed_by_hand_but_keeps_fresh_notices() -> None:
    now = T0 + MIN
    picked = news(
        [
            alert(1),
            alert(2, closed=True),
            alert(3, kind=SITE_RECOVERED, closed=True),
            alert(4, kind=SITE_RECOVERED, closed=True, at=T0 - dt.timedelta(days=2)),
        ],
        now,
    )
    assert [a.id for a in picked] == [1, 3]


def test_notice_lines_are_capped_with_a_pointer_to_the_rest() -> None:
    lines = notice_lines([alert(i) for i in range(1, 251)])
    assert len(lines) == 100
    assert lines[-1].message == "and 151 more: see `notifier alerts`"


def settings(operator: str | None = "ops@example.com") -> Settings:
    text = "[notifications]\n" + (f'operator = "{operator}"\n' if operator else "")
    return parse_settings(text)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(db_url)
    yield opened
    await opened.close()


async def operator_mail(store: Store) -> list[str]:
    """The text of each queued operator alert email, oldest first."""
    items = sorted(await store.outbox(), key=lambda i: i.id)
    out = []
    for item in items:
        if item.rule != "operator_alert":
            continue
        message = email.message_from_bytes(item.raw, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        out.append(body.get_content())
    return out


async def test_alerts_are_emailed_in_batches_each_once(store: Store) -> None:
    desk = AlertDesk()
    conf = settings()
    notifier = notifier_for(conf)
    breaker = CircuitBreaker()
    await desk.start(store, T0)

    async def tick(now: dt.datetime) -> None:
        await desk.tick(
            store, notifier, breaker, operator="ops@example.com", batch=5 * MIN, down_after=30 * MIN, now=now
        )

    await store.raise_alert("gave_up", "first problem", now=T0, subject="A")
    await tick(T0 + MIN)
    assert await operator_mail(store) == []  # the batch window is still open
    await store.raise_alert("gave_up", "second problem", now=T0 + 2 * MIN, subject="B")
    await tick(T0 + 5 * MIN)
    mails = await operator_mail(store)
    assert len(mails) == 1
    assert "first problem" in mails[0]
    assert "second problem" in mails[0]
    await store.raise_alert("gave_up", "first problem", now=T0 + 6 * MIN, subject="A")  # a repeat
    await tick(T0 + 20 * MIN)
    assert len(await operator_mail(store)) == 1  # repeats of an open alert are not news
    await store.raise_alert("unknown_status", "third problem", now=T0 + 21 * MIN, subject="C")
    await tick(T0 + 26 * MIN)
    mails = await operator_mail(store)
    assert len(mails) == 2
    assert "third problem" in mails[1]
    assert "first problem" not in mails[1]
    # A restarted daemon picks up from the last email, not from the start.
    again = AlertDesk()
    await again.start(store, T0 + 30 * MIN)
    await again.tick(
        store,
        notifier,
        breaker,
        operator="ops@example.com",
        batch=5 * MIN,
        down_after=30 * MIN,
        now=T0 + 40 * MIN,
    )
    assert len(await operator_mail(store)) == 2


async def test_an_outage_raises_one_alert_and_one_recovery_notice(store: Store) -> None:
    desk = AlertDesk()
    notifier = notifier_for(settings())
    breaker = CircuitBreaker()
    await desk.start(store, T0)
    for _ in range(5):
        breaker.failure(T0)  # opens
    for minute in range(0, 45, 5):
        await desk.tick(
            store,
            notifier,
            breaker,
            operator="ops@example.com",
            batch=0 * MIN,
            down_after=30 * MIN,
            now=T0 + minute * MIN,
        )
    open_ = await store.alerts()
    assert [a.kind for a in open_] == [SITE_DOWN]
    assert open_[0].count == 1
    breaker.success()
    await desk.tick(
        store,
        notifier,
        breaker,
        operator="ops@example.com",
        batch=0 * MIN,
        down_after=30 * MIN,
        now=T0 + 50 * MIN,
    )
    await desk.tick(
        store,
        notifier,
        breaker,
        operator="ops@example.com",
        batch=0 * MIN,
        down_after=30 * MIN,
        now=T0 + 55 * MIN,
    )
    assert await store.alerts() == []  # recovery closes the outage alert
    every = await store.alerts(include_acknowledged=True)
    assert sorted(a.kind for a in every) == [SITE_DOWN, SITE_RECOVERED]
    mails = await operator_mail(store)
    assert len(mails) == 2
    assert "Japan Post not answering" in mails[0]
    assert "answers again (it failed for 50 min)" in mails[1]


async def test_a_restart_during_an_outage_still_sends_the_recovery_notice(store: Store) -> None:
    await store.raise_alert(SITE_DOWN, "down", now=T0)
    desk = AlertDesk()
    await desk.start(store, T0 + MIN)
    await desk.tick(
        store,
        notifier_for(settings()),
        CircuitBreaker(),
        operator="ops@example.com",
        batch=MIN,
        down_after=30 * MIN,
        now=T0 + 2 * MIN,
    )
    assert [a.kind for a in await store.alerts(include_acknowledged=True)] == [SITE_RECOVERED, SITE_DOWN]


async def test_without_an_operator_address_alerts_are_logged_at_error(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    desk = AlertDesk()
    await desk.start(store, T0)
    await store.raise_alert("gave_up", "nobody will read this by email", now=T0)
    with caplog.at_level(logging.INFO, logger="notifier"):
        await desk.tick(
            store,
            notifier_for(settings(None)),
            CircuitBreaker(),
            operator=None,
            batch=MIN,
            down_after=30 * MIN,
            now=T0 + 2 * MIN,
        )
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "not emailed: no [notifications] operator" in errors[0].getMessage()
    assert "nobody will read this by email" in errors[0].getMessage()
    assert (await store.outbox()) == []
    assert await desk.status(store) == "; 1 open alert, newest: gave_up: nobody will read this by email"


async def test_an_alert_email_that_cannot_be_sent_is_reported_once_and_in_the_status(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    desk = AlertDesk()
    notifier = notifier_for(settings())
    await desk.start(store, T0)
    await store.raise_alert("gave_up", "look at this", now=T0)

    async def tick(now: dt.datetime) -> None:
        await desk.tick(
            store,
            notifier,
            CircuitBreaker(),
            operator="ops@example.com",
            batch=MIN,
            down_after=30 * MIN,
            now=now,
        )

    await tick(T0 + 2 * MIN)
    [item] = await store.claim_outbox(owner="me", now=T0 + 2 * MIN, limit=10, lease=MIN)
    await store.mark_retry(item.id, owner="me", error="connection refused by 127.0.0.1:1", next_attempt_at=T0)
    with caplog.at_level(logging.INFO, logger="notifier"):
        await tick(T0 + 3 * MIN)
        await tick(T0 + 4 * MIN)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "operator alert email to ops@example.com not sent (connection refused by 127.0.0.1:1); "
        "the alerts are in `notifier alerts`"
    ]
    status = await desk.status(store)
    assert "1 open alert, newest: gave_up: look at this" in status
    assert "(alert email not sent: connection refused by 127.0.0.1:1)" in status
    [pending] = await store.outbox(states=[OutboxState.PENDING])
    assert pending.id == item.id


def test_alert_keys_are_read_and_checked_with_file_line_and_key() -> None:
    conf = parse_settings('[japanpost]\ndown_alert_after = "10m"\n[notifications]\nalert_batch = "2m"\n')
    assert conf.japanpost.down_alert_after == 10 * MIN
    assert conf.notifications.alert_batch == 2 * MIN
    defaults = parse_settings("")
    assert defaults.japanpost.down_alert_after == 30 * MIN
    assert defaults.notifications.alert_batch == 5 * MIN
    from pathlib import Path

    from notifier.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_settings(
            '[japanpost]\ndown_alert_after = "soon"\n[notifications]\nalert_batch = "2d"\n', Path("c.toml")
        )
    assert sorted(str(caught.value).splitlines()) == [
        'c.toml:2: japanpost.down_alert_after: \'soon\' is not a duration (use seconds, or e.g. "30s", "15m", "6h", "7d")',
        "c.toml:4: notifications.alert_batch: at most 1d (the daily digest covers longer)",
    ]
