"""The configuration reference's key tables are generated from the declaration and kept current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from notifier.config.keys import DECLARED, KEYS
from notifier.config.reference import BEGIN, END, with_key_tables

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "configuration.md"


def test_the_committed_reference_page_lists_the_declared_keys() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert with_key_tables(page) == page, "run: python -m notifier.config.reference"
    for key in KEYS:
        assert f"| `{key.name}` |" in page


def test_the_generator_rewrites_a_stale_page_and_keeps_its_prose(tmp_path: Path) -> None:
    page = PAGE.read_text(encoding="utf-8")
    stale = page[: page.index(BEGIN) + len(BEGIN)] + "\n| `gone` | old |\n" + page[page.index(END) :]
    copy = tmp_path / "configuration.md"
    copy.write_text(stale, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "notifier.config.reference", str(copy)], check=True, cwd=ROOT)
    assert copy.read_text(encoding="utf-8") == page
    assert "## Rules in the config" in page
    assert "`gone`" not in page


def test_the_keys_the_walker_accepts_are_the_declared_ones() -> None:
    declared = {(key.section, key.name) for key in KEYS}
    accepted = {(section, name) for section, names in DECLARED.names.items() for name in names}
    assert declared == accepted
    assert len(declared) == len(KEYS), "a key declared twice"
