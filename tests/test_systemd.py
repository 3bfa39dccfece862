"""systemd integration: the unit passes systemd-analyze, and sd_notify speaks over a real datagram socket."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from notifier.net.sdnotify import Notifier, watchdog_interval
from notifier.testing.simulator import Simulator, SimulatorServer, builtin_journeys

UNIT = Path(__file__).parent.parent / "systemd" / "notifier.service"
needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def unit_for_here(tmp_path: Path) -> Path:
    """The unit with its program paths pointed at this environment, so verify can check them."""
    binary = Path(sys.executable).parent / "notifier"
    text = UNIT.read_text(encoding="utf-8").replace("/opt/notifier/bin/notifier", str(binary))
    unit = tmp_path / "notifier.service"
    unit.write_text(text, encoding="utf-8")
    return unit


@needs_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_for_here(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "notifier.service" not in result.stderr  # no warnings about our unit


@needs_analyze
def test_unit_exposure_is_at_most_2(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit_for_here(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for notifier\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_unit_declares_what_the_daemon_relies_on() -> None:
    text = UNIT.read_text(encoding="utf-8")
    for line in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=2 3",
        "StateDirectory=notifier",
        "ConfigurationDirectory=notifier",
        "LoadCredential=smtp-password:",
        "DynamicUser=yes",
        "WatchdogSec=",
    ):
        assert line in text, line


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(15)
    yield sock
    sock.close()


def test_notifier_sends_datagrams(notify_socket: socket.socket) -> None:
    notifier = Notifier(notify_socket.getsockname())
    assert notifier.ready("3 watched")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=3 watched"
    assert notifier.watchdog()
    assert notify_socket.recv(4096) == b"WATCHDOG=1"
    assert notifier.reloading()
    assert re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=\d+", notify_socket.recv(4096))
    assert notifier.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_notifier_is_silent_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().ready()
    assert not Notifier("/nonexistent/socket").ready()  # an unreachable socket never raises


def test_abstract_socket_address() -> None:
    name = f"notifier-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier("@" + name).status("hello")
        assert sock.recv(100) == b"STATUS=hello"


def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 30
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None


def test_daemon_lifecycle_over_notify_socket(notify_socket: socket.socket, tmp_path: Path) -> None:
    simulator = Simulator(builtin_journeys())
    with SimulatorServer(simulator) as jp:
        config = tmp_path / "n.toml"
        db = tmp_path / "n.db"
        config.write_text(
            f'[database]\nurl = "sqlite:///{db}"\n[japanpost]\nbase_url = "{jp.base_url}"\nrequest_interval = 0\n'
            '[polling]\ntick = "0.5s"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
        subprocess.run(
            [sys.executable, "-m", "notifier", "db", "upgrade", "--config", str(config)],
            check=True,
            capture_output=True,
            env=env,
        )
        env.update(NOTIFY_SOCKET=notify_socket.getsockname(), WATCHDOG_USEC="1000000")
        proc = subprocess.Popen(
            [sys.executable, "-m", "notifier", "run", "--config", str(config)],
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            messages: list[bytes] = []

            def until(prefix: bytes) -> bytes:
                while True:
                    message = notify_socket.recv(4096)
                    messages.append(message)
                    if message.startswith(prefix):
                        return message

            ready = until(b"READY=1")
            assert b"STATUS=0 watched" in ready
            assert b"circuit closed" in ready
            until(b"WATCHDOG=1")  # WATCHDOG_USEC=1s: petted every 0.5 s while healthy
            proc.send_signal(signal.SIGHUP)
            until(b"RELOADING=1")
            until(b"READY=1")
            proc.send_signal(signal.SIGTERM)
            until(b"STOPPING=1")
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
