"""The outbox against a real SMTP server on loopback and a real database: once, and never lost."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from notifier.config.smtp import SmtpSettings
from notifier.core.compose import MailSettings, draft
from notifier.core.messages import Template
from notifier.core.render import Renderer
from notifier.core.sending import OutboxPolicy
from notifier.core.views import OutboxDraft, OutboxState
from notifier.net.mailer import SmtpTransport
from notifier.pipeline.outbox import drain, sending_paused
from notifier.store import Store
from notifier.testing.samples import sample_context
from tests.smtp_server import (
    AUTH_PASSWORD,
    AUTH_USER,
    SmtpServer,
    smtp_server_starttls,
    tls_ca,
    untrusted_ca_bundle,
)

__all__ = ["smtp_server_starttls", "tls_ca", "untrusted_ca_bundle"]

T0 = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC)  # 12:00 in Tokyo
MAIL = MailSettings(sender="Sakura Stationery <shop@sakura.example>", shop_name="Sakura Stationery")
RENDERER = Renderer()


def message(n: int, recipient: str = "alice@example.com", time_zone: str | None = None) -> OutboxDraft:
    return draft(
        sample_context(Template.DELIVERED, "en"),
        renderer=RENDERER,
        mail=MAIL,
        recipient=recipient,
        dedup_key=f"test:{n}",
        rule="delivered",
        now=T0,
        time_zone=time_zone,
    )


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await Store.open(db_url)
    yield store
    await store.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


async def run_drain(
    store: Store, server: SmtpServer, clock: Clock, policy: OutboxPolicy | None = None, **settings
):
    async with SmtpTransport(server.settings(**settings)) as transport:
        return await drain(store, transport, owner="me", policy=policy or OutboxPolicy(), clock=clock)


async def test_sends_the_stored_bytes_once(store: Store, smtp: SmtpServer) -> None:
    drafts = [message(n) for n in range(3)]
    assert await store.enqueue(drafts, now=T0) == 3
    assert await store.enqueue(drafts, now=T0) == 0  # dedup keys exist once, ever
    result = await run_drain(store, smtp, Clock(T0))
    assert result.sent == 3
    assert smtp.connections == 1  # one connection for the batch

    # Exactly the bytes rendered at queue time (the server hands back CRLF-normalised data).
    def lines(raw: bytes) -> list[bytes]:
        return raw.replace(b"\r\n", b"\n").split(b"\n")

    assert sorted(lines(m.data) for m in smtp.messages) == sorted(lines(d.raw) for d in drafts)
    assert {email.message_from_bytes(m.data)["Message-ID"] for m in smtp.messages} == {
        d.message_id for d in drafts
    }
    assert (await run_drain(store, smtp, Clock(T0 + dt.timedelta(hours=1)))).sent == 0
    assert len(smtp.messages) == 3
    assert {i.state for i in await store.outbox()} == {OutboxState.SENT}


async def test_temporary_failures_retry_with_backoff_then_deliver(store: Store, smtp: SmtpServer) -> None:
    smtp.faults.data_temp_failures = 3
    await store.enqueue([message(1)], now=T0)
    clock = Clock(T0)
    waits = []
    for _ in range(3):
        result = await run_drain(store, smtp, clock)
        assert result.retried == 1
        (item,) = await store.outbox()
        assert item.state is OutboxState.PENDING
        waits.append(item.next_attempt_at - clock.now)
        assert (await run_drain(store, smtp, clock)).sent == 0  # not due yet
        clock.now = item.next_attempt_at
    assert waits[0] < waits[1] < waits[2]  # exponential, jittered within [50%, 100%]
    result = await run_drain(store, smtp, clock)
    assert result.sent == 1
    (item,) = await store.outbox()
    assert item.attempts == 4
    assert len([m for m in smtp.messages if m.answered]) == 1


async def test_permanent_refusal_fails_without_retry_and_alerts(store: Store, smtp: SmtpServer) -> None:
    smtp.faults.rcpt_reply = "550 5.1.1 No such user"
    await store.enqueue([message(1)], now=T0)
    result = await run_drain(store, smtp, Clock(T0))
    assert result.failed == 1
    (item,) = await store.outbox()
    assert item.state is OutboxState.FAILED
    assert "550" in (item.last_error or "")
    assert [a.kind for a in await store.alerts()] == ["send_failed"]
    assert (await run_drain(store, smtp, Clock(T0 + dt.timedelta(days=1)))).sent == 0
    smtp.faults.rcpt_reply = None
    assert await store.retry_failed(None, now=T0 + dt.timedelta(days=1)) == 1
    assert (await run_drain(store, smtp, Clock(T0 + dt.timedelta(days=1)))).sent == 1


async def test_gives_up_after_max_attempts(store: Store, smtp: SmtpServer) -> None:
    smtp.faults.data_temp_failures = 99
    await store.enqueue([message(1)], now=T0)
    clock = Clock(T0)
    policy = OutboxPolicy(max_attempts=3)
    for _ in range(3):
        await run_drain(store, smtp, clock, policy)
        clock.now += dt.timedelta(days=1)
    (item,) = await store.outbox()
    assert item.state is OutboxState.FAILED
    assert "gave up after 3 attempts" in (item.last_error or "")


async def test_lost_reply_after_data_resends_the_same_message(store: Store, smtp: SmtpServer) -> None:
    smtp.faults.disconnect_after_data = 1
    draft_ = message(1)
    await store.enqueue([draft_], now=T0)
    clock = Clock(T0)
    assert (await run_drain(store, smtp, clock)).retried == 1
    clock.now += dt.timedelta(hours=1)
    assert (await run_drain(store, smtp, clock)).sent == 1
    ids = [email.message_from_bytes(m.data)["Message-ID"] for m in smtp.messages]
    # The RFC 1047 window: the server kept the first copy; the resend is identical.
    assert ids == [draft_.message_id, draft_.message_id]


async def test_authentication_failure_pauses_without_burning_attempts(store: Store) -> None:
    with SmtpServer(auth=True) as server:
        await store.enqueue([message(n) for n in range(3)], now=T0)
        clock = Clock(T0)
        result = await run_drain(store, server, clock, username=AUTH_USER, password="wrong")
        assert result.paused_until == T0 + OutboxPolicy().auth_pause
        assert result.sent == 0
        items = await store.outbox()
        assert {(i.state, i.attempts) for i in items} == {(OutboxState.PENDING, 0)}
        assert [a.kind for a in await store.alerts()] == ["smtp_auth_failed"]
        assert server.messages == []
        clock.now = result.paused_until
        assert (await run_drain(store, server, clock, username=AUTH_USER, password=AUTH_PASSWORD)).sent == 3


async def test_quiet_hours_defer_and_never_drop(store: Store, smtp: SmtpServer) -> None:
    await store.enqueue(
        [message(1, time_zone="Asia/Tokyo"), message(2, "bob@example.com", "America/New_York")], now=T0
    )
    policy = OutboxPolicy(quiet_hours=(dt.time(21), dt.time(8)))
    clock = Clock(dt.datetime(2026, 11, 2, 13, 0, tzinfo=dt.UTC))  # 22:00 Tokyo, 08:00 New York
    result = await run_drain(store, smtp, clock, policy)
    assert (result.sent, result.deferred) == (1, 1)
    (tokyo,) = [i for i in await store.outbox() if i.recipient == "alice@example.com"]
    assert tokyo.state is OutboxState.PENDING
    assert tokyo.attempts == 0
    assert tokyo.next_attempt_at == dt.datetime(2026, 11, 2, 23, 0, tzinfo=dt.UTC)  # 08:00 Tokyo
    clock.now = tokyo.next_attempt_at
    assert (await run_drain(store, smtp, clock, policy)).sent == 1


async def test_unsubscribed_addresses_get_nothing(store: Store, smtp: SmtpServer) -> None:
    await store.enqueue([message(1), message(2, "bob@example.com")], now=T0)
    assert await store.suppress("Alice@Example.com", now=T0)
    result = await run_drain(store, smtp, Clock(T0))
    assert (result.sent, result.suppressed) == (1, 1)
    assert [m.rcpt_tos for m in smtp.messages] == [("bob@example.com",)]
    assert await store.unsuppress("alice@example.com")


def outbox_process(config: Path, db_url: str, crashpoint: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    if crashpoint:
        env["NOTIFIER_CRASHPOINT"] = crashpoint
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "notifier",
            "outbox",
            "send",
            "--config",
            str(config),
            "--database-url",
            db_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    ("crashpoint", "copies"),
    [
        ("outbox:after-claim", 1),
        ("outbox:before-send", 1),
        ("outbox:after-250", 2),  # the one documented duplicate window
        ("outbox:after-commit", 1),
    ],
)
def test_killed_at_each_step_loses_nothing(db_url: str, tmp_path: Path, crashpoint: str, copies: int) -> None:
    drafts = [message(1)]

    async def seed() -> None:
        store = await Store.open(db_url)
        try:
            await store.enqueue(drafts, now=dt.datetime.now(dt.UTC))
        finally:
            await store.close()

    asyncio.run(seed())
    with SmtpServer() as server:
        config = tmp_path / "notifier.toml"
        config.write_text(
            f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\nfrom = "shop@sakura.example"\nallow_example_identity = true\n'
            f'[notifications]\noutbox_lease = "1s"\n',
            encoding="utf-8",
        )
        crashed = outbox_process(config, db_url, crashpoint)
        assert crashed.returncode == 137, crashed.stderr
        time.sleep(1.2)  # let the dead owner's lease run out
        rerun = outbox_process(config, db_url, None)
        assert rerun.returncode == 0, rerun.stderr
        ids = [
            email.message_from_bytes(m.data, policy=email.policy.default)["Message-ID"]
            for m in server.messages
        ]
        assert ids == [drafts[0].message_id] * copies


async def test_missing_starttls_pauses_and_sends_nothing_in_plaintext(store: Store) -> None:
    with SmtpServer() as server:  # offers no STARTTLS
        await store.enqueue([message(1)], now=T0)
        result = await run_drain(store, server, Clock(T0), security="starttls")
        assert result.paused_until is not None
        assert server.messages == []
        assert not {"MAIL", "RCPT", "DATA", "AUTH"} & {c.verb for c in server.commands}
        assert [a.kind for a in await store.alerts()] == ["smtp_tls_failed"]
        (item,) = await store.outbox()
        assert (item.state, item.attempts) == (OutboxState.PENDING, 0)


async def test_operator_digest_once_a_day_with_alerts_and_stale_numbers(store: Store) -> None:
    from notifier.core.numbers import parse_number
    from notifier.core.rules import RulesConfig
    from notifier.pipeline.poll import Notifier, queue_operator_digest

    notifier = Notifier(rules=RulesConfig(), mail=MAIL, renderer=RENDERER)
    assert await queue_operator_digest(store, notifier, "ops@sakura.example", now=T0) == 0  # nothing to say
    await store.watch(parse_number("EJ271828189JP"), now=T0, label="Order 9")
    await store.raise_alert("send_failed", "message to a@b.example failed for good: 550", now=T0, subject="x")
    later = T0 + dt.timedelta(days=8)
    assert await queue_operator_digest(store, notifier, "ops@sakura.example", now=later) == 1
    assert (
        await queue_operator_digest(store, notifier, "ops@sakura.example", now=later + dt.timedelta(hours=5))
        == 0
    )
    (digest,) = await store.outbox()
    assert digest.recipient == "ops@sakura.example"
    body = email.message_from_bytes(digest.raw, policy=email.policy.default).get_body(
        preferencelist=("plain",)
    )
    assert body is not None
    text = body.get_content()
    assert "EJ271828189JP" in text
    assert "8 days" in text
    assert "550" in text
    assert (
        await queue_operator_digest(store, notifier, "ops@sakura.example", now=later + dt.timedelta(days=1))
        == 1
    )


# ---------------------------------------------------------------------------------------------------------
# SMTP trouble: each class of failure is logged with its reason, pauses or retries, and alerts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def outbox_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "notifier.outbox"]


async def drain_with(store: Store, settings: SmtpSettings, clock: Clock, policy: OutboxPolicy | None = None):
    async with SmtpTransport(settings) as transport:
        return await drain(store, transport, owner="me", policy=policy or OutboxPolicy(), clock=clock)


async def assert_paused_at_once(
    store: Store,
    settings: SmtpSettings,
    caplog: pytest.LogCaptureFixture,
    *,
    kind: str,
    alert: str,
    reason: str,
) -> None:
    """Three due messages; the first try fails before any message is offered."""
    drafts = [message(n) for n in range(3)]
    await store.enqueue(drafts, now=T0)
    clock = Clock(T0)
    caplog.set_level(logging.WARNING, logger="notifier")
    result = await drain_with(store, settings, clock)
    assert (result.sent, result.retried, result.failed, result.held) == (0, 0, 0, 2)
    assert result.pause is not None
    assert result.pause.kind == kind
    assert re.search(reason, result.pause.reason), result.pause.reason
    # No attempt spent on any message; all still due, so new settings or a restart try at once.
    assert {(i.state, i.attempts, i.next_attempt_at) for i in await store.outbox()} == {
        (OutboxState.PENDING, 0, T0)
    }
    (raised,) = await store.alerts()
    assert raised.kind == alert
    assert re.search(reason, raised.message)
    assert "paused" in raised.message
    (line,) = outbox_log(caplog)
    assert line.levelno == logging.ERROR  # the alert email would go through this same server
    first = await store.outbox_item(1)
    assert first is not None
    assert f"to=alice@example.com number={first.number} outbox_id=1" in line.getMessage()
    assert re.search(reason, line.getMessage())
    assert sending_paused(store) == result.pause
    assert result.pause.kind in result.pause.summary()
    # Paused: a later drain, even with a new message due, tries nothing until the pause ends.
    await store.enqueue([message(9)], now=T0)
    clock.now = T0 + dt.timedelta(seconds=30)
    again = await drain_with(store, settings, clock)
    assert again.pause == result.pause
    assert again.sent == again.held == 0
    assert {i.state for i in await store.outbox()} == {OutboxState.PENDING}


async def test_connection_refused_pauses_and_alerts_at_once_and_new_settings_resume(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    closed = SmtpSettings(host="127.0.0.1", port=free_port(), security="none", connect_timeout=2.0)
    await assert_paused_at_once(
        store, closed, caplog, kind="unreachable", alert="smtp_unreachable", reason="connection refused"
    )
    # The operator fixes the port and reloads: the pause does not apply to other settings.
    with SmtpServer() as server:
        result = await drain_with(store, server.settings(), Clock(T0 + dt.timedelta(minutes=1)))
        assert result.sent == 4
        assert sending_paused(store) is None
    assert {(i.state, i.attempts) for i in await store.outbox()} == {(OutboxState.SENT, 1)}


async def test_unresolvable_host_pauses_and_alerts_at_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = SmtpSettings(host="smtp.notifier.invalid", port=587, connect_timeout=2.0)
    await assert_paused_at_once(
        store, nowhere, caplog, kind="unreachable", alert="smtp_unreachable", reason="does not resolve"
    )


@pytest.mark.parametrize("mismatch", ["untrusted certificate", "implicit TLS to a plain server"])
async def test_tls_failure_pauses_and_alerts_at_once(
    store: Store,
    caplog: pytest.LogCaptureFixture,
    smtp_server_starttls: SmtpServer,
    untrusted_ca_bundle: Path,
    mismatch: str,
) -> None:
    if mismatch == "untrusted certificate":
        settings = smtp_server_starttls.settings(cert_bundle=str(untrusted_ca_bundle))
        reason = "certificate verify failed"
    else:
        settings = smtp_server_starttls.settings(security="tls")  # a STARTTLS port spoken to as 465
        reason = "TLS failed"
    await assert_paused_at_once(store, settings, caplog, kind="tls", alert="smtp_tls_failed", reason=reason)
    assert smtp_server_starttls.messages == []
    assert not {"MAIL", "RCPT", "DATA"} & set(smtp_server_starttls.handler.verbs())


async def test_refused_login_pauses_and_alerts_at_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with SmtpServer(auth=True) as server:
        await assert_paused_at_once(
            store,
            server.settings(username=AUTH_USER, password="wrong"),
            caplog,
            kind="auth",
            alert="smtp_auth_failed",
            reason="535",
        )
        pause = sending_paused(store)
        assert pause is not None
        assert pause.until == T0 + OutboxPolicy().auth_pause
        assert server.messages == []
        fixed = server.settings(username=AUTH_USER, password=AUTH_PASSWORD)
        assert (await drain_with(store, fixed, Clock(T0 + dt.timedelta(minutes=2)))).sent == 4


async def test_a_login_to_a_relay_without_auth_pauses_and_says_to_remove_it(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Not "refused our login": the relay advertises no AUTH at all, so no password can help."""
    with SmtpServer() as server:  # aiosmtpd without an authenticator: no AUTH in its EHLO reply
        settings = dataclasses.replace(
            server.settings(username="shop", password="pw"), username_at="/etc/notifier/config.toml:81"
        )
        await assert_paused_at_once(
            store, settings, caplog, kind="auth", alert="smtp_auth_failed", reason="offers no login"
        )
        (raised,) = await store.alerts()
        assert "refused our login" not in raised.message
        assert (
            "smtp.username is set (/etc/notifier/config.toml:81): remove smtp.username and "
            "smtp.password_file from the config"
        ) in raised.message
        assert server.handler.verbs() == ["EHLO"]
        assert (await drain_with(store, server.settings(), Clock(T0 + dt.timedelta(minutes=2)))).sent == 4


