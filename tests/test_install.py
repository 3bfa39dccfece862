"""The systemd install how-to (docs/how-to/systemd.md), step by step where it can run here: the service user's view of
the installed files, the credential hand-over, the unit's exit-code contract."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys
from tests.example_shop import made_own
from tests.smtp_server import AUTH_PASSWORD, AUTH_USER, SmtpServer

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "notifier.service"
SYSTEMD_HOWTO = ROOT / "docs" / "how-to" / "systemd.md"
EXAMPLE = ROOT / "config.example.toml"
# What a DynamicUser= service runs as is an unprivileged, otherwise unused uid; nobody is the
# closest stand-in a test can switch to.
SERVICE_UID = 65534
SERVICE_GID = 65534


def readme_systemd_block() -> str:
    section = SYSTEMD_HOWTO.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert blocks, "the systemd how-to has shell blocks"
    return "".join(blocks)


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_exit_codes_stop_the_unit_instead_of_looping() -> None:
    settings = unit_settings()
    # A failing ExecStartPre is not covered by RestartPreventExitStatus (main process only).
    assert "ExecStartPre" not in settings
    assert set(settings["RestartPreventExitStatus"][0].split()) >= {"2", "3"}
    assert settings["Restart"] == ["on-failure"]
    assert int(settings["TimeoutStartSec"][0]) >= 10


def test_readme_install_gives_every_command_what_the_service_has() -> None:
    block = readme_systemd_block()
    run = re.search(r"systemd-run (.*?)db upgrade", block, re.S)
    assert run, "the how-to upgrades the database through systemd-run"
    options = run.group(1)
    # The same identity, folders and credential as the unit, and the output on the terminal.
    for needed in (
        "--pipe",
        "--wait",
        "DynamicUser=yes",
        "StateDirectory=notifier",
        "LoadCredential=smtp-password:/etc/notifier/smtp-password",
    ):
        assert needed in options, needed
    # The files it creates get the unit's modes, and the transient unit does not linger.
    for key in ("StateDirectoryMode", "UMask", "ConfigurationDirectory"):
        assert f"{key}={unit_settings()[key][0]}" in options, key
    assert "--collect" in options
    assert "smtp-password:/etc/notifier/smtp-password" in "".join(unit_settings()["LoadCredential"])
    # What Documentation= points at: the README and the install how-to, both installed by the block.
    documentation = unit_settings()["Documentation"]
    assert documentation == [
        "file:///usr/share/doc/notifier/README.md",
        "file:///usr/share/doc/notifier/docs/how-to/systemd.md",
    ]
    assert "install -D -m 0644 README.md /usr/share/doc/notifier/README.md" in block
    assert "cp -r docs /usr/share/doc/notifier/" in block
    for url in documentation:
        assert (ROOT / url.removeprefix("file:///usr/share/doc/notifier/")).is_file(), url
    assert "config.example.toml /etc/notifier/config.toml" in block


def _as_service_user() -> None:
    os.setgroups([])
    os.setgid(SERVICE_GID)
    os.setuid(SERVICE_UID)


def _service_user_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to switch to an unprivileged service user"
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import notifier.cli"],
            preexec_fn=_as_service_user,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        return f"the service user cannot run this interpreter ({sys.executable}): {exc.strerror}"
    if probe.returncode != 0:
        return f"the service user cannot run this interpreter or checkout ({sys.executable}): {probe.stderr[-200:]}"
    return None


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """The how-to's layout under a scratch root: /etc/notifier as root installs it, the state and
    credential folders as systemd prepares them for the service user."""
    reason = _service_user_unavailable()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="notifier-install-", dir="/tmp"))
    try:
        root.chmod(0o755)
        etc = root / "etc" / "notifier"
        etc.mkdir(parents=True)
        for folder in (root / "etc", etc):
            folder.chmod(0o755)
        secret = etc / "smtp-password"
        secret.write_text(AUTH_PASSWORD + "\n", encoding="utf-8")
        secret.chmod(0o600)  # `install -m 0600`: root only
        state = root / "var" / "lib" / "notifier"
        state.mkdir(parents=True)
        (root / "var").chmod(0o755)
        (root / "var" / "lib").chmod(0o755)
        os.chown(state, SERVICE_UID, SERVICE_GID)
        state.chmod(0o700)  # StateDirectoryMode=0700
        credentials = root / "run" / "credentials" / "notifier.service"
        credentials.mkdir(parents=True)
        for folder in (root / "run", root / "run" / "credentials"):
            folder.chmod(0o755)
        shutil.copyfile(secret, credentials / "smtp-password")  # LoadCredential= copies it
        os.chown(credentials / "smtp-password", SERVICE_UID, SERVICE_GID)
        (credentials / "smtp-password").chmod(0o400)
        os.chown(credentials, SERVICE_UID, SERVICE_GID)
        credentials.chmod(0o500)
        yield {"root": root, "etc": etc, "state": state, "credentials": credentials, "secret": secret}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def installed_config(paths: dict[str, Path], smtp: SmtpServer, base_url: str) -> Path:
    """config.example.toml as the how-to installs it, edited the way it says to."""
    text = EXAMPLE.read_text(encoding="utf-8")
    state = paths["state"]
    edits = {
        'url = "sqlite:////var/lib/notifier/notifier.db"': f'url = "sqlite:///{state}/notifier.db"',
        'base_url = "https://trackings.post.japanpost.jp"': f'base_url = "{base_url}"',
        "request_interval = 5": "request_interval = 0",
        'host = "smtp.example.com"': 'host = "127.0.0.1"',
        "port = 587": f"port = {smtp.port}",
        'security = "starttls"': 'security = "none"',
        'username = "shop@sakura.example"': f'username = "{AUTH_USER}"',
        'outbox_dir = "/var/lib/notifier/outbox"': f'outbox_dir = "{state}/outbox"',
    }
    for old, new in edits.items():
        assert old in text, f"config.example.toml no longer has {old!r}"
        text = text.replace(old, new, 1)
    text = made_own(text)  # the shop's identity, on the lines the example marks
    config = paths["etc"] / "config.toml"
    config.write_text(text, encoding="utf-8")
    config.chmod(0o644)  # `install -m 0644`
    return config


def service_env(paths: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFIER_", "CREDENTIALS_"))}
    env.update(
        CONFIGURATION_DIRECTORY=str(paths["etc"]),
        STATE_DIRECTORY=str(paths["state"]),
        CREDENTIALS_DIRECTORY=str(paths["credentials"]),
        HOME="/nonexistent",
    )
    return env


def as_service(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        preexec_fn=_as_service_user,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
        cwd="/",
    )


@pytest.mark.timeout(180)
def test_installed_service_reads_its_config_and_credential_and_sends_mail(installed: dict[str, Path]) -> None:
    simulator = Simulator(builtin_journeys())
    with SimulatorServer(simulator) as jp, SmtpServer(auth=True) as smtp:
        config = installed_config(installed, smtp, jp.base_url)
        env = service_env(installed)
        # The root-only file is unreadable to the service; only its credential copy is read.
        assert not os.access(installed["secret"], os.R_OK) or os.geteuid() == 0
        check = as_service(["config", "check", "--config", str(config)], env)
        assert check.returncode == 0, check.stdout + check.stderr
        upgrade = as_service(["db", "upgrade", "--config", str(config)], env)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert (installed["state"] / "notifier.db").stat().st_uid == SERVICE_UID
        sent = as_service(["test-email", "ops@sakura.example", "--config", str(config)], env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert [m.rcpt_tos for m in smtp.messages] == [("ops@sakura.example",)]
        assert any(c.verb == "AUTH" for c in smtp.commands)

        # `systemctl start`: the daemon comes up as the service user and stops cleanly.
        log = installed["root"] / "journal.log"
        with log.open("w") as journal:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "notifier", "run", "--config", str(config)],
                preexec_fn=_as_service_user,
                stderr=journal,
                env=env,
                cwd="/",
            )
        try:
            deadline = time.monotonic() + 60
            while not any(r.status == 200 for r in simulator.requests):
                assert daemon.poll() is None, log.read_text(encoding="utf-8")
                assert time.monotonic() < deadline, "the daemon never polled"
                time.sleep(0.1)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=45) == 0, log.read_text(encoding="utf-8")
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()


@pytest.mark.timeout(120)
def test_a_root_only_password_file_is_named_not_crashed_on(installed: dict[str, Path]) -> None:
    with SmtpServer(auth=True) as smtp:
        config = installed_config(installed, smtp, "http://127.0.0.1:9")
        text = config.read_text(encoding="utf-8")
        # The mistake the README once made: password_file pointing at the root-only file.
        text = text.replace(
            f'username = "{AUTH_USER}"',
            f'username = "{AUTH_USER}"\npassword_file = "{installed["secret"]}"',
        )
        config.write_text(text, encoding="utf-8")
        env = service_env(installed)
        check = as_service(["config", "check", "--config", str(config)], env)
        assert check.returncode == 2
        assert "smtp.password_file" in check.stderr + check.stdout
        assert str(installed["secret"]) in check.stderr + check.stdout
        assert "Traceback" not in check.stderr


def run_daemon(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    return subprocess.run(
        [sys.executable, "-m", "notifier", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


@pytest.mark.timeout(120)
def test_run_exits_2_on_a_bad_config_and_3_on_an_old_schema(tmp_path: Path) -> None:
    """The codes RestartPreventExitStatus=2 3 relies on, from `run` itself."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[polling]\ntick = "soon"\n', encoding="utf-8")
    run = run_daemon(bad)
    assert run.returncode == 2, run.stderr
    assert "polling.tick" in run.stderr
    assert "Traceback" not in run.stderr

    fresh = tmp_path / "fresh.toml"
    fresh.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "new.db"}"\n', encoding="utf-8")
    run = run_daemon(fresh)
    assert run.returncode == 3, run.stderr
    assert "db upgrade" in run.stderr
    assert "Traceback" not in run.stderr
