"""What the CLI prints besides tables: log lines with their fields, and help without noise."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from notifier.daemon.logformat import FORMAT, FieldsFormatter
from notifier.testing.simulator import Fault, Simulator, SimulatorServer, builtin_journeys


def _record(msg: str, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("notifier.outbox")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, msg, (), None, extra=extra)


def test_log_line_carries_number_recipient_and_action() -> None:
    formatter = FieldsFormatter(FORMAT)
    line = formatter.format(
        _record("sent", action="sent", to="hanako@example.jp", number="EJ123456785JP", message_id=42)
    )
    assert line == (
        "INFO notifier.outbox: sent action=sent to=hanako@example.jp number=EJ123456785JP message_id=42"
    )
    quoted = formatter.format(_record("poll failed", error='503 "busy"\nretry later'))
    assert quoted == 'INFO notifier.outbox: poll failed error="503 \\"busy\\"\\nretry later"'
    assert formatter.format(_record("plain")) == "INFO notifier.outbox: plain"
    # Fields the message already states are not repeated; the others still follow.
    stated = formatter.format(
        _record("sent to=a@example.com outbox_id=2", to="a@example.com", outbox_id=2, action="sent")
    )
    assert stated == "INFO notifier.outbox: sent to=a@example.com outbox_id=2 action=sent"


def test_cli_logs_carry_the_shipment_number(tmp_path: Path) -> None:
    journey = builtin_journeys()[0]
    simulator = Simulator([journey])
    simulator.set_fault(Fault.SERVER_ERROR)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    url = f"sqlite:///{tmp_path / 'n.db'}"
    subprocess.run(
        [sys.executable, "-m", "notifier", "db", "upgrade", "--database-url", url], env=env, check=True
    )
    poll = [sys.executable, "-m", "notifier", "poll", journey.number, "--database-url", url]
    with SimulatorServer(simulator) as server:
        config = tmp_path / "c.toml"
        config.write_text(f'[japanpost]\nbase_url = "{server.base_url}"\nrequest_interval = 0\n')
        result = subprocess.run(
            [*poll, "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if "poll failed" in line]
    assert failed, result.stderr
    assert f"action=poll_failed number={journey.number}" in failed[0]


def test_run_help_names_each_default_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "run", "--help"], capture_output=True, text=True, check=True
    )
    text = " ".join(result.stdout.split())  # argparse wraps to the terminal
    assert "(default: None)" not in text
    assert text.count("(default: $NOTIFIER_CONFIG)") == 1
    assert "(default: $NOTIFIER_DATABASE_URL)" in text
    check = subprocess.run(
        [sys.executable, "-m", "notifier", "check", "--help"], capture_output=True, text=True, check=True
    )
    assert "(default: False)" not in check.stdout
    assert "(default: en)" in check.stdout


def test_a_reader_that_goes_away_ends_a_command_quietly(tmp_path: Path) -> None:
    """`notifier status | head -1`: the command ends as Unix tools do, by SIGPIPE, and never
    reports the closed pipe as an I/O error of the database."""
    import asyncio
    import datetime as dt

    from notifier.core.numbers import parse_number, s10_check_digit
    from notifier.store import Store
    from notifier.store.database import make_engine, upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'n.db'}"

    async def fill() -> None:
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        store = await Store.open(url)
        try:
            numbers = [parse_number(f"EJ{n:08d}{s10_check_digit(f'{n:08d}')}JP") for n in range(2000)]
            await store.watch_many(numbers, now=dt.datetime.now(dt.UTC), label="x" * 60)
        finally:
            await store.close()

    asyncio.run(fill())
    command = [sys.executable, "-m", "notifier", "status", "--database-url", url]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline()  # the header: the table is being written
        process.stdout.close()  # the reader goes away with ~200 KB still to come
        errors = process.stderr.read().decode()
        code = process.wait(timeout=60)
    assert "I/O error" not in errors
    assert "Traceback" not in errors
    assert code == -13, (code, errors)  # SIGPIPE, as `head` expects of a writer


def test_main_called_in_process_leaves_sigpipe_alone(tmp_path: Path) -> None:
    """Only the program restores SIGPIPE's default: a program (or a test run) calling `main`
    would otherwise die on its own closed pipes."""
    import signal

    from notifier.cli import main

    before = signal.getsignal(signal.SIGPIPE)
    assert before != signal.SIG_DFL  # Python ignores it; the test means nothing otherwise
    main(["status", "--database-url", f"sqlite:///{tmp_path / 'none.db'}"])
    assert signal.getsignal(signal.SIGPIPE) == before
