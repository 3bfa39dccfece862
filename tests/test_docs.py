"""The short README and the docs site: quick start kept, every page in the nav, links that resolve, a strict build."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
QUICK_START = (
    "```sh\npython3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/notifier demo\n```",
    "```sh\npython3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest\n```",
)
# [text](target): the target up to a closing parenthesis, a space or a title.
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """The relative link targets of a Markdown file, outside fenced code."""
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    targets = [match.group(1) for match in LINK.finditer(text)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_readme_is_short_and_keeps_both_quick_start_commands() -> None:
    text = README.read_text(encoding="utf-8")
    for command in QUICK_START:
        assert command in text
    assert len(README.read_bytes()) <= 12 * 1024


def test_every_docs_page_is_in_the_nav() -> None:
    nav = MKDOCS_YML.read_text(encoding="utf-8").split("\nnav:\n", 1)[1]
    listed = set(re.findall(r"([\w./-]+\.md)\s*$", nav, re.M))
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert pages - listed == set(), "pages missing from mkdocs.yml's nav"
    assert listed - pages == set(), "nav entries with no page"


def test_mkdocs_config_is_strict_plugin_free_and_offline() -> None:
    config = MKDOCS_YML.read_text(encoding="utf-8")
    assert re.search(r"^strict: true$", config, re.M)
    assert re.search(r"^theme:\n  name: material$", config, re.M)
    assert re.search(r"^  font: false$", config, re.M)  # no Google Fonts: reads offline
    assert "plugins:" not in config


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    broken = [t for t in relative_links(path) if not (path.parent / t.split("#", 1)[0]).exists()]
    assert broken == [], f"{path.relative_to(ROOT)}: links to nothing"


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]'); CI installs it")
    # Without -q: with it MkDocs 1.6 drops the warnings that strict mode counts.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "site" / "how-to" / "systemd" / "index.html").is_file()
    assert (tmp_path / "site" / "messages" / "en-delivered.html").is_file()  # the previews, linked
