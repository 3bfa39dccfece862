"""`notifier demo` end to end, as a newcomer runs it: a subprocess, offline, that stops by itself."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from notifier.config import load_settings
from notifier.testing.simulator import builtin_journeys

EMS, YUPACK, RETURNED, NEVER = (j.number for j in builtin_journeys())

# `demo` is not wired into notifier.cli yet, so the test calls the module's own entry point.
DEMO = "import sys; from notifier.cli.demo import main; sys.exit(main(sys.argv[1:]))"
HEADER = re.compile(r"^✉ #\d+ .* To: (?P<to>\S+)  stage: (?P<stage>\S+)  \[(?P<number>[^\]]+)\]$")
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def run_demo(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    # TMPDIR puts the demo's temporary directory where the test can see whether it is left behind;
    # NOTIFIER_* from the caller's shell must not reach it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env |= {"TMPDIR": str(tmp_path), "PYTHONUTF8": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", DEMO, "--step-seconds", "0.3", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=90,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    return result, time.monotonic() - started


def emails(stdout: str) -> list[tuple[str, str, str, str]]:
    """(to, stage, number, subject) of every email the demo printed, in order."""
    lines = stdout.splitlines()
    out = []
    for index, line in enumerate(lines):
        if m := HEADER.match(line):
            subject = lines[index + 1].strip().removeprefix("Subject: ")
            out.append((m["to"], m["stage"], m["number"], subject))
    return out


def working_directory(stdout: str) -> Path:
    m = re.search(r"^Working directory: (\S+)", stdout, re.MULTILINE)
    assert m, stdout
    return Path(m[1])


@pytest.mark.timeout(120)
def test_demo_tells_every_customer_and_cleans_up(tmp_path: Path) -> None:
    result, elapsed = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 90
    sent = emails(result.stdout)
    by_number: dict[str, list[str]] = {}
    for _, stage, number, _ in sent:
        by_number.setdefault(number, []).append(stage)
    assert by_number[EMS][-1] == "delivered"
    assert by_number[YUPACK][-1] == "delivered"
    assert by_number[RETURNED][-1] == "returned"
    assert NEVER not in by_number
    assert not any(to == "sam@example.com" for to, _, _, _ in sent)
    # Exactly one message per stage entered: the same stage twice in a row would be a duplicate.
    for stages in by_number.values():
        assert all(a != b for a, b in itertools.pairwise(stages)), stages
    # The Yu-Pack's customer reads Japanese, the others English.
    for to, _, number, subject in sent:
        assert bool(JAPANESE.search(subject)) == (number == YUPACK), (to, subject)
    assert "お荷物のお届けが完了しました" in result.stdout
    assert "Your parcel has been delivered" in result.stdout
    assert re.search(rf"^Summary: {len(sent)} emails in [\d.]+ s$", result.stdout, re.MULTILINE)
    assert re.search(r"^  hanako@example\.jp\s+4 emails", result.stdout, re.MULTILINE)
    assert "nothing: Japan Post never found the parcel" in result.stdout
    assert "notifier db upgrade --config notifier.toml" in result.stdout
    assert "notifier run --config notifier.toml" in result.stdout
    assert "Generated config:" in result.stdout
    # Quiet by default: the daemon's INFO log and the scheduler's warnings stay out of the show.
    assert "INFO" not in result.stderr
    assert "apscheduler" not in result.stderr
    assert not working_directory(result.stdout).exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(120)
def test_keep_leaves_a_config_to_copy_and_the_emails(tmp_path: Path) -> None:
    result, _ = run_demo(tmp_path, "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    workdir = working_directory(result.stdout)
    assert f"Kept {workdir}" in result.stdout
    assert workdir.parent == tmp_path
    eml = sorted((workdir / "outbox").glob("*.eml"))
    assert len(eml) == len(emails(result.stdout)) > 0
    settings = load_settings(str(workdir / "notifier.toml"))
    assert [w.number for w in settings.watches] == [EMS, YUPACK, RETURNED, NEVER]
    assert {w.locale for w in settings.watches if w.number == YUPACK} == {"ja"}
    assert settings.smtp is None
    assert settings.notifications.outbox_dir == workdir / "outbox"
    assert settings.database.url == f"sqlite:///{workdir / 'notifier.db'}"


def test_summary_and_intro_columns_line_up_with_japanese_labels() -> None:
    from notifier.cli.columns import width
    from notifier.cli.demo import intro_lines, summary_lines

    intro = intro_lines(
        [
            ["314159265350", "Yu-Pack", "hanako@example.jp (ja)", "注文 1002 山田様", "[4 scans]"],
            ["EJ202603021JP", "EMS", "emma@example.com (en)", "Order 1001", "[9 scans]"],
        ]
    )
    assert len({width(line[: line.index("[")]) for line in intro}) == 1
    summary = summary_lines(
        [
            ["hanako@example.jp", "3", "314159265350", "注文 1002 山田様"],
            ["ops@example.com", "12", "(operator digest)", ""],
        ]
    )
    assert len({width(line[: line.index(" emails")]) for line in summary}) == 1
    assert summary[0].endswith("注文 1002 山田様")