async def test_451_retries_with_backoff_logs_each_reply_and_alerts_after_three(
    store: Store, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    smtp.faults.data_temp_failures = 3
    await store.enqueue([message(1)], now=T0)
    caplog.set_level(logging.WARNING, logger="notifier")
    clock = Clock(T0)
    for attempt in (1, 2, 3):
        result = await drain_with(store, smtp.settings(), clock)
        assert (result.retried, result.pause) == (1, None)  # a 4xx is about the message: no pause
        (item,) = await store.outbox()
        assert (item.state, item.attempts) == (OutboxState.PENDING, attempt)
        line = outbox_log(caplog)[-1]
        text = line.getMessage()
        assert f"to=alice@example.com number={item.number} outbox_id={item.id}" in text
        assert f"attempt {attempt} of 8 failed; retrying at {item.next_attempt_at:%Y-%m-%d %H:%M:%S}Z" in text
        assert "451 4.3.0 Try again later" in text
        kinds = [a.kind for a in await store.alerts()]
        if attempt < 3:
            assert (line.levelno, kinds) == (logging.WARNING, [])
        else:
            assert (line.levelno, kinds) == (logging.ERROR, ["smtp_retrying"])
        clock.now = item.next_attempt_at
    (alert,) = await store.alerts()
    assert "451 4.3.0" in alert.message
    assert "3 times" in alert.message
    assert (await drain_with(store, smtp.settings(), clock)).sent == 1
    assert sending_paused(store) is None


async def test_server_that_never_greets_pauses_with_backoff_and_alerts_after_three(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="notifier")
    with socket.socket() as silent:  # accepts connections (the kernel backlog) but never says 220
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        settings = SmtpSettings(
            host="127.0.0.1", port=silent.getsockname()[1], security="none", connect_timeout=0.3, timeout=2.0
        )
        await store.enqueue([message(n) for n in range(3)], now=T0)
        clock = Clock(T0)
        waits = []
        for failures in (1, 2, 3):
            result = await drain_with(store, settings, clock)
            assert result.held == (2 if failures == 1 else 0)  # after a pause, one message probes
            assert result.pause is not None
            assert (result.pause.kind, result.pause.failures, result.pause.since) == ("connect", failures, T0)
            waits.append(result.pause.until - clock.now)
            alerts = [a.kind for a in await store.alerts()]
            assert alerts == ([] if failures < 3 else ["smtp_connect_failed"])
            assert outbox_log(caplog)[-1].levelno == (logging.WARNING if failures < 3 else logging.ERROR)
            clock.now = result.pause.until
    assert waits == [dt.timedelta(minutes=1), dt.timedelta(minutes=2), dt.timedelta(minutes=4)]
    items = await store.outbox()
    assert {(i.state, i.attempts) for i in items} == {(OutboxState.PENDING, 0)}
    assert any("Timed out" in (i.last_error or "") for i in items)


async def test_operator_mail_that_cannot_go_out_is_an_error_and_an_alert_in_full(
    store: Store, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    from notifier.core.rules import RulesConfig
    from notifier.pipeline.poll import Notifier, queue_operator_digest

    caplog.set_level(logging.WARNING, logger="notifier")
    notifier = Notifier(rules=RulesConfig(), mail=MAIL, renderer=RENDERER)
    await store.raise_alert("site_unrecognized", "pages unreadable", now=T0)
    assert await queue_operator_digest(store, notifier, "ops@sakura.example", now=T0) == 1
    smtp.faults.rcpt_reply = "550 5.1.1 No such user"
    assert (await drain_with(store, smtp.settings(), Clock(T0))).failed == 1
    (digest,) = await store.outbox()
    (line,) = outbox_log(caplog)
    assert line.levelno == logging.ERROR
    assert "to=ops@sakura.example" in line.getMessage()
    assert "notifier alerts" in line.getMessage()
    failed = {a.kind: a for a in await store.alerts()}["send_failed"]
    # The subject is stored whole (it used to be the Message-ID cut at 40 characters).
    assert failed.subject == f"outbox {digest.id}"
    assert len(digest.message_id) > 40
    assert digest.message_id in failed.message
    assert "550 5.1.1 No such user" in failed.message


async def test_claims_without_a_send_spend_no_attempts(store: Store, smtp: SmtpServer) -> None:
    # A restart loop: each instance claims the message and dies before sending.
    await store.enqueue([message(1)], now=T0)
    clock = T0
    for _ in range(10):
        (claimed,) = await store.claim_outbox(
            owner="dies", now=clock, limit=10, lease=dt.timedelta(seconds=1)
        )
        assert claimed.attempts == 0
        clock += dt.timedelta(seconds=2)  # the dead owner's lease runs out
    smtp.faults.data_temp_failures = 1
    policy = OutboxPolicy(max_attempts=3)
    assert (await drain_with(store, smtp.settings(), Clock(clock), policy)).retried == 1
    (item,) = await store.outbox()
    assert (item.state, item.attempts) == (OutboxState.PENDING, 1)
    assert (await drain_with(store, smtp.settings(), Clock(item.next_attempt_at), policy)).sent == 1
    (item,) = await store.outbox()
    assert (item.state, item.attempts) == (OutboxState.SENT, 2)


def test_a_restart_loop_does_not_eat_the_retry_budget(db_url: str, tmp_path: Path) -> None:
    drafts = [message(1)]

    async def seed() -> None:
        store = await Store.open(db_url)
        try:
            await store.enqueue(drafts, now=dt.datetime.now(dt.UTC))
        finally:
            await store.close()

    async def state() -> tuple[OutboxState, int]:
        store = await Store.open(db_url)
        try:
            (item,) = await store.outbox()
            return item.state, item.attempts
        finally:
            await store.close()

    asyncio.run(seed())
    with SmtpServer() as server:
        config = tmp_path / "notifier.toml"
        config.write_text(
            f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\nfrom = "shop@sakura.example"\nallow_example_identity = true\n'
            f'[notifications]\noutbox_lease = "1s"\nmax_attempts = 2\n',
            encoding="utf-8",
        )
        for _ in range(3):  # killed after claiming, before sending, more often than max_attempts
            crashed = outbox_process(config, db_url, "outbox:before-send")
            assert crashed.returncode == 137, crashed.stderr
            time.sleep(1.2)
        assert asyncio.run(state()) == (OutboxState.SENDING, 0)
        server.faults.data_temp_failures = 1
        rerun = outbox_process(config, db_url, None)
        assert rerun.returncode == 0, rerun.stderr
        assert "retrying 1" in rerun.stdout
        assert "attempt 1 of 2 failed" in rerun.stderr
        assert "451 4.3.0" in rerun.stderr
        assert asyncio.run(state()) == (OutboxState.PENDING, 1)


async def test_a_later_message_about_the_same_parcel_never_overtakes_an_earlier_one(store: Store) -> None:
    """Two senders (instances) must not deliver "customs cleared" before "customs presented":
    a message waits while an earlier one to the same subscription about the same parcel is
    pending or being sent; other customers' and other parcels' messages do not wait."""
    from notifier.core.numbers import parse_number

    shipment = await store.watch(parse_number("EJ123456785JP"), now=T0)
    other = await store.watch(parse_number("EJ123456799JP"), now=T0)
    await store.subscribe(shipment.id, "alice@example.com", locale="en", now=T0)
    await store.subscribe(other.id, "alice@example.com", locale="en", now=T0)
    ((subscription, *_),) = await store.recipients(shipment.id)
    ((other_subscription, *_),) = await store.recipients(other.id)

    def about(n: int, shipment_id: int, subscription_id: int) -> OutboxDraft:
        return dataclasses.replace(message(n), shipment_id=shipment_id, subscription_id=subscription_id)

    await store.enqueue(
        [
            about(1, shipment.id, subscription),
            about(2, shipment.id, subscription),
            about(3, other.id, other_subscription),
        ],
        now=T0,
    )
    first = await store.claim_outbox(owner="a", now=T0, limit=10, lease=dt.timedelta(minutes=5))
    assert [i.dedup_key for i in first] == ["test:1", "test:3"]
    # Another instance, while "a" is still sending the first: nothing for that parcel.
    assert await store.claim_outbox(owner="b", now=T0, limit=10, lease=dt.timedelta(minutes=5)) == []
    assert await store.mark_sent(first[0].id, owner="a", now=T0, reply="250 ok")
    second = await store.claim_outbox(owner="b", now=T0, limit=10, lease=dt.timedelta(minutes=5))
    assert [i.dedup_key for i in second] == ["test:2"]


async def test_listeners_hear_of_pending_mail_after_its_commit_only(store: Store) -> None:
    """What wakes the daemon's sender: every commit that makes mail pending, after the commit
    (so the sender finds it), and nothing else."""
    heard: list[int] = []
    store.on_queued(lambda: heard.append(1))
    assert await store.enqueue([message(1)], now=T0) == 1
    assert heard == [1]
    assert await store.enqueue([message(1)], now=T0) == 0  # nothing new: no wake-up
    assert heard == [1]
    await store.raise_alert("test", "an alert is not mail", now=T0)
    assert heard == [1]

    # A message that could not be built is stored failed, with nothing to send; retrying it is.
    failing = dataclasses.replace(message(2), error="template broken")
    assert await store.enqueue([failing], now=T0) == 1
    assert heard == [1]
    assert await store.retry_failed(None, now=T0) == 1
    assert heard == [1, 1]


async def test_a_failing_listener_does_not_undo_the_commit(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("listener bug")

    store.on_queued(broken)
    with caplog.at_level(logging.ERROR):
        assert await store.enqueue([message(1)], now=T0) == 1
    assert [i.state for i in await store.outbox()] == [OutboxState.PENDING]
    assert "queued-mail listener failed" in caplog.text


async def test_operator_digest_lists_stalled_parcels_and_links_the_board(store: Store) -> None:
    from notifier.core.numbers import parse_number
    from notifier.core.rules import RulesConfig
    from notifier.pipeline.poll import Notifier, queue_operator_digest
    from tests.test_store import NUMBER, page_with, poll

    mail = dataclasses.replace(MAIL, board_url="https://track.sakura.example/admin/")
    notifier = Notifier(rules=RulesConfig(), mail=mail, renderer=RENDERER)
    shipment = await store.watch(parse_number(NUMBER), now=T0, label="Order 7")
    await poll(store, shipment.id, page_with(2), T0)
    (view,) = await store.shipments()
    # No alert at all: the stalled parcel alone is worth the day's digest.
    assert await store.alerts() == []
    assert (
        await queue_operator_digest(store, notifier, "ops@sakura.example", now=T0 + dt.timedelta(days=30))
        == 1
    )
    (digest,) = await store.outbox()
    parsed = email.message_from_bytes(digest.raw, policy=email.policy.default)
    text = parsed.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    html = parsed.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "Stalled parcels" in text
    # Number, stage (as [notifications.stall] names it) and days.
    assert f"- EL 015 307 999 JP (Order 7): {view.stage.value}, 30 days\n" in text
    assert "Open the operator board:\nhttps://track.sakura.example/admin/" in text
    assert 'href="https://track.sakura.example/admin/"' in html
