"""systemd/notifier-root, the `notifier` root runs in the systemd layout: it finds the config
without --config, and runs the commands that need the service's credentials or create its files
through systemd-run as the service (a stand-in systemd-run records how it was called)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WRAPPER = Path(__file__).parent.parent / "systemd" / "notifier-root"
PROGRAM = Path(sys.executable).parent / "notifier"

# Runs what systemd-run would run as the service, after noting its arguments; --setenv is kept.
FAKE_SYSTEMD_RUN = """#!/bin/sh
printf '%s\\n' "$@" > "$FAKE_SYSTEMD_RUN_LOG"
while [ $# -gt 0 ]; do
    case $1 in
        --setenv=*) export "${1#--setenv=}" ;;
        -p) shift ;;
        -*) ;;
        *) break ;;
    esac
    shift
done
exec "$@"
"""


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A stand-in /etc/notifier: config, SMTP password file, and a systemd-run on PATH."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.toml").write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "state.db"}"\n', encoding="utf-8"
    )
    (etc / "smtp-password").write_text("secret\n", encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemd-run"
    fake.write_text(FAKE_SYSTEMD_RUN, encoding="utf-8")
    fake.chmod(0o755)
    return tmp_path


def wrapper(*args: str, layout: Path, config: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        PATH=f"{layout / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        NOTIFIER_PROGRAM=str(PROGRAM),
        NOTIFIER_CREDENTIALS=str(layout / "etc"),
        FAKE_SYSTEMD_RUN_LOG=str(layout / "systemd-run.args"),
    )
    if config is not None:
        env["NOTIFIER_CONFIG"] = config
    return subprocess.run(
        [str(WRAPPER), *args], env=env, cwd=layout, capture_output=True, text=True, timeout=60
    )


def test_wrapper_is_executable() -> None:
    assert os.access(WRAPPER, os.X_OK)


def test_config_is_found_without_the_option(layout: Path) -> None:
    config = str(layout / "etc" / "config.toml")
    checked = wrapper("config", "check", layout=layout, config=config)
    assert checked.returncode == 0, checked.stderr
    assert f"config: {config} is valid" in checked.stdout
    # Without an override it reads the layout's own config.
    default = wrapper("config", "check", layout=layout, config=None)
    assert "/etc/notifier/config.toml" in default.stdout + default.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the wrapper uses systemd-run only as root")
def test_commands_needing_the_service_run_as_the_service(layout: Path) -> None:
    config = str(layout / "etc" / "config.toml")
    upgraded = wrapper("db", "upgrade", layout=layout, config=config)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (layout / "state.db").exists()  # the config's database, found without --config
    called = (layout / "systemd-run.args").read_text(encoding="utf-8").splitlines()
    assert {"--wait", "--pipe", "DynamicUser=yes", "StateDirectory=notifier", "UMask=0077"} <= set(called)
    assert f"LoadCredential=smtp-password:{layout / 'etc' / 'smtp-password'}" in called
    assert not any("http-secret" in arg for arg in called)  # no file, no credential
    assert f"--setenv=NOTIFIER_CONFIG={config}" in called
    assert called[-3:] == [str(PROGRAM), "db", "upgrade"]

    (layout / "systemd-run.args").unlink()
    status = wrapper("-v", "status", layout=layout, config=config)
    assert status.returncode == 0, status.stderr
    assert "no shipments watched yet" in status.stdout
    assert not (layout / "systemd-run.args").exists()  # reading commands run as root, directly


def test_empty_password_file_is_an_error_naming_it(layout: Path) -> None:
    """What a password prompt run without a terminal leaves behind: refused, not sent without."""
    etc = layout / "etc"
    (etc / "smtp-password").write_text("", encoding="utf-8")
    smtp = '[smtp]\nhost = "127.0.0.1"\nfrom = "Shop <shop@sakura.jp>"\nusername = "shop"\n'
    (etc / "direct.toml").write_text(smtp + f'password_file = "{etc / "smtp-password"}"\n', encoding="utf-8")
    checked = wrapper("config", "check", layout=layout, config=str(etc / "direct.toml"))
    assert checked.returncode == 2
    assert f"smtp.password_file: {etc / 'smtp-password'} is empty" in checked.stderr

    # As the service sees it: the credential systemd copied from that file.
    (etc / "service.toml").write_text(smtp, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env["CREDENTIALS_DIRECTORY"] = str(etc)
    service = subprocess.run(
        [str(PROGRAM), "config", "check", "--config", str(etc / "service.toml")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert service.returncode == 2
    assert 'the systemd credential "smtp-password"' in service.stderr
    assert "is empty" in service.stderr
