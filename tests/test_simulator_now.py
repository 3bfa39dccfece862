"""Trying notifier against `notifier simulator` sends mail: with --now its journeys end this week,
so they are news; without it the poll says why nothing went and how to start over.

The simulator and the CLI run as subprocesses, as a user following the README runs them."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from notifier.testing.simulator import RECENT_DAYS_AGO, builtin_journeys, recent_journeys
from tests.test_web_daemon import free_port

BIN = Path(sys.executable).parent / "notifier"
EMS = "EJ202603021JP"


@contextmanager
def simulator(*options: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(BIN), "simulator", "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                httpx.get(base_url, timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


def trial(tmp_path: Path, base_url: str) -> Path:
    """The README's kind of trial config: no max_event_age, .eml files instead of SMTP."""
    config = tmp_path / "try.toml"
    config.write_text(
        f"""[database]
url = "sqlite:///try.db"
[japanpost]
base_url = "{base_url}"
request_interval = 0
[notifications]
shop_name = "Sakura Stationery"
outbox_dir = "outbox"
[[watch]]
number = "{EMS}"
subscribers = ["emma@example.com"]
locale = "en"
""",
        encoding="utf-8",
    )
    return config


def notifier(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return subprocess.run([str(BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def run_until(tmp_path: Path, done: Callable[[str], bool]) -> str:
    """`notifier run --config try.toml` until `done(its log)`, then SIGTERM; returns the log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    log = tmp_path / "run.log"
    with log.open("w") as sink:
        daemon = subprocess.Popen(
            [str(BIN), "run", "--config", "try.toml"], cwd=tmp_path, env=env, stdout=sink, stderr=sink
        )
        try:
            deadline = time.monotonic() + 60
            while not done(log.read_text()):
                assert daemon.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    return log.read_text()


def test_journeys_dated_now_are_news_and_mailed(tmp_path: Path) -> None:
    with simulator("--now") as base_url:
        trial(tmp_path, base_url)
        assert notifier("db", "upgrade", "--config", "try.toml", cwd=tmp_path).returncode == 0
        run_until(tmp_path, lambda _: any((tmp_path / "outbox").glob("*.eml")))
    mails = list((tmp_path / "outbox").glob("*.eml"))
    assert len(mails) == 1
    assert "emma@example.com" in mails[0].read_text(encoding="utf-8")


def test_old_journeys_say_how_to_start_over(tmp_path: Path) -> None:
    with simulator() as base_url:
        trial(tmp_path, base_url)
        assert notifier("db", "upgrade", "--config", "try.toml", cwd=tmp_path).returncode == 0
        log = run_until(tmp_path, lambda text: f"poll number={EMS} layout" in text)
    assert "not announced: older than max_event_age" in log
    assert "`notifier db reset --yes --discard-data --config try.toml`" in log
    assert "`notifier simulator --now`" in log
    assert not list((tmp_path / "outbox").glob("*.eml"))


def test_recent_journeys_keep_their_spacing_and_end_in_the_past() -> None:
    today = dt.date(2026, 12, 7)
    scripted = builtin_journeys()
    for before, after in zip(scripted, recent_journeys(scripted, today), strict=True):
        if not before.scans:
            assert after.scans == []
            continue
        assert after.scans[-1].date == today - dt.timedelta(days=RECENT_DAYS_AGO)
        shift = after.scans[0].date - before.scans[0].date
        assert [s.date - shift for s in after.scans] == [s.date for s in before.scans]
        assert [s.clock for s in after.scans] == [s.clock for s in before.scans]
        assert [s.status_en for s in after.scans] == [s.status_en for s in before.scans]
