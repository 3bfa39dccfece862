"""The setup steps as a new operator meets them: the Debian package to install before the
README's quick start, and the systemd how-to's SMTP password line, run without a terminal as a
provisioning script runs it."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SYSTEMD_HOWTO = ROOT / "docs" / "how-to" / "systemd.md"
QUICK_START = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/notifier demo",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest",
)


def test_debian_packages_come_before_the_quick_start() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    assert [block.strip() for block in blocks[:2]] == list(QUICK_START)  # tests and CI use them
    before = text[: text.index("```sh")]
    assert "apt-get install python3-venv" in before


def password_lines(target: Path) -> str:
    """The systemd how-to's lines that write the SMTP password file, aimed at `target`."""
    text = SYSTEMD_HOWTO.read_text(encoding="utf-8")
    block = re.findall(r"```sh\n(.*?)```", text, re.S)[0]
    lines = [
        line
        for line in block.splitlines()
        if "/etc/notifier/smtp-password" in line and "LoadCredential" not in line
    ]
    assert len(lines) == 2, lines  # the one that writes it, the one that checks it
    return "\n".join(lines).replace("/etc/notifier/smtp-password", str(target)) + "\n"


@pytest.mark.parametrize("answer", ["s3cret pass\n", "s3cret pass"])
def test_password_line_works_without_a_terminal(tmp_path: Path, answer: str) -> None:
    target = tmp_path / "smtp-password"
    result = subprocess.run(
        ["bash", "-c", password_lines(target)], input=answer, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "no password written" not in result.stdout
    assert target.read_text(encoding="utf-8") == "s3cret pass\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_no_answer_leaves_no_file_and_says_so(tmp_path: Path) -> None:
    target = tmp_path / "smtp-password"
    result = subprocess.run(
        ["bash", "-c", password_lines(target)], input="", capture_output=True, text=True, check=False
    )
    assert "no password written: run the line above again" in result.stdout
    assert not target.exists()
