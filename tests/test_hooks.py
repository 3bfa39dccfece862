"""Alerts beyond email: the operator webhook and the heartbeat, against a real local HTTP endpoint, a
refusing SMTP port, the simulator's faults and real databases; and the daemon as a process."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from notifier.config import parse_settings
from notifier.core.views import AlertView, OutboxState
from notifier.errors import ConfigError
from notifier.pipeline.alerting import AlertDesk
from notifier.pipeline.cycle import CircuitBreaker
from notifier.pipeline.hooks import (
    HEARTBEAT_EVERY,
    WEBHOOK_BACKOFF_BASE,
    fail_url,
    heartbeat_ping,
    redact_url,
    webhook_body,
)
from notifier.pipeline.outbox import sending_paused
from notifier.pipeline.wiring import notifier_for
from notifier.store import Store
from notifier.testing.simulator import Fault, Journey, Simulator, SimulatorServer
from tests.smtp_server import SmtpServer
from tests.test_config_robust import config_check
from tests.test_daemon import start, wait_for, world
from tests.test_web_ops import started_daemon, utcnow, write_config
from tests.web_server import Recorder, closed_port, wait_until

__all__ = ["world"]

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
SECRET = "T000/B000/XXXXSECRETXXXX"


# --- configuration ------------------------------------------------------------------------------


def test_both_urls_load_and_bad_ones_name_the_key_without_the_secret() -> None:
    good = parse_settings(
        f'[notifications]\noperator_webhook = "https://hooks.example.com/services/{SECRET}"\n'
        'heartbeat_url = "http://127.0.0.1:8000/ping/abc"\n'
    )
    assert good.notifications.operator_webhook == f"https://hooks.example.com/services/{SECRET}"
    assert good.notifications.heartbeat_url == "http://127.0.0.1:8000/ping/abc"
    assert parse_settings("").notifications.operator_webhook is None
    for value, why in [
        (f"ftp://hooks.example.com/{SECRET}", "must be an http:// or https:// URL (this one has ftp:)"),
        (f"hooks.example.com/{SECRET}", "must be an http:// or https:// URL"),
        (f"https:///{SECRET}", "must name a host"),
        (f"https://hooks.example.com/{SECRET} x", "printable ASCII without spaces"),
        (f"https://hooks.example.com:99999/{SECRET}", "is not a valid URL"),
    ]:
        for key in ("operator_webhook", "heartbeat_url"):
            with pytest.raises(ConfigError) as caught:
                parse_settings(f'[notifications]\n{key} = "{value}"\n', Path("/etc/notifier/config.toml"))
            message = str(caught.value)
            assert f"notifications.{key}" in message
            assert "config.toml:2" in message
            assert why in message
            assert "SECRET" not in message
    with pytest.raises(ConfigError, match=r"notifications\.heartbeat_url: must be a non-empty string"):
        parse_settings("[notifications]\nheartbeat_url = 5\n")


def test_config_check_names_the_hosts_only(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/n.db"\n[notifications]\n'
        f'operator_webhook = "https://hooks.example.com/services/{SECRET}"\n'
        f'heartbeat_url = "https://hc-ping.example/{SECRET}"\n',
        encoding="utf-8",
    )
    check = config_check(config)
    assert check.returncode == 0, check.stderr
    assert (
        "operator webhook: https://hooks.example.com/…; heartbeat: https://hc-ping.example/…" in check.stdout
    )
    assert "SECRET" not in check.stdout + check.stderr
    # No [intake] secret anywhere: the shop webhooks and the API are off, and it says so.
    assert "intake: none" in check.stdout


def test_urls_are_logged_by_host_only_and_fail_goes_on_the_path() -> None:
    assert redact_url(f"https://user:pw@hooks.example.com:8443/services/{SECRET}?token=x") == (
        "https://hooks.example.com:8443/…"
    )
    assert fail_url("https://hc-ping.com/1234-abcd") == "https://hc-ping.com/1234-abcd/fail"
    assert fail_url("https://hc-ping.com/1234-abcd/?rid=1") == "https://hc-ping.com/1234-abcd/fail?rid=1"


def test_the_webhook_body_is_slack_text_with_the_alerts_as_fields() -> None:
    alerts = [
        AlertView(
            id=7,
            kind="site_down",
            subject="",
            message="Japan Post has answered no request for 30 min",
            first_seen_at=T0,
            last_seen_at=T0,
            count=1,
            acknowledged_at=None,
        ),
        AlertView(
            id=8,
            kind="poll_error",
            subject="EJ123456785JP",
            message="polling failed",
            first_seen_at=T0,
            last_seen_at=T0,
            count=3,
            acknowledged_at=None,
        ),
    ]
    body = webhook_body(alerts, instance="host:1")
    assert body["text"].splitlines() == [
        "notifier on host:1: 2 operator alerts",
        "• site_down: Japan Post has answered no request for 30 min",
        "• poll_error EJ123456785JP: polling failed (×3)",
    ]
    assert [a["id"] for a in body["alerts"]] == [7, 8]
    assert body["alerts"][1]["subject"] == "EJ123456785JP"
    assert body["alerts"][0]["first_seen_at"] == "2026-12-01T09:00:00+00:00"


def test_heartbeat_pings_at_most_once_per_period_and_says_fail_for_a_failure_in_it() -> None:
    assert heartbeat_ping(None, False, T0, HEARTBEAT_EVERY) == "ok"
    assert heartbeat_ping(T0, False, T0 + dt.timedelta(seconds=59), HEARTBEAT_EVERY) is None
    assert heartbeat_ping(T0, True, T0 + dt.timedelta(seconds=59), HEARTBEAT_EVERY) is None
    assert heartbeat_ping(T0, True, T0 + dt.timedelta(seconds=60), HEARTBEAT_EVERY) == "fail"


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # httpx names the full URL at INFO; `notifier run` logs only its own loggers at INFO (the
    # others at WARNING), which the end-to-end test checks on the daemon's real output.
    return [r for r in caplog.records if r.name.startswith("notifier")]


# --- the webhook against a real endpoint ----------------------------------------------------------


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = await Store.open(db_url)
    try:
        yield opened
    finally:
        await opened.close()


async def tick(
    desk: AlertDesk, store: Store, url: str, now: dt.datetime, operator: str | None = None
) -> None:
    settings = parse_settings("")
    await desk.tick(
        store,
        notifier_for(settings),
        CircuitBreaker(),
        operator=operator,
        batch=dt.timedelta(0),
        down_after=dt.timedelta(minutes=30),
        now=now,
        webhook=url,
        instance="test",
    )


async def test_a_webhook_answering_500_then_200_gets_each_alert_once(
    store: Store, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    desk = AlertDesk()
    await desk.start(store, T0)
    url = f"{recorder.url}/services/{SECRET}"
    recorder.script = [500]
    await store.raise_alert("gave_up", "EJ1: stopped polling", now=T0, subject="EJ1")
    with caplog.at_level(logging.INFO):
        await tick(desk, store, url, T0)
        assert [hit.status for hit in recorder.received()] == [500]
        await tick(desk, store, url, T0 + WEBHOOK_BACKOFF_BASE / 2)  # backing off: no post
        assert len(recorder.received()) == 1
        await store.raise_alert("poll_error", "EJ2: polling failed", now=T0, subject="EJ2")
        await tick(desk, store, url, T0 + WEBHOOK_BACKOFF_BASE)
        for minutes in range(1, 4):  # nothing more, ever
            await tick(desk, store, url, T0 + dt.timedelta(minutes=minutes))
    hits = recorder.received()
    assert [hit.status for hit in hits] == [500, 200]
    assert all(hit.path == f"/services/{SECRET}" and hit.method == "POST" for hit in hits)
    assert hits[0].headers["content-type"] == "application/json"
    assert [a["kind"] for a in hits[0].json()["alerts"]] == ["gave_up"]
    # The retry carries the alert that failed and the one raised meanwhile, in one post.
    assert [a["kind"] for a in hits[1].json()["alerts"]] == ["gave_up", "poll_error"]
    assert "EJ1: stopped polling" in hits[1].json()["text"]
    failed = [r for r in caplog.records if getattr(r, "action", "") == "webhook_failed"]
    assert len(failed) == 1
    assert "HTTP 500" in failed[0].getMessage()
    assert all("SECRET" not in r.getMessage() for r in ours(caplog))


async def test_an_unreachable_webhook_never_fails_the_alert_job_and_is_given_up_on_loudly(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    desk = AlertDesk()
    await desk.start(store, T0)
    url = f"http://127.0.0.1:{closed_port()}/{SECRET}"
    await store.raise_alert("gave_up", "EJ1: stopped polling", now=T0, subject="EJ1")
    with caplog.at_level(logging.WARNING):
        await tick(desk, store, url, T0)
        assert [a.kind for a in desk.webhook.pending] == ["gave_up"]
        await tick(desk, store, url, T0 + dt.timedelta(days=1, hours=1))
    assert desk.webhook.pending == []
    gave_up = [r for r in caplog.records if getattr(r, "action", "") == "webhook_gave_up"]
    assert len(gave_up) == 1
    assert gave_up[0].levelno == logging.ERROR
    assert "EJ1: stopped polling" in gave_up[0].getMessage()
    assert all("SECRET" not in r.getMessage() for r in ours(caplog))


async def test_an_alert_goes_by_webhook_while_smtp_refuses_it(
    tmp_path: Path, sqlite_template: Path, sim_server: SimulatorServer, recorder: Recorder
) -> None:
    path = tmp_path / "notifier.db"
    shutil.copyfile(sqlite_template, path)
    hook = f"{recorder.url}/services/{SECRET}"
    config = write_config(
        tmp_path,
        f"sqlite:///{path}",
        sim_server.base_url,
        closed_port(),
        extra=f'operator_webhook = "{hook}"\nalert_batch = "0s"',
    )
    async with started_daemon(config) as daemon:
        await daemon.store.raise_alert("gave_up", "EJ1: stopped polling", now=utcnow(), subject="EJ1")
        await daemon._alerts()  # the email is queued, the webhook posted
        await daemon._send()  # and SMTP refuses the email: sending pauses
        assert sending_paused(daemon.store) is not None
        await daemon.store.raise_alert("poll_error", "EJ2: polling failed", now=utcnow(), subject="EJ2")
        await daemon._alerts()
        await daemon._send()
        waiting = await daemon.store.outbox(states=[OutboxState.PENDING], rule="operator_alert")
        assert waiting  # the operator's email did not go
        assert await daemon.store.outbox(states=[OutboxState.SENT]) == []
    posted = [[a["kind"] for a in hit.json()["alerts"]] for hit in recorder.received()]
    # The mail server's own failure reaches the operator too: by the one channel still working.
    assert posted == [["gave_up"], ["smtp_unreachable", "poll_error"]]
    assert daemon.activity.webhook_posts["ok"] == 2


async def test_without_an_operator_address_the_webhook_still_gets_the_alert(
    store: Store, recorder: Recorder
) -> None:
    desk = AlertDesk()
    await desk.start(store, T0)
    await store.raise_alert("site_unrecognized", "pages are not recognised", now=T0)
    await tick(desk, store, recorder.url, T0, operator=None)
    assert [hit.json()["alerts"][0]["kind"] for hit in recorder.received()] == ["site_unrecognized"]
    assert await store.outbox() == []  # nowhere to email it


# --- the heartbeat, cycle by cycle ------------------------------------------------------------------


async def test_the_heartbeat_pings_good_cycles_and_fail_on_failing_ones(
    tmp_path: Path,
    sqlite_template: Path,
    sim_server: SimulatorServer,
    simulator: Simulator,
    recorder: Recorder,
) -> None:
    path = tmp_path / "notifier.db"
    shutil.copyfile(sqlite_template, path)
    ping = f"{recorder.url}/ping/{SECRET}"
    config = write_config(
        tmp_path, f"sqlite:///{path}", sim_server.base_url, closed_port(), extra=f'heartbeat_url = "{ping}"'
    )
    async with started_daemon(config) as daemon:
        daemon.heartbeat.every = dt.timedelta(0)  # every cycle may ping: this test reads them one by one

        async def cycle(expected: int) -> list[str]:
            await daemon.store.mark_due(None, now=utcnow())
            await daemon._poll()
            await wait_until(lambda: len(recorder.received()) >= expected, 10, f"ping {expected}")
            return [hit.path for hit in recorder.received()]

        assert await cycle(1) == [f"/ping/{SECRET}"]
        simulator.set_fault(Fault.SERVER_ERROR)
        daemon.breaker.threshold = 1
        assert (await cycle(2))[-1] == f"/ping/{SECRET}/fail"
        simulator.clear_faults()
        await wait_until(lambda: daemon.breaker.allows(utcnow()), 10, "the circuit to let requests through")
        assert (await cycle(3))[-1] == f"/ping/{SECRET}"
        # Throttled: a minute between pings, however many cycles run.
        daemon.heartbeat.every = HEARTBEAT_EVERY
        for _ in range(3):
            await daemon._poll()
        assert daemon.heartbeat._task is not None
        await daemon.heartbeat._task
        assert len(recorder.received()) == 3
    assert "claimed=4" in recorder.received()[0].body.decode()
    assert daemon.activity.heartbeat_pings == {"ok": 2, "fail": 1}


async def test_a_dead_heartbeat_endpoint_never_fails_a_cycle(
    tmp_path: Path, sqlite_template: Path, sim_server: SimulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "notifier.db"
    shutil.copyfile(sqlite_template, path)
    ping = f"http://127.0.0.1:{closed_port()}/ping/{SECRET}"
    config = write_config(
        tmp_path, f"sqlite:///{path}", sim_server.base_url, closed_port(), extra=f'heartbeat_url = "{ping}"'
    )
    async with started_daemon(config) as daemon:
        await daemon._poll()
        assert daemon.heartbeat._task is not None
        await daemon.heartbeat._task
        assert daemon.last_good_cycle is not None
    assert daemon.activity.heartbeat_pings["error"] == 1
    assert daemon.activity.cycles["good"] == 1
    failed = [r for r in caplog.records if getattr(r, "action", "") == "heartbeat_failed"]
    assert len(failed) == 1
    assert "SECRET" not in failed[0].getMessage()


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_the_daemon_pings_its_heartbeat_and_posts_a_site_down_alert_by_webhook(
    tmp_path: Path,
    sqlite_template: Path,
    world: tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]],
    recorder: Recorder,
) -> None:
    # One backend: what the hooks store is tested on both above; this is the daemon end to end.
    shutil.copyfile(sqlite_template, tmp_path / "hooks.db")
    db_url = f"sqlite:///{tmp_path / 'hooks.db'}"
    simulator, jp, smtp, _ = world
    extra = (
        f'operator_webhook = "{recorder.url}/services/{SECRET}"\n'
        f'heartbeat_url = "{recorder.url}/hc/{SECRET}"\n'
        'alert_batch = "1s"'
    )
    japanpost = 'down_alert_after = "2s"\ncircuit_pause = "1s"\ncircuit_pause_max = "2s"'
    _, run = start(tmp_path, db_url, jp, smtp, extra=extra, japanpost=japanpost)
    try:

        def paths() -> list[str]:
            return [hit.path for hit in recorder.received()]

        wait_for(
            lambda: f"/hc/{SECRET}" in paths(), 30, lambda: f"the heartbeat (got {paths()}): {run.output()}"
        )
        simulator.set_fault(Fault.SERVER_ERROR)
        wait_for(
            lambda: f"/services/{SECRET}" in paths(),
            60,
            lambda: f"the webhook (got {paths()}): {run.output()[-3000:]}",
        )
        posts = [hit for hit in recorder.received() if hit.path == f"/services/{SECRET}"]
        assert [a["kind"] for a in posts[0].json()["alerts"]] == ["site_down"]
        assert "site_down" in posts[0].json()["text"]
    finally:
        assert run.stop() == 0, run.output()
    heartbeats = [hit for hit in recorder.received() if hit.path.startswith(f"/hc/{SECRET}")]
    assert heartbeats[0].path == f"/hc/{SECRET}"  # the first cycle was good
    # And then throttled: at most one ping a minute (the test is normally over well within it).
    assert all(b.at - a.at >= 59 for a, b in itertools.pairwise(heartbeats))
    assert "SECRET" not in run.output()
    assert "operator webhook http://127.0.0.1:" in run.output()
