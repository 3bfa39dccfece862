"""End to end: the daemon's watch management under reloads and the `poll` and `watch` commands,
with `notifier run` as a real process, the simulator's request log, a real SMTP server and a
real database."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.testing.simulator import Fault, Journey, Simulator, SimulatorServer, builtin_journeys
from tests.smtp_server import SmtpServer
from tests.test_daemon import EMS, NEVER, RETURNED, YUPACK, Run, config_text, wait_for

World = tuple[Simulator, SimulatorServer, SmtpServer, list[Journey]]


@pytest.fixture
def world() -> Iterator[World]:
    journeys = builtin_journeys()
    simulator = Simulator(journeys)
    with SimulatorServer(simulator) as jp, SmtpServer() as smtp:
        yield simulator, jp, smtp, journeys


def notifier(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")},
    )


def write_config(
    path: Path,
    db_url: str,
    world: World,
    *,
    interval: str = "0.3s",
    request_interval: str = "0",
    watches: bool = True,
) -> str:
    _, jp, smtp, _ = world
    text = config_text(db_url, jp.base_url, smtp.port)
    text = text.replace('fixed_interval = "0.3s"', f'fixed_interval = "{interval}"')
    text = text.replace("request_interval = 0", f'request_interval = "{request_interval}"')
    if not watches:
        text = text.split("[[watch]]")[0]
    path.write_text(text, encoding="utf-8")
    return text


def start(config: Path) -> Run:
    upgrade = notifier(config, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    run = Run(config)
    wait_for(lambda: "notifier running" in run.output(), 30, lambda: f"READY\n{run.output()}")
    return run


def requests_for(simulator: Simulator, number: str) -> int:
    return sum(1 for r in simulator.requests if number in r.numbers)


def status(config: Path) -> dict[str, dict[str, object]]:
    result = notifier(config, "status", "--json", "--all")
    assert result.returncode == 0, result.stderr
    return {row["number"]: row for row in json.loads(result.stdout)}


def due_in(row: dict[str, object]) -> float:
    due = row["next_poll_at"]
    assert isinstance(due, str), row
    return (dt.datetime.fromisoformat(due) - dt.datetime.now(dt.UTC)).total_seconds()


@pytest.mark.timeout(300)
def test_after_notifier_poll_the_daemon_polls_the_number_on_schedule(
    db_url: str, tmp_path: Path, world: World
) -> None:
    simulator, *_ = world
    simulator.advance(steps=2)
    config = tmp_path / "notifier.toml"
    write_config(config, db_url, world, interval="1s", watches=False)
    run = start(config)
    try:
        polled = notifier(config, "poll", EMS)
        assert polled.returncode == 0, polled.stderr
        assert "new event(s)" in polled.stdout
        after_cli = requests_for(simulator, EMS)
        assert after_cli >= 1
        # The poll left a due time by the policy (1 s here), not none at all.
        assert due_in(status(config)[EMS]) < 5
        wait_for(
            lambda: requests_for(simulator, EMS) >= after_cli + 2,
            20,
            lambda: f"the daemon polling {EMS} again\n{run.output()}",
        )
        # A CLI watch: a reload with a watchlist-less config does not stop it.
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in run.output(), 20, "the reload")
        assert status(config)[EMS]["active"] is True
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_notifier_poll_does_not_fight_the_daemon_over_a_number_it_is_polling(
    tmp_path: Path, world: World
) -> None:
    simulator, *_ = world
    simulator.advance(steps=2)
    config = tmp_path / "notifier.toml"
    write_config(config, f"sqlite:///{tmp_path / 'lease.db'}", world, interval="1h")
    run = start(config)
    try:
        wait_for(lambda: all(requests_for(simulator, n) for n in (EMS, YUPACK)), 20, "first polls")
        time.sleep(1)
        # The daemon's next request for EMS takes 8 s: it holds the lease meanwhile.
        simulator.inject(Fault.SLOW, times=1, delay=8)
        before = len(simulator.requests)
        assert notifier(config, "poll", "--now", EMS).returncode == 0
        wait_for(lambda: len(simulator.requests) > before, 10, "the daemon's slow request")
        during = len(simulator.requests)
        polled = notifier(config, "poll", EMS)
        assert polled.returncode == 0, polled.stderr
        assert "the running daemon" in polled.stdout
        assert "polling it right now" in polled.stdout
        assert len(simulator.requests) == during  # the CLI fetched nothing
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_cli_watches_survive_reloads_and_every_unwatch_is_named(tmp_path: Path, world: World) -> None:
    config = tmp_path / "notifier.toml"
    text = write_config(config, f"sqlite:///{tmp_path / 'watch.db'}", world, interval="1h")
    extra = "EJ123456785JP"
    run = start(config)
    try:
        added = notifier(config, "watch", extra, "--subscriber", "walkin@example.com")
        assert added.returncode == 0, added.stderr
        # A number of the configuration's watchlist is edited there, not from the CLI.
        refused = notifier(config, "watch", EMS, "--subscriber", "other@example.com")
        assert refused.returncode == 2
        assert f"{EMS} is in the configuration's watchlist ({config}:" in refused.stderr
        kept = notifier(config, "unwatch", EMS)
        assert kept.returncode == 2
        assert "remove it there" in kept.stderr
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: run.output().count("configuration reloaded") == 1, 20, "the first reload")
        assert "no longer watched" not in run.output()
        # Drop one number from the configuration: it alone stops, and the log says which and why.
        block = (
            f'[[watch]]\nnumber = "{RETURNED}"\nlabel = "Order 1003"\nsubscribers = ["sender@example.com"]\n'
        )
        assert block in text
        config.write_text(text.replace(block, ""), encoding="utf-8")
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: run.output().count("configuration reloaded") == 2, 20, "the second reload")
        log = run.output()
        assert f"no longer watched: {RETURNED} (removed from the configuration's watchlist" in log
        assert log.count("no longer watched") == 1
        rows = status(config)
        assert rows[extra]["active"] is True
        assert rows[RETURNED]["active"] is False
        assert rows[RETURNED]["next_poll_at"] is None  # unwatched: never polled, whatever its row holds
        assert all(rows[n]["active"] for n in (EMS, YUPACK, NEVER))
    finally:
        assert run.stop() == 0, run.output()
    # And at start-up, as at reload.
    run = Run(config)
    try:
        wait_for(lambda: "notifier running" in run.output(), 30, "READY after restart")
        assert "no longer watched" not in run.output()
        assert status(config)[extra]["active"] is True
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_a_reload_with_new_intervals_moves_due_times(db_url: str, tmp_path: Path, world: World) -> None:
    simulator, *_ = world
    simulator.advance(steps=2)
    config = tmp_path / "notifier.toml"
    text = write_config(config, db_url, world, interval="1h")
    run = start(config)
    try:
        wait_for(lambda: all(requests_for(simulator, n) for n in (EMS, YUPACK, RETURNED)), 20, "first polls")
        time.sleep(1)
        assert due_in(status(config)[EMS]) > 45 * 60
        polls = requests_for(simulator, EMS)
        config.write_text(text.replace('fixed_interval = "1h"', 'fixed_interval = "2s"'), encoding="utf-8")
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "rescheduled" in run.output(), 20, lambda: f"the rescheduling\n{run.output()}")
        wait_for(
            lambda: requests_for(simulator, EMS) >= polls + 2,
            20,
            lambda: f"polls at the new interval\n{run.output()}",
        )
        # And back to a long interval: due times move out again, without waiting for a poll.
        config.write_text(text.replace('fixed_interval = "1h"', 'fixed_interval = "30m"'), encoding="utf-8")
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: run.output().count("rescheduled") >= 2, 20, "the second rescheduling")
        time.sleep(1)
        assert 20 * 60 < due_in(status(config)[EMS]) < 40 * 60
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_poll_now_makes_the_running_daemon_poll_at_its_next_tick(
    db_url: str, tmp_path: Path, world: World
) -> None:
    simulator, *_ = world
    simulator.advance(steps=2)
    config = tmp_path / "notifier.toml"
    write_config(config, db_url, world, interval="1h")
    run = start(config)
    try:
        wait_for(lambda: all(requests_for(simulator, n) for n in (EMS, YUPACK, RETURNED)), 20, "first polls")
        time.sleep(1)
        # Stopped, the daemon cannot poll: whatever is fetched now would be the CLI's.
        run.proc.send_signal(signal.SIGSTOP)
        try:
            before = len(simulator.requests)
            marked = notifier(config, "poll", "--now", EMS)
            assert marked.returncode == 0, marked.stderr
            assert "1 number(s) due now" in marked.stdout
            time.sleep(1)
            assert len(simulator.requests) == before
        finally:
            run.proc.send_signal(signal.SIGCONT)
        polls = requests_for(simulator, EMS)
        started = time.monotonic()
        wait_for(lambda: requests_for(simulator, EMS) > polls, 10, "the daemon polling it")
        # Within a tick or two (0.3 s each), with room for a loaded 2-core machine; without
        # --now the next poll would be an hour away.
        assert time.monotonic() - started < 4
        counts = {n: requests_for(simulator, n) for n in (EMS, YUPACK, RETURNED, NEVER)}
        everything = notifier(config, "poll", "--now", "--all")
        assert "4 number(s) due now" in everything.stdout
        wait_for(
            lambda: all(requests_for(simulator, n) > c for n, c in counts.items()),
            10,
            lambda: f"every number polled again (before: {counts})\n{run.output()}",
        )
        unknown = notifier(config, "poll", "--now", "EJ123456785JP")
        assert unknown.returncode == 1
        assert "EJ123456785JP is not watched" in unknown.stderr
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_the_reloader_survives_unexpected_errors_and_the_next_reload_works(
    tmp_path: Path, world: World
) -> None:
    config = tmp_path / "notifier.toml"
    database = tmp_path / "reload.db"
    text = write_config(config, f"sqlite:///{database}", world, interval="1h")
    run = start(config)
    try:
        # 1. A byte that is not UTF-8, in a comment.
        config.write_bytes(text.encode() + b"# caf\xe9\n")
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: run.output().count("reload refused") == 1, 20, lambda: f"refusal\n{run.output()}")
        # 2. A database error while syncing the watches: another process holds the write lock
        #    past the busy timeout.
        config.write_text(text.replace('label = "Order 1001"', 'label = "Order 1001b"'), encoding="utf-8")
        locker = sqlite3.connect(database, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            run.proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda: run.output().count("reload refused") == 2,
                30,
                lambda: f"the refusal of the locked sync\n{run.output()}",
            )
        finally:
            locker.rollback()
            locker.close()
        refusals = [line for line in run.output().splitlines() if "reload refused" in line]
        assert "database is locked" in refusals[1]
        assert run.proc.poll() is None
        assert status(config)[EMS]["label"] == "Order 1001"  # the old configuration stands
        # 3. The next reload still works and takes effect.
        run.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "configuration reloaded" in run.output(), 30, lambda: f"the good reload\n{run.output()}"
        )
        assert status(config)[EMS]["label"] == "Order 1001b"
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_a_reload_during_a_cycle_does_not_close_the_client_under_it(tmp_path: Path, world: World) -> None:
    simulator, *_ = world
    config = tmp_path / "notifier.toml"
    # Four numbers never seen: four detail requests, one every 2 s: a cycle of about 6 s.
    write_config(config, f"sqlite:///{tmp_path / 'cycle.db'}", world, interval="1h", request_interval="2s")
    run = start(config)
    try:
        wait_for(lambda: len(simulator.requests) >= 1, 20, "the cycle's first request")
        run.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in run.output(), 20, "the reload")
        wait_for(
            lambda: all(requests_for(simulator, n) for n in (EMS, YUPACK, RETURNED, NEVER)),
            20,
            lambda: f"the whole first cycle\n{run.output()}",
        )
        time.sleep(1)
        log = run.output()
        assert "client has been closed" not in log
        assert "job failed" not in log
        rows = status(config)
        assert all(rows[n]["last_polled_at"] for n in (EMS, YUPACK, RETURNED, NEVER))
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(180)
def test_a_watch_file_dropped_into_the_folder_is_picked_up_without_a_signal(
    tmp_path: Path, world: World
) -> None:
    simulator, _, smtp, _ = world
    config = tmp_path / "notifier.toml"
    text = write_config(config, f"sqlite:///{tmp_path / 'drop.db'}", world, watches=False)
    config.write_text(
        text.replace("[polling]\n", '[polling]\nwatch_files = ["watch.d/*.toml"]\n', 1), encoding="utf-8"
    )
    (tmp_path / "watch.d").mkdir()
    (tmp_path / "watch.d" / "first.toml").write_text(
        f'[[watch]]\nnumber = "{NEVER}"\nsubscribers = ["waiting@example.com"]\n', encoding="utf-8"
    )
    run = start(config)
    try:
        simulator.advance(steps=2)
        # An operator (or `notifier import`) adds a file; nobody sends SIGHUP.
        (tmp_path / "watch.d" / "orders.toml").write_text(
            f'[[watch]]\nnumber = "{EMS}"\nsubscribers = ["customer@example.com"]\n', encoding="utf-8"
        )
        wait_for(
            lambda: requests_for(simulator, EMS) >= 1,
            30,
            lambda: f"a poll of the new file's number\n{run.output()}",
        )
        wait_for(lambda: any(m.rcpt_tos == ("customer@example.com",) for m in smtp.messages), 30, "its email")
        # A broken new file is refused once, not every two seconds.
        (tmp_path / "watch.d" / "broken.toml").write_text("[[watch]]\nnumber = 12\n", encoding="utf-8")
        wait_for(lambda: "reload refused" in run.output(), 30, "the refused reload")
        time.sleep(5)
        assert run.output().count("reload refused") == 1, run.output()
        # Removing a file unwatches its numbers, again without a signal.
        (tmp_path / "watch.d" / "broken.toml").unlink()
        (tmp_path / "watch.d" / "orders.toml").unlink()
        wait_for(
            lambda: f"no longer watched: {EMS}" in run.output(), 30, lambda: f"the unwatch\n{run.output()}"
        )
    finally:
        assert run.stop() == 0, run.output()


@pytest.mark.timeout(300)
def test_a_quiet_hours_change_at_reload_moves_the_message_it_held(
    db_url: str, tmp_path: Path, world: World
) -> None:
    simulator, _, smtp, _ = world
    config = tmp_path / "notifier.toml"
    text = write_config(config, db_url, world)
    # Quiet now in Tokyo (hanako's zone) for hours to come.
    tokyo = dt.datetime.now(dt.UTC) + dt.timedelta(hours=9)
    window = f"{tokyo - dt.timedelta(hours=1):%H:%M}-{tokyo + dt.timedelta(hours=3):%H:%M}"
    config.write_text(
        text.replace(
            "[notifications]\n", f'[notifications]\nquiet_hours = "{window}"\ndefault_time_zone = "UTC"\n'
        ),
        encoding="utf-8",
    )
    run = start(config)
    try:
        simulator.reveal(YUPACK, 4)  # out for delivery

        def waiting() -> list[dict[str, object]]:
            listed = notifier(config, "outbox", "--json")
            assert listed.returncode == 0, listed.stderr
            return [m for m in json.loads(listed.stdout) if m["recipient"] == "hanako@example.jp"]

        wait_for(
            # Deferred by the outbox (not merely due in quiet hours): what a reload must move.
            lambda: any(m["waits_for"] == m["last_error"] == "quiet hours" for m in waiting()),
            60,
            lambda: f"a message held by quiet hours: {waiting()}\n{run.output()}",
        )
        assert not any("hanako@example.jp" in m.rcpt_tos for m in smtp.messages)
        config.write_text(text, encoding="utf-8")  # no quiet hours any more
        run.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "quiet_hours changed: 1 waiting message(s) rescheduled" in run.output(), 30, run.output
        )
        wait_for(
            lambda: any("hanako@example.jp" in m.rcpt_tos for m in smtp.messages), 30, "the held message sent"
        )
    finally:
        assert run.stop() == 0, run.output()
