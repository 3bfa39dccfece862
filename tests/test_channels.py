"""Operator channels through Apprise: URLs checked at load, short text per service, and the daemon as a
process sending an alert to a real local json:// endpoint while a refused and a hanging one fail beside it."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notifier.config import parse_settings
from notifier.errors import ConfigError
from notifier.net.channels import TRUNCATED, Channel, fit
from notifier.pipeline.activity import Activity
from notifier.pipeline.channels import Lane, Note, OperatorChannels
from notifier.testing.simulator import Fault, Journey, Simulator, SimulatorServer
from tests import test_daemon
from tests.smtp_server import SmtpServer
from tests.test_daemon import Run, advance_all, config_text, received, wait_for
from tests.test_web_ops import started_daemon, utcnow, write_config
from tests.web_server import Recorder, closed_port, wait_until

world = test_daemon.world
World = tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]
SECRET = "XXXXSECRETXXXX"
WHERE = Path("/etc/notifier/config.toml")
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


# --- configuration ------------------------------------------------------------------------------


def test_apprise_urls_load_and_a_bad_one_is_named_by_file_line_key_and_place_not_text() -> None:
    urls = [f"tgram://123456:{SECRET}/12345", "ntfy://notifier-alerts", f"json://127.0.0.1:9/{SECRET}"]
    text = "[notifications]\noperator_urls = [" + ", ".join(f'"{u}"' for u in urls) + "]\n"
    assert parse_settings(text).notifications.operator_urls == tuple(urls)
    assert parse_settings("").notifications.operator_urls == ()
    for value, why in [
        (
            f'["json://127.0.0.1/ok", "nosuchservice://{SECRET}"]',
            "entry 2 (nosuchservice) is not a URL Apprise",
        ),
        (f'["{SECRET}"]', "entry 1 (no scheme) is not a URL Apprise understands"),
        (f'"json://127.0.0.1/{SECRET}"', "must be a list of Apprise URLs"),
        ('["json://127.0.0.1/a", "json://127.0.0.1/a"]', "lists the same URL twice"),
    ]:
        with pytest.raises(ConfigError) as caught:
            parse_settings(f"[notifications]\n\noperator_urls = {value}\n", WHERE)
        message = str(caught.value)
        assert "notifications.operator_urls" in message
        assert "config.toml:3" in message
        assert why in message
        assert SECRET not in message


def test_text_is_cut_to_each_services_limit_with_a_marker() -> None:
    body = "\n".join(f"• stalled_in_japan EJ{i:09d}JP: no new scan for 9 days" for i in range(400))
    assert fit("short", 100) == "short"
    cut = fit(body, 1000)
    assert len(cut) <= 1000
    assert cut.endswith(TRUNCATED)
    assert cut.removesuffix(TRUNCATED).endswith("days")  # cut between lines, not inside one
    telegram = Channel.of(f"tgram://123456:{SECRET}/12345", 1)
    discord = Channel.of(f"discord://1234/{SECRET}", 2)
    assert telegram.limit < 4096
    assert discord.limit <= 1700
    assert (telegram.name, discord.name) == ("channel 1 (tgram)", "channel 2 (discord)")


def test_a_failure_reason_never_carries_the_url() -> None:
    channel = Channel.of(f"json://127.0.0.1:{closed_port()}/hooks/{SECRET}", 1)
    error = channel.send("title", "body")
    assert error is not None
    assert SECRET not in error


# --- in the daemon's loop --------------------------------------------------------------------


async def test_a_failed_send_is_retried_and_then_counted_once_as_sent(recorder: Recorder) -> None:
    recorder.script = [500]  # the first try is refused, the next accepted
    activity = Activity()
    url = f"json://127.0.0.1:{recorder.server.server_address[1]}/hook/{SECRET}"
    lane = Lane(
        Channel.of(url, 1),
        activity,
        lambda: dt.datetime.now(dt.UTC),
        retry_at=lambda failures, now: now + dt.timedelta(seconds=0.2 * failures),
    )
    try:
        lane.put(Note(title="notifier on test: 1 operator alert", body="• gave_up EJ1", queued_at=T0))
        await wait_until(lambda: not lane.queue, 20, "the retried send")
    finally:
        lane.close()
    assert [hit.status for hit in recorder.received()] == [500, 200]
    assert {hit.json()["title"] for hit in recorder.received()} == {"notifier on test: 1 operator alert"}
    assert activity.channel_sends == {("channel 1 (json)", "failed"): 1, ("channel 1 (json)", "ok"): 1}


def test_a_reload_keeps_the_queue_of_a_channel_it_does_not_change() -> None:
    channels = OperatorChannels(clock=lambda: T0, activity=Activity())
    first, second, third = (f"json://127.0.0.1:9/{name}/{SECRET}" for name in ("a", "b", "c"))
    channels.configure([first, second])
    kept, dropped = channels.lanes
    channels.configure([first, third])
    try:
        assert channels.lanes[0] is kept
        assert channels.lanes[1] is not dropped
        assert channels.lanes[1].channel.url == third
    finally:
        channels.close()
    assert channels.urls == ()


async def test_the_daily_digest_goes_to_the_channels_once_a_day(
    tmp_path: Path, sqlite_template: Path, sim_server: SimulatorServer, recorder: Recorder
) -> None:
    path = tmp_path / "notifier.db"
    shutil.copyfile(sqlite_template, path)
    url = f"json://127.0.0.1:{recorder.server.server_address[1]}/digest/{SECRET}"
    config = write_config(
        tmp_path, f"sqlite:///{path}", sim_server.base_url, closed_port(), extra=f'operator_urls = ["{url}"]'
    )
    async with started_daemon(config) as daemon:
        try:
            await daemon.store.raise_alert("gave_up", "EJ1: stopped polling", now=utcnow(), subject="EJ1")
            await daemon._housekeeping()
            await daemon._housekeeping()  # the same day: the digest email is queued once, and so is this
            await wait_until(lambda: recorder.received(), 20, "the digest")
            await asyncio.sleep(0.5)  # nothing more may arrive
        finally:
            daemon.desk.channels.close()
    (hit,) = recorder.received()
    assert hit.json()["title"].endswith(": daily digest, 1 open alert")
    assert hit.json()["message"] == "• gave_up EJ1: EJ1: stopped polling"


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture
def hanging() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def channel_sends(port: int) -> dict[tuple[str, str], float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    pattern = r'notifier_operator_channel_sends_total\{channel="([^"]+)",result="(\w+)"\} ([0-9.]+)'
    return {(m[1], m[2]): float(m[3]) for m in re.finditer(pattern, text)}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_daemon_sends_an_alert_to_json_while_dead_channels_delay_nothing(
    tmp_path: Path, world: World, recorder: Recorder, hanging: int
) -> None:
    simulator, jp, smtp, journeys = world
    port = free_port()
    urls = [
        f"json://127.0.0.1:{recorder.server.server_address[1]}/hook/{SECRET}",
        f"json://127.0.0.1:{closed_port()}/refused/{SECRET}",
        f"json://127.0.0.1:{hanging}/hangs/{SECRET}",
    ]
    extra = 'alert_batch = "1s"\noperator_urls = [' + ", ".join(f'"{u}"' for u in urls) + "]\n"
    japanpost = 'down_alert_after = "2s"\ncircuit_pause = "1s"\ncircuit_pause_max = "2s"'
    secret = tmp_path / "http-secret"
    secret.write_text("a test secret of more than sixteen characters\n", encoding="utf-8")
    head, watches = config_text(
        f"sqlite:///{tmp_path / 'channels.db'}", jp.base_url, smtp.port, extra, japanpost=japanpost
    ).split("[[watch]]", 1)
    http = f'\n[http]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\nsecret_file = "{secret}"\n'
    config = tmp_path / "notifier.toml"
    config.write_text(head + http + "[[watch]]" + watches, encoding="utf-8")
    upgrade = subprocess.run(
        [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    simulator.set_fault(Fault.SERVER_ERROR)  # Japan Post down from the start: a site_down alert
    run = Run(config)
    try:

        def posted() -> list[str]:
            return [hit.json()["title"] + "\n" + hit.json()["message"] for hit in recorder.received()]

        wait_for(lambda: "notifier running" in run.output(), 30, lambda: f"READY: {run.output()[-2000:]}")
        wait_for(lambda: "action=site_down" in run.output(), 30, lambda: f"the alert: {run.output()[-3000:]}")
        raised = time.monotonic()
        wait_for(
            lambda: any("site_down" in p for p in posted()),
            30,
            lambda: f"the alert on the json:// channel (got {posted()}): {run.output()[-3000:]}",
        )
        # Japan Post answers again: the customers' mail goes at once, whatever the dead channels do.
        simulator.clear_faults()
        advance_all(simulator, journeys, 0.8)  # and the parcels move: mail is due
        cleared = time.monotonic()
        wait_for(lambda: bool(received(smtp)), 30, lambda: f"customer mail: {run.output()[-3000:]}")
        mail_after = time.monotonic() - cleared
        wait_for(
            lambda: any("site_recovered" in p for p in posted()),
            30,
            lambda: f"the recovery notice (got {posted()}): {run.output()[-3000:]}",
        )
        # The refused channel is tried again after its back-off (10 s), the hanging one too.
        wait_for(
            lambda: (
                channel_sends(port).get(("channel 2 (json)", "failed"), 0) >= 2
                and channel_sends(port).get(("channel 3 (json)", "failed"), 0) >= 1
            ),
            60,
            lambda: f"retries counted in /metrics (got {channel_sends(port)}): {run.output()[-3000:]}",
        )
        sends = channel_sends(port)
    finally:
        assert run.stop() == 0, run.output()
    alert_after = recorder.received()[0].at - raised
    print(f"alert on json:// {alert_after:.2f} s after it was raised; customer mail {mail_after:.2f} s")
    assert alert_after < 10, f"the alert took {alert_after:.1f} s to reach the json:// channel"
    assert mail_after < 10, f"customer mail took {mail_after:.1f} s after Japan Post came back"
    assert sends[("channel 1 (json)", "ok")] >= 2
    assert sends[("channel 1 (json)", "failed")] == 0
    first = posted()[0]  # the alert came first
    assert "1 operator alert" in first
    assert "site_down" in first
    output = run.output()
    assert SECRET not in output
    assert "operator channel 2 (json) failed" in output
