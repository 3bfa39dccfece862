"""Hints that name a command print it runnable: pasted as printed, it acts on the same config and
database as the command that printed it; and $NOTIFIER_CONFIG stands in for --config everywhere.

The CLI runs as a subprocess, and a hint is run through the shell exactly as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def notifier(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "notifier"), *args],
        cwd=cwd,
        env=environment(**extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def hint(text: str) -> str:
    """The one backquoted notifier command in a message."""
    found: list[str] = re.findall(r"`(notifier [^`]*)`", text)
    assert len(found) == 1, text
    return found[0]


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "shop.toml").write_text('[database]\nurl = "sqlite:///shop.db"\n', encoding="utf-8")
    return tmp_path


def test_run_hint_upgrades_the_configured_database(shop: Path) -> None:
    refused = notifier("run", "--config", "shop.toml", cwd=shop)
    assert refused.returncode == 3, refused.stderr
    pasted = hint(refused.stderr)
    assert pasted == "notifier db upgrade --config shop.toml"

    upgraded = subprocess.run(pasted, shell=True, cwd=shop, env=environment(), capture_output=True, text=True)
    assert upgraded.returncode == 0, upgraded.stderr
    assert not (shop / "notifier.db").exists()  # the trap: ./notifier.db upgraded instead
    current = notifier("db", "current", "--config", "shop.toml", cwd=shop)
    assert current.returncode == 0, current.stdout + current.stderr


def test_hint_repeats_an_explicit_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    refused = notifier("status", "--database-url", url, cwd=tmp_path)
    assert refused.returncode == 3
    pasted = hint(refused.stderr)
    assert pasted == f"notifier db upgrade --database-url {url}"
    assert subprocess.run(pasted, shell=True, cwd=tmp_path, env=environment()).returncode == 0
    assert notifier("db", "current", "--database-url", url, cwd=tmp_path).returncode == 0


def test_status_hint_names_the_config(shop: Path) -> None:
    assert notifier("db", "upgrade", "--config", "shop.toml", cwd=shop).returncode == 0
    empty = notifier("status", "--config", "shop.toml", cwd=shop)
    assert empty.returncode == 0
    assert hint(empty.stdout) == "notifier poll NUMBER --config shop.toml"


def test_a_quoted_config_path_survives_the_shell(tmp_path: Path) -> None:
    folder = tmp_path / "my shop"
    folder.mkdir()
    config = folder / "shop's.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{folder / "shop.db"}"\n', encoding="utf-8")
    refused = notifier("status", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 3
    pasted = hint(refused.stderr)
    assert subprocess.run(pasted, shell=True, cwd=tmp_path, env=environment()).returncode == 0
    assert (folder / "shop.db").exists()


def test_notifier_config_stands_in_for_the_option(shop: Path) -> None:
    env = {"NOTIFIER_CONFIG": "shop.toml"}
    refused = notifier("status", cwd=shop, **env)
    assert refused.returncode == 3
    assert hint(refused.stderr) == "notifier db upgrade --config shop.toml"
    # The config's database, not ./notifier.db: the upgrade lands in shop.db.
    assert notifier("db", "upgrade", cwd=shop, **env).returncode == 0
    for command in (["config", "check"], ["db", "current"], ["status"], ["outbox"], ["alerts"]):
        result = notifier(*command, cwd=shop, **env)
        assert result.returncode == 0, (command, result.stderr)
    assert "config: shop.toml is valid" in notifier("config", "check", cwd=shop, **env).stdout
    assert not (shop / "notifier.db").exists()
