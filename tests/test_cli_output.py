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
